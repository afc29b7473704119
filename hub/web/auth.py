"""Bearer-token authentication and permission checks for API handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.appkeys import STORE, TOKEN_CACHE
from hub.users import ROLES, authenticate_token
from hub.web.errors import ApiError

__all__ = ["bearer_token", "require_user"]

STREAM_PATH = "/api/v1/stream"
_USER_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("user", dict)


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


async def require_user(request: web.Request, permission: str | None = None) -> dict[str, Any]:
    user: dict[str, Any] | None = request.get(_USER_KEY)
    if user is None:
        token = bearer_token(request)
        if not token:
            raise ApiError(
                401,
                "unauthorized",
                "send 'Authorization: Bearer <token>'; get one from POST /api/v1/auth/login",
            )
        user = await authenticate_token(request.app[STORE].db, token, request.app[TOKEN_CACHE])
        if user is None:
            raise ApiError(401, "unauthorized", "the token is unknown or revoked")
        request[_USER_KEY] = user
    if permission and permission not in ROLES.get(user["role"], []):
        raise ApiError(403, "forbidden", f"your role ({user['role']}) lacks the permission {permission!r}")
    return user
