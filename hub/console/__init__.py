"""The admin console: server-rendered pages (aiohttp-jinja2, htmx shipped in the package) over the
same services as the admin API, mounted under ``/console``.

Handlers parse forms and render pages; every change goes through ``hub.services`` with the acting
user, so the console can do nothing the API would refuse, and nothing here touches the database.
"""

from __future__ import annotations

import logging
import secrets
import warnings
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from hub.appkeys import ORG
from hub.config import HubConfig
from hub.console import auth, automations, channels, org, plugins, workspace
from hub.console.base import PREFIX, SETUP_TOKEN, Handler, pages_middleware, session_key
from hub.security import load_secret_key

__all__ = ["PREFIX", "setup_console"]

log = logging.getLogger("hub.console")
STATIC = Path(__file__).parent / "static"
# aiohttp-session keeps its state under string keys, which aiohttp warns about on every request.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")
SESSION_HOURS = 12
_SESSIONS: web.AppKey[object] = web.AppKey("console_sessions", object)


@web.middleware
async def _sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    # aiohttp-session's middleware, built at start-up once the secret key is known (reading or
    # creating the key file is start-up work, not the app factory's).
    middleware = request.app[_SESSIONS]
    return await middleware(request, handler)  # type: ignore[operator]


def setup_console(parent: web.Application, config: HubConfig) -> web.Application:
    console = web.Application(middlewares=[_sessions, pages_middleware])
    env = aiohttp_jinja2.setup(
        console,
        loader=jinja2.PackageLoader("hub.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.trim_blocks = True
    env.lstrip_blocks = True

    async def start(app: web.Application) -> None:
        key = load_secret_key(config.hub.secret_key, config.hub.data_dir)
        storage = EncryptedCookieStorage(
            session_key(key),
            cookie_name="hub_console",
            path=PREFIX,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="Lax",
            secure=config.hub.public_url.startswith("https://"),
        )
        app[_SESSIONS] = session_middleware(storage)
        app[SETUP_TOKEN] = {}
        if not await parent[ORG].has_users():
            # A hub nobody administers yet: the first administrator is created in the console, by
            # whoever holds this link (it is printed where `hub serve` runs, nowhere else).
            token = secrets.token_urlsafe(24)
            app[SETUP_TOKEN]["token"] = token
            log.warning(
                "no user yet: create the first administrator at %s%s/setup?token=%s "
                "(or run `hub users create EMAIL --role administrator`)",
                config.hub.public_url,
                PREFIX,
                token,
            )

    console.on_startup.append(start)
    pages = (auth, channels, org, plugins, workspace, automations)
    for table in (page.routes for page in pages):
        console.add_routes(table)
    console.router.add_static("/static", STATIC, name="static")
    parent.add_subapp(PREFIX, console)
    return console
