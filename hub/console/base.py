"""What every console page shares: the session, the acting user, CSRF, rendering and error pages.

The session is an encrypted cookie (aiohttp-session + Fernet, a key derived from the hub's secret
key) holding one API token created by the hub's login guard, and a CSRF token. The actor behind a
page is found exactly as the API finds it (token -> user -> ``OrgService.actor_for``), so revoking
the token (logout, deactivation) ends the console session too, and every permission is checked by
the same services as the API's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session, get_session
from pydantic import ValidationError

from hub.access import Actor
from hub.appkeys import ORG, STORE, TOKEN_CACHE
from hub.services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from hub.users import authenticate_token

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "NAV",
    "SETUP_TOKEN",
    "FormPage",
    "Handler",
    "action_route",
    "field_errors",
    "form_data",
    "is_htmx",
    "need_actor",
    "page_route",
    "pages_middleware",
    "redirect",
    "render",
    "session_key",
    "submit",
]

log = logging.getLogger("hub.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FormPage = Callable[..., Awaitable[web.StreamResponse]]
"""A page with a form: ``page(request, actor, errors=..., form=..., status=...)``."""

PREFIX = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SETUP_TOKEN: web.AppKey[dict[str, str]] = web.AppKey("console_setup_token")
"""``{"token": ...}`` while the hub has no user (the first-run link), empty once it has one."""
_ACTOR: web.RequestKey[Actor] = web.RequestKey("console_actor", Actor)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# (title, path, permission needed to see it); the overview needs none.
NAV: list[tuple[str, str, str | None]] = [
    ("Overview", "/", None),
    ("Channels", "/channels", "channels.manage"),
    ("Users", "/users", "users.manage"),
    ("Roles", "/roles", "users.manage"),
    ("Teams", "/teams", "users.manage"),
    ("Availability", "/availability", "config.manage"),
    ("Labels", "/labels", "labels.manage"),
    ("Quick replies", "/quick-replies", "config.manage"),
    ("Macros", "/macros", "config.manage"),
    ("Attributes", "/attributes", "attributes.manage"),
    ("Notifications", "/notifications", "config.manage"),
    ("Automations", "/automations", "automations.manage"),
    ("Business hours", "/business-hours", "automations.manage"),
    ("Bots", "/bots", "bots.manage"),
    ("Plugins", "/plugins", "plugins.read"),
]

SECURITY_HEADERS = {
    # Pages load only the console's own script and style; nothing may frame them.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Invitation links carry a token in their query: never leak it in a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def session_key(secret_key: str) -> bytes:
    """The cookie encryption key (32 bytes, which aiohttp-session makes a Fernet key), derived from
    the hub's secret key and distinct from the one that seals channel secrets."""
    return hashlib.sha256(b"hub-console-session:" + secret_key.encode()).digest()


def is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def redirect(request: web.Request, path: str) -> web.StreamResponse:
    """303 to a console path (``/channels`` -> ``/console/channels``); htmx follows HX-Redirect."""
    url = PREFIX + path
    if is_htmx(request):
        return web.Response(status=204, headers={"HX-Redirect": url})
    raise web.HTTPSeeOther(url)


def csrf_token(session: Session) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def form_data(request: web.Request) -> dict[str, str]:
    """The submitted form as text fields (lists of checkboxes: ``form_list``)."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def form_list(request: web.Request, name: str) -> list[str]:
    data = await request.post()
    return [v for v in data.getall(name, []) if isinstance(v, str) and v]


def _error_key(loc: tuple[Any, ...] | list[Any], default: str) -> str:
    """Where a form shows an error: the field, or ``field.N`` for the Nth row of a list field."""
    parts = [str(p) for p in loc]
    if not parts:
        return default
    if len(parts) > 1 and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


FORM_ERRORS = (ValidationError, Invalid, Conflict, NotFound)


def field_errors(exc: Exception, default: str = "(form)") -> dict[str, str]:
    """A refused form's errors by field: the request model's (pydantic) or the service's
    (``Invalid`` details); a conflict or a vanished reference is shown beside ``default``."""
    out: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        for e in exc.errors():
            out.setdefault(_error_key(e["loc"], default), e["msg"])
    elif isinstance(exc, Invalid):
        for d in exc.details:
            out.setdefault(_error_key(str(d["field"]).split("."), default), str(d["message"]))
    elif isinstance(exc, ServiceError):
        out[default] = exc.message
    return out


async def submit(
    request: web.Request,
    actor: Actor,
    page: FormPage,
    shown: dict[str, Any],
    work: Callable[[], Awaitable[Any]],
    *,
    then: str | Callable[[Any], Awaitable[web.StreamResponse]],
    field: str = "(form)",
) -> web.StreamResponse:
    """Every console form's path: ``work`` (request model, then the service), then a redirect to
    ``then`` (or ``then(result)``); or, when the model or the service refuses, the page again with
    what was typed (``shown``) and each error beside its field (422). Nothing half-stored: the
    services write in one transaction."""
    try:
        result = await work()
    except FORM_ERRORS as exc:
        return await page(request, actor, errors=field_errors(exc, field), form=shown, status=422)
    if isinstance(then, str):
        return redirect(request, then)
    return await then(result)


def page_route(table: web.RouteTableDef, path: str, permission: str, page: FormPage) -> None:
    """``GET path``: the page (with its form empty) for a user holding ``permission``."""

    async def show(request: web.Request) -> web.StreamResponse:
        return await page(request, await need_actor(request, permission))

    table.get(path)(show)


def action_route(
    table: web.RouteTableDef,
    path: str,
    permission: str,
    act: Callable[[web.Request, Actor], Awaitable[Any]],
    *,
    then: str,
) -> None:
    """``POST path``: a button (delete, deactivate...) that asks the service for one thing, then
    back to ``then``. A refusal is the service's (403, 404) as an error page."""

    async def press(request: web.Request) -> web.StreamResponse:
        await act(request, await need_actor(request, permission))
        return redirect(request, then)

    table.post(path)(press)


async def current_actor(request: web.Request) -> Actor | None:
    actor = request.get(_ACTOR)
    if actor is not None:
        return actor
    session = await get_session(request)
    token = session.get("token")
    if not isinstance(token, str):
        return None
    user = await authenticate_token(request.config_dict[STORE].db, token, request.config_dict[TOKEN_CACHE])
    if user is None:  # logged out elsewhere, or deactivated: the session ends with its token
        session.pop("token", None)
        return None
    actor = await request.config_dict[ORG].actor_for(user)
    request[_ACTOR] = actor
    return actor


async def need_actor(request: web.Request, permission: str | None = None) -> Actor:
    """The logged-in user (else a redirect to the login page), holding ``permission`` (else 403)."""
    actor = await current_actor(request)
    if actor is None:
        target = request.path_qs if request.method == "GET" else PREFIX + "/"
        url = f"{PREFIX}/login?next={quote(target, safe='')}"
        raise LoginRequired(url)
    if permission:
        actor.require(permission)
    return actor


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.StreamResponse:
    session = await get_session(request)
    actor = request.get(_ACTOR)
    ctx: dict[str, Any] = {
        "actor": actor,
        "can": (lambda perm: actor is not None and actor.can(perm)),
        "csrf": csrf_token(session),
        "nav": [
            (title, PREFIX + path)
            for title, path, perm in NAV
            if actor is not None and (perm is None or actor.can(perm))
        ],
        "path": request.path,
        "prefix": PREFIX,
    }
    ctx.update(context or {})
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def _check_csrf(request: web.Request, session: Session, sent: str | None) -> bool:
    expected = session.get("csrf")
    return isinstance(expected, str) and isinstance(sent, str) and hmac.compare_digest(expected, sent)


@web.middleware
async def pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSRF on every unsafe request, security headers, and errors as pages (never JSON)."""
    try:
        if request.method not in SAFE_METHODS:
            session = await get_session(request)
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                sent = (await form_data(request)).get(CSRF_FIELD)
            if not _check_csrf(request, session, sent):
                return await _error_page(
                    request,
                    403,
                    "This form expired or did not come from the console",
                    "Reload the page and try again.",
                )
        response = await handler(request)
    except LoginRequired as exc:
        if is_htmx(request):
            return web.Response(status=204, headers={"HX-Redirect": exc.url, **SECURITY_HEADERS})
        raise web.HTTPSeeOther(exc.url) from None
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await _error_page(request, exc.status, exc.reason, None)
    except Forbidden as exc:
        return await _error_page(request, 403, "You may not do this", exc.message)
    except NotFound as exc:
        return await _error_page(request, 404, "Not found", exc.message)
    except ServiceError as exc:
        return await _error_page(request, exc.status, "The hub refused this", exc.message)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await _error_page(request, 422, "The form is invalid", detail)
    except Exception:
        log.exception("console: unhandled error on %s %s", request.method, request.path)
        return await _error_page(request, 500, "The hub hit an unexpected error", "It was logged.")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _error_page(
    request: web.Request, status: int, title: str, detail: str | None
) -> web.StreamResponse:
    if status >= 500:
        log.error("console: %s %s answered %s", request.method, request.path, status)
    try:
        await current_actor(request)
    except Exception:  # the error page must render even when the database is the problem
        log.exception("console: the user behind an error page could not be read")
    response = await render(request, "error.html", {"title": title, "detail": detail}, status=status)
    response.headers.update(SECURITY_HEADERS)
    return response
