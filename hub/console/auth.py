"""Logging in and out, setting a password from an invitation, and the overview page."""

from __future__ import annotations

import hmac
import re

from aiohttp import web
from aiohttp_session import get_session, new_session

from hub.appkeys import CHANNEL_ADMIN, LOGINS, ORG, STORE, TOKEN_CACHE
from hub.console.base import PREFIX, SETUP_TOKEN, current_actor, form_data, need_actor, render
from hub.logins import LoginRefused, TooManyLogins
from hub.services.errors import Conflict, Forbidden, NotFound
from hub.users import create_token, revoke_token

__all__ = ["routes"]

routes = web.RouteTableDef()
MIN_PASSWORD = 8
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect to another site (``//evil``, ``https://``)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_actor(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    ctx = {
        "next": _safe_next(request.query.get("next")),
        "email": "",
        "first_run": await _setup_open(request),
    }
    return await render(request, "login.html", ctx)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    email = form.get("email", "")[:320]
    password = form.get("password", "")[:1024]
    target = _safe_next(form.get("next"))
    ctx = {"next": target, "email": email, "first_run": await _setup_open(request)}
    if not email or not password:
        return await render(
            request, "login.html", {**ctx, "error": "Enter your email and password."}, status=422
        )
    try:
        user = await request.config_dict[LOGINS].login(
            request.config_dict[STORE].db, request.remote or "unknown", email, password
        )
    except LoginRefused:
        return await render(
            request, "login.html", {**ctx, "error": "Email or password is wrong."}, status=401
        )
    except TooManyLogins as exc:
        resp = await render(
            request,
            "login.html",
            {**ctx, "error": f"Too many attempts; wait {exc.retry_after} s and try again."},
            status=429,
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    # The console's own token, held in its cookie session (the app's logins expire and refresh).
    token = await create_token(request.config_dict[STORE].db, user["id"], "console")
    # A fresh session (and CSRF token) at login: one planted before it is worth nothing after.
    session = await new_session(request)
    session["token"] = token
    session["user_id"] = user["id"]
    raise web.HTTPSeeOther(target)


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    token = session.get("token")
    if isinstance(token, str):
        await revoke_token(request.config_dict[STORE].db, token, request.config_dict[TOKEN_CACHE])
    session.invalidate()
    raise web.HTTPSeeOther(PREFIX + "/login")


@routes.get("/set-password")
async def set_password_page(request: web.Request) -> web.StreamResponse:
    return await render(request, "set_password.html", {"token": request.query.get("token", "")[:200]})


@routes.post("/set-password")
async def set_password(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    token = form.get("token", "")[:200]
    password = form.get("password", "")
    ctx = {"token": token}
    if len(password) < MIN_PASSWORD or len(password) > 1000:
        error = f"Choose a password of {MIN_PASSWORD} to 1000 characters."
        return await render(request, "set_password.html", {**ctx, "error": error}, status=422)
    if password != form.get("confirm", ""):
        return await render(
            request, "set_password.html", {**ctx, "error": "The two passwords differ."}, status=422
        )
    try:
        user = await request.config_dict[ORG].accept_invitation(token, password)
    except NotFound as exc:
        return await render(request, "set_password.html", {**ctx, "error": exc.message}, status=404)
    return await render(request, "password_set.html", {"user": user})


@routes.get("/")
async def overview(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request)
    channels = request.config_dict[CHANNEL_ADMIN].visible(actor)
    if actor.can("channels.manage"):
        channels = request.config_dict[CHANNEL_ADMIN].all(actor)["channels"]
    return await render(request, "overview.html", {"channels": channels})


# ---- first run: the first administrator -----------------------------------------------------------


async def _setup_open(request: web.Request) -> bool:
    """Whether the first-run page is open: until any user exists (one made with the CLI too)."""
    holder = request.app.get(SETUP_TOKEN, {})
    if "token" in holder and await request.config_dict[ORG].has_users():
        holder.clear()
    return "token" in holder


def _setup_token_ok(request: web.Request, sent: str) -> bool:
    expected = request.app.get(SETUP_TOKEN, {}).get("token")
    return expected is not None and hmac.compare_digest(expected.encode(), sent.encode())


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.StreamResponse:
    if not await _setup_open(request):
        raise web.HTTPSeeOther(PREFIX + "/login")
    token = request.query.get("token", "")[:200]
    if not _setup_token_ok(request, token):
        raise Forbidden("open the link `hub serve` printed when it started (it carries a token)")
    return await render(
        request, "setup.html", {"token": token, "form": {"email": "", "name": ""}, "errors": {}}
    )


@routes.post("/setup")
async def setup(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    token = form.get("token", "")[:200]
    if not await _setup_open(request):
        raise web.HTTPSeeOther(PREFIX + "/login")
    if not _setup_token_ok(request, token):
        raise Forbidden("open the link `hub serve` printed when it started (it carries a token)")
    shown = {"email": form.get("email", "").strip(), "name": form.get("name", "").strip()}
    password = form.get("password", "")
    errors: dict[str, str] = {}
    if not EMAIL.match(shown["email"]) or len(shown["email"]) > 320:
        errors["email"] = "Enter an email address."
    if len(shown["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if not MIN_PASSWORD <= len(password) <= 1000:
        errors["password"] = f"Choose a password of {MIN_PASSWORD} to 1000 characters."
    elif password != form.get("confirm", ""):
        errors["confirm"] = "The two passwords differ."
    if errors:
        return await render(
            request, "setup.html", {"token": token, "form": shown, "errors": errors}, status=422
        )
    try:
        await request.config_dict[ORG].create_first_admin(shown["email"], shown["name"] or None, password)
    except Conflict:
        request.app[SETUP_TOKEN].clear()
        raise web.HTTPSeeOther(PREFIX + "/login") from None
    request.app[SETUP_TOKEN].clear()
    # Logged in as everyone is: through the login guard, with the password just chosen.
    user = await request.config_dict[LOGINS].login(
        request.config_dict[STORE].db, request.remote or "unknown", shown["email"], password
    )
    api_token = await create_token(request.config_dict[STORE].db, user["id"], "console")
    session = await new_session(request)
    session["token"] = api_token
    session["user_id"] = user["id"]
    raise web.HTTPSeeOther(PREFIX + "/channels/new")
