"""Admin endpoints: channel instances, who serves them, and installed plugins."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hub.appkeys import CHANNEL_ADMIN, DELIVERIES, INGEST, OUTBOX, PLUGIN_REPORT, REGISTRY, TEAMS
from hub.limits import Settings
from hub.services.deliveries import DELIVERY_STATES
from hub.services.errors import NotFound
from hub.web.auth import require_actor
from hub.web.errors import ApiError, query_int, read_json
from hub.web.openapi import operation, query_integer
from hub.web.schemas import ChannelList, ChannelMembersOut, ChannelOut, HealthOut, PluginsOut
from hub.web.workspace import known_query

__all__ = ["routes"]

routes = web.RouteTableDef()
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=ID_PATTERN, description="omit for a generated id")
    type: str = Field(max_length=64)
    name: str = Field(min_length=1, max_length=200)
    enabled: StrictBool = True
    settings: Settings = Field(default_factory=dict)


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: StrictBool | None = None
    settings: Settings | None = Field(default=None, description="merged into the stored settings")


class ChannelMembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[str] = Field(default_factory=list, max_length=10_000)
    team_ids: list[str] = Field(default_factory=list, max_length=1_000)


@routes.get("/api/v1/admin/channels")
@operation(
    "All channel instances, enabled or not",
    "admin",
    errors=(403,),
    response=ChannelList,
    operation_id="list_admin_channels",
)
async def admin_list(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(request.app[CHANNEL_ADMIN].all(actor))


def _create_schema(app: web.Application) -> dict[str, Any]:
    """ChannelCreate as the handler validates it: ``type`` is an installed type, and ``settings``
    that type's own Settings model (required fields, unknown ones refused)."""
    ref = "#/components/schemas/{model}"
    schema = ChannelCreate.model_json_schema(ref_template=ref)
    defs = schema.setdefault("$defs", {})
    types = app[REGISTRY].types()
    schema["properties"]["type"] = {"type": "string", "enum": sorted(types)}
    branches = []
    for name, cls in sorted(types.items()):
        settings = cls.Settings.model_json_schema(ref_template=ref)
        defs.update(settings.pop("$defs", {}))
        # Every plugin's model is called Settings: a title of its own per type, so that generated
        # clients get one class per type instead of clashing names.
        title = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))
        settings["title"] = f"{title}Settings"
        defs[f"{title}Settings"] = settings
        branches.append(
            {
                "title": f"{title}ChannelCreate",
                "properties": {
                    "type": {"const": name},
                    "settings": {"$ref": ref.format(model=f"{title}Settings")},
                },
                "required": ["type", "settings"],
            }
        )
    schema["oneOf"] = branches
    return schema


@routes.post("/api/v1/admin/channels")
@operation(
    "Create a channel instance",
    "admin",
    body=ChannelCreate,
    body_schema=_create_schema,
    status=201,
    errors=(403, 409, 422),
    response=ChannelOut,
    operation_id="create_channel",
)
async def admin_create(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "channels.manage")
    req = ChannelCreate.model_validate(await read_json(request))
    out = await request.app[CHANNEL_ADMIN].create(
        actor, req.id, req.type, req.name, req.enabled, req.settings
    )
    return web.json_response(out, status=201)


@routes.get("/api/v1/admin/channels/{channel_id}")
@operation(
    "One channel instance with masked settings and setup instructions",
    "admin",
    errors=(403, 404),
    response=ChannelOut,
    operation_id="get_admin_channel",
)
async def admin_get(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(request.app[CHANNEL_ADMIN].get(actor, request.match_info["channel_id"]))


@routes.patch("/api/v1/admin/channels/{channel_id}")
@operation(
    "Rename, enable/disable or change settings (merged; masked secrets keep their value)",
    "admin",
    body=ChannelPatch,
    errors=(403, 404, 422),
    response=ChannelOut,
    operation_id="update_channel",
)
async def admin_patch(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "channels.manage")
    req = ChannelPatch.model_validate(await read_json(request))
    out = await request.app[CHANNEL_ADMIN].update(
        actor, request.match_info["channel_id"], name=req.name, enabled=req.enabled, settings=req.settings
    )
    request.app[OUTBOX].notify()
    return web.json_response(out)


@routes.post("/api/v1/admin/channels/{channel_id}/check")
@operation(
    "Test the channel's credentials with its provider now; returns the health",
    "admin",
    errors=(403, 404, 409),
    response=HealthOut,
    operation_id="check_channel",
)
async def admin_check(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    health = await request.app[CHANNEL_ADMIN].check(actor, request.match_info["channel_id"])
    return web.json_response(health.public())


class ResyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: date = Field(description="fetch everything from this day on (YYYY-MM-DD)")


class ResyncOut(BaseModel):
    found: int = Field(description="items the provider holds since the date")
    new: int = Field(description="of those, items the hub had not stored before")


@routes.post("/api/v1/admin/channels/{channel_id}/resync")
@operation(
    "Pull channels (email): fetch everything since a date again; what was stored counts once",
    "admin",
    body=ResyncRequest,
    errors=(403, 404, 409, 422, 502),
    response=ResyncOut,
    operation_id="resync_channel",
)
async def admin_resync(request: web.Request) -> web.StreamResponse:
    await require_actor(request, "channels.manage")
    req = ResyncRequest.model_validate(await read_json(request))
    counts = await request.app[INGEST].resync(request.match_info["channel_id"], req.since)
    return web.json_response(ResyncOut.model_validate(counts).model_dump())


async def _toggle(request: web.Request, enabled: bool) -> web.StreamResponse:
    actor = await require_actor(request)
    out = await request.app[CHANNEL_ADMIN].update(actor, request.match_info["channel_id"], enabled=enabled)
    request.app[OUTBOX].notify()
    return web.json_response(out)


@routes.post("/api/v1/admin/channels/{channel_id}/enable")
@operation(
    "Enable a channel", "admin", errors=(403, 404, 422), response=ChannelOut, operation_id="enable_channel"
)
async def admin_enable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, True)


@routes.post("/api/v1/admin/channels/{channel_id}/disable")
@operation(
    "Disable a channel (webhooks answer 404, queued sends wait)",
    "admin",
    errors=(403, 404),
    response=ChannelOut,
    operation_id="disable_channel",
)
async def admin_disable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, False)


@routes.delete("/api/v1/admin/channels/{channel_id}")
@operation("Delete a channel instance", "admin", status=204, errors=(403, 404), operation_id="delete_channel")
async def admin_delete(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    await request.app[CHANNEL_ADMIN].delete(actor, request.match_info["channel_id"])
    return web.Response(status=204)


@routes.get("/api/v1/admin/channels/{channel_id}/members")
@operation("The users and teams that serve a channel", "admin", errors=(403, 404), response=ChannelMembersOut)
async def channel_members(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(
        await request.app[TEAMS].channel_members(actor, request.match_info["channel_id"])
    )


@routes.put("/api/v1/admin/channels/{channel_id}/members")
@operation(
    "Choose the users and teams that serve a channel (replaces the lists; applies to open streams at once)",
    "admin",
    body=ChannelMembersIn,
    errors=(403, 404, 422),
    response=ChannelMembersOut,
)
async def set_channel_members(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "channels.manage")
    req = ChannelMembersIn.model_validate(await read_json(request))
    out = await request.app[TEAMS].set_channel_members(
        actor, request.match_info["channel_id"], req.user_ids, req.team_ids
    )
    return web.json_response(out)


@routes.get("/api/v1/plugins")
@operation(
    "Installed plugins with versions, hooks and channel types", "admin", errors=(403,), response=PluginsOut
)
async def plugins(request: web.Request) -> web.StreamResponse:
    await require_actor(request, "plugins.read")
    return web.json_response(request.app[PLUGIN_REPORT].as_dict())


# ---- deliveries: what the provider sent, as stored (the console's deliveries view reads the same) --


class DeliveryOut(BaseModel):
    id: int = Field(description="the delivery's id (ascending in arrival order)")
    received_at: str | None
    state: str = Field(description="pending, done, failed or skipped")
    attempts: int
    error: str | None = Field(description="why processing failed (or was skipped)")
    processed_at: str | None
    retry_at: str | None = Field(description="when a pending delivery is tried again")
    size: int = Field(description="the body's length in bytes")


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="newest first")
    next_before: int | None = Field(description="pass as before= for the next page; null on the last")


@routes.get("/api/v1/admin/channels/{channel_id}/deliveries")
@operation(
    "A channel's stored webhook deliveries, newest first, with their state and error",
    "admin",
    errors=(400, 403, 404),
    response=DeliveryPage,
    query={
        "state": ("only deliveries in this state", {"type": "string", "enum": list(DELIVERY_STATES)}),
        "before": ("a delivery id: older ones than it", query_integer(0)),
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
    operation_id="list_channel_deliveries",
)
async def channel_deliveries(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "channels.manage")
    known_query(request, "state", "before", "limit")
    state = request.query.get("state")
    if state is not None and state not in DELIVERY_STATES:
        raise ApiError(400, "bad_request", f"state must be one of {', '.join(DELIVERY_STATES)}")
    before = query_int(request, "before", 0) if "before" in request.query else None
    page = await request.app[DELIVERIES].list(
        actor,
        request.match_info["channel_id"],
        state=state,
        before=before,
        limit=query_int(request, "limit", 50, minimum=1, maximum=200),
    )
    return web.json_response(page)


@routes.post("/api/v1/admin/channels/{channel_id}/deliveries/{delivery_id}/replay")
@operation(
    "Process one stored delivery again (a message it carried is still stored once); its new state",
    "admin",
    errors=(403, 404),
    response=DeliveryOut,
    operation_id="replay_channel_delivery",
)
async def replay_delivery(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "channels.manage")
    raw = request.match_info["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(
            f"delivery {raw[:40]!r} of channel {request.match_info['channel_id']!r} does not exist"
        )
    out = await request.app[DELIVERIES].replay(actor, request.match_info["channel_id"], int(raw))
    return web.json_response(out)
