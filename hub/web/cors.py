"""CORS for the web clients of configured origins (``hub.cors_origins``).

A request from a listed origin gets ``Access-Control-Allow-Origin`` (that origin, never ``*``: the
API takes bearer tokens) and the headers an app reads (``X-Hub-Seq``, ``Idempotent-Replayed``,
``Retry-After``); its preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered
204. An origin not listed gets no CORS header at all, so the browser keeps the answer from the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.appkeys import CONFIG

__all__ = ["cors_middleware"]

ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSE_HEADERS = "X-Hub-Seq, Idempotent-Replayed, Retry-After"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
MAX_AGE = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[CONFIG].hub.cors_origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            # No CORS headers: the browser refuses the real request, as it should.
            return web.Response(status=204)
        assert origin is not None
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if allowed:
            _decorate(exc, origin)
        raise
    if allowed and not resp.prepared:
        _decorate(resp, origin)
    return resp


def _decorate(resp: web.StreamResponse, origin: str | None) -> None:
    assert origin is not None
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    resp.headers.add("Vary", "Origin")
