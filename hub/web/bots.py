"""Agent bots over HTTP: the admin's bots (``bots.manage``) and the handoff.

``POST /api/v1/conversations/{id}/handoff`` is the bot's way to hand a conversation to people
(with its bot token), and an agent's way to take it from the bot. Handlers parse and render;
``hub.bots.service`` does the work.
"""

from __future__ import annotations

from aiohttp import web

from hub.appkeys import BOTS
from hub.bots.models import BotCreated, BotIn, BotList, BotOut, BotPatch, HandedOver, HandoffIn
from hub.web.auth import require_actor
from hub.web.errors import read_json
from hub.web.openapi import operation

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/api/v1/admin/bots")
@operation("Every agent bot", "bots", errors=(403,), response=BotList)
async def list_bots(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "bots.manage")
    return web.json_response({"bots": await request.app[BOTS].list_bots(actor)})


@routes.post("/api/v1/admin/bots")
@operation(
    "Create an agent bot and attach it to channels; the answer shows its API token and webhook "
    "signing secret this once",
    "bots",
    body=BotIn,
    status=201,
    errors=(403, 404, 409, 422),
    response=BotCreated,
)
async def create_bot(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "bots.manage")
    req = BotIn.model_validate(await read_json(request))
    return web.json_response(await request.app[BOTS].create(actor, req), status=201)


@routes.get("/api/v1/admin/bots/{bot_id}")
@operation("One agent bot", "bots", errors=(403, 404), response=BotOut)
async def get_bot(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "bots.manage")
    return web.json_response(await request.app[BOTS].get(actor, request.match_info["bot_id"]))


@routes.patch("/api/v1/admin/bots/{bot_id}")
@operation(
    "Change a bot: name, webhook, flow, channels, enabled, limits; rotate_credentials issues a new "
    "token and signing secret (shown this once). A bot disabled or taken off a channel hands over "
    "the conversations it held there",
    "bots",
    body=BotPatch,
    errors=(403, 404, 409, 422),
    response=BotCreated,
)
async def patch_bot(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "bots.manage")
    req = BotPatch.model_validate(await read_json(request))
    return web.json_response(await request.app[BOTS].update(actor, request.match_info["bot_id"], req))


@routes.delete("/api/v1/admin/bots/{bot_id}")
@operation(
    "Delete a bot; the conversations it held are handed over to agents", "bots", status=204, errors=(403, 404)
)
async def delete_bot(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "bots.manage")
    await request.app[BOTS].delete(actor, request.match_info["bot_id"])
    return web.Response(status=204)


@routes.post("/api/v1/conversations/{conversation_id}/handoff")
@operation(
    "Hand the conversation from its bot to people: by the bot (its token), or by an agent taking "
    "over (conversations.update). The bot receives none of its events after this",
    "bots",
    body=HandoffIn,
    errors=(403, 404, 409, 422),
    response=HandedOver,
)
async def handoff(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = HandoffIn.model_validate(await read_json(request))
    event = await request.app[BOTS].handoff(actor, request.match_info["conversation_id"], req.reason)
    return web.json_response(event)
