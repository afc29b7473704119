"""The answer of every cacheable configuration read (``hub.services.config``): the body with its
``ETag``, or ``304 Not Modified`` when the request's ``If-None-Match`` names the current one."""

from __future__ import annotations

from aiohttp import web

from hub.appkeys import CONFIG_REGISTRY
from hub.services.config import ConfigView
from hub.web.auth import require_actor

__all__ = ["CACHE_CONTROL", "config_response", "view_response"]

# Every answer may differ per user and must be revalidated before reuse.
CACHE_CONTROL = "private, no-cache"


def _matches(request: web.Request, etag: str) -> bool:
    # Weak comparison (RFC 9110 13.1.2), as If-None-Match asks: W/"x" matches "x". An unquoted
    # tag (the form events carry) is taken as meant.
    tags = _etag_values(request)
    return tags is not None and ("*" in tags or etag in tags)


def view_response(request: web.Request, view: ConfigView) -> web.StreamResponse:
    headers = {"ETag": f'"{view.etag}"', "Cache-Control": CACHE_CONTROL}
    if _matches(request, view.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=view.body, content_type="application/json", headers=headers)


async def config_response(request: web.Request, name: str) -> web.StreamResponse:
    """The handler body of a resource's own route: the resource as the caller sees it, cacheable."""
    actor = await require_actor(request)
    return view_response(request, await request.app[CONFIG_REGISTRY].read(actor, name))


def _etag_values(request: web.Request) -> set[str] | None:
    """The entity tags of If-None-Match (quotes and W/ dropped); None without the header."""
    raw = request.headers.get("If-None-Match")
    if raw is None:
        return None
    out = set()
    for part in raw.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        out.add(tag.strip('"'))
    return out
