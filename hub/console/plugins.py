"""Installed plugins: versions, hooks, channel types and quality tiers, and those that failed to
load and why (the data of ``GET /api/v1/plugins`` and ``hub plugins``)."""

from __future__ import annotations

from aiohttp import web

from hub.appkeys import PLUGIN_REPORT
from hub.console.base import need_actor, render

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/plugins")
async def plugins(request: web.Request) -> web.StreamResponse:
    await need_actor(request, "plugins.read")
    return await render(request, "plugins.html", {"report": request.config_dict[PLUGIN_REPORT].as_dict()})
