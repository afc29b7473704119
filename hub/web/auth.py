"""Bearer-token authentication: the ``Actor`` behind a request, and its permission checks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.access import Actor
from hub.appkeys import BOTS, ORG, STORE, TOKEN_CACHE
from hub.bots.service import TOKEN_PREFIX as BOT_TOKEN_PREFIX
from hub.users import authenticate_token
from hub.web.errors import ApiError

__all__ = ["bearer_token", "require_actor"]

STREAM_PATH = "/api/v1/stream"
_ACTOR_KEY: web.RequestKey[Actor] = web.RequestKey("actor", Actor)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    # WebSocket clients that cannot set headers may pass ?token= on the stream route alone (the
    # route matched, not the path's ending: /api/v1/conversations/stream is not it).
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical == STREAM_PATH:
        return request.query.get("token")
    return None


async def authenticated_user(request: web.Request) -> dict[str, Any] | None:
    token = bearer_token(request)
    if not token:
        return None
    return await authenticate_token(request.app[STORE].db, token, request.app[TOKEN_CACHE])


async def require_actor(request: web.Request, permission: str | None = None) -> Actor:
    """The acting user with their scope; 401 without a valid token, 403 without ``permission``."""
    actor = request.get(_ACTOR_KEY)
    if actor is None:
        if not bearer_token(request):
            raise ApiError(
                401,
                "unauthorized",
                "send 'Authorization: Bearer <token>'; get one from POST /api/v1/auth/login",
            )
        token = bearer_token(request) or ""
        if token.startswith(BOT_TOKEN_PREFIX):
            # An agent bot's token (hub.bots): the bot acts as itself, within its channels.
            bot = await request.app[BOTS].authenticate(token)
            if bot is None:
                raise ApiError(401, "unauthorized", "the bot token is unknown, rotated, or its bot disabled")
            actor = bot
        else:
            user = await authenticated_user(request)
            if user is None:
                raise ApiError(401, "unauthorized", "the token is unknown or revoked")
            actor = await request.app[ORG].actor_for(user)
        request[_ACTOR_KEY] = actor
    if permission:
        actor.require(permission)
    return actor
