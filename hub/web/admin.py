"""Admin endpoints: channel instances and installed plugins."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hub import schema
from hub.appkeys import CHANNELS, OUTBOX, PLUGIN_REPORT, REGISTRY, STORE
from hub.channel import Health
from hub.channels import ChannelService, SettingsInvalid
from hub.db import new_id
from hub.limits import Settings
from hub.models import utcnow
from hub.outbound import cancel_channel_queue
from hub.web.auth import require_user
from hub.web.errors import ApiError, read_json
from hub.web.openapi import operation
from hub.web.schemas import ChannelList, ChannelOut, HealthOut, PluginsOut

__all__ = ["routes", "upsert_channel"]

routes = web.RouteTableDef()
CH = schema.channels
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


async def upsert_channel(
    svc: ChannelService,
    channel_id: str,
    type_name: str,
    name: str,
    enabled: bool,
    settings: dict[str, Any],
    *,
    source: str,
    create_only: bool = False,
) -> dict[str, Any]:
    """Create or replace a channel row (validated, secrets sealed) and publish it."""
    store = svc.store
    async with store.tx() as tx:
        prior = (await tx.conn.execute(sa.select(CH).where(CH.c.id == channel_id))).mappings().first()
        if prior is not None and create_only:
            raise ApiError(409, "conflict", f"channel {channel_id!r} already exists")
        if prior is not None and prior["type"] != type_name:
            raise ApiError(
                409,
                "conflict",
                f"channel {channel_id!r} is of type {prior['type']!r}; delete it to change its type",
            )
        previous = svc.full_settings(dict(prior)) if prior is not None else None
        validated = svc.validate_settings(type_name, settings, previous)
        plain, sealed = svc.split(validated)
        now = utcnow()
        values = {
            "type": type_name,
            "name": name,
            "enabled": enabled,
            "settings": plain,
            "secrets": sealed,
            "source": source,
            "updated_at": now,
        }
        if prior is None:
            await tx.conn.execute(
                CH.insert().values(
                    id=channel_id,
                    health=Health().model_dump(mode="json"),
                    send_paused=False,
                    created_at=now,
                    **values,
                )
            )
        else:
            # New credentials end an auth pause: sending resumes with the queue intact.
            # Compare values, not ciphertexts: sealing the same secrets twice gives different bytes.
            credentials_changed = svc.reveal(validated) != svc.reveal(
                svc.validate_settings(type_name, {}, previous)
            )
            if prior["send_paused"] and credentials_changed:
                values["send_paused"] = False
                values["health"] = Health().model_dump(mode="json")
            await tx.conn.execute(CH.update().where(CH.c.id == channel_id).values(**values))
        row = dict((await tx.conn.execute(sa.select(CH).where(CH.c.id == channel_id))).mappings().one())
        svc.refresh(row)
        await tx.emit("channel.updated", svc.public_dict(row, admin=False), channel_id=channel_id)
    return row


@routes.get("/api/v1/admin/channels")
@operation("All channel instances, enabled or not", "admin", errors=(403,), response=ChannelList)
async def admin_list(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    svc = request.app[CHANNELS]
    return web.json_response(
        {
            "channels": [svc.public_dict(r, admin=True) for _, r in sorted(svc.rows.items())],
            "types": sorted(svc.registry.types()),
        }
    )


def _settings_error(exc: SettingsInvalid) -> ApiError:
    return ApiError(422, "validation_failed", "the channel settings are invalid", exc.errors)


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
        branches.append(
            {"properties": {"type": {"const": name}, "settings": settings}, "required": ["type", "settings"]}
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
)
async def admin_create(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    req = ChannelCreate.model_validate(await read_json(request))
    svc = request.app[CHANNELS]
    if req.type not in svc.registry:
        raise ApiError(
            422,
            "validation_failed",
            f"unknown channel type {req.type!r}",
            [{"field": "type", "message": f"installed types: {', '.join(sorted(svc.registry.types()))}"}],
        )
    cid = req.id or new_id("ch_").lower()
    try:
        row = await upsert_channel(
            svc, cid, req.type, req.name, req.enabled, req.settings, source="api", create_only=True
        )
    except SettingsInvalid as exc:
        raise _settings_error(exc) from None
    svc.check_health_soon(cid)
    return web.json_response(svc.public_dict(row, admin=True), status=201)


def _row(request: web.Request) -> dict[str, Any]:
    cid = request.match_info["channel_id"]
    row = request.app[CHANNELS].rows.get(cid)
    if row is None:
        raise ApiError(404, "not_found", f"channel {cid!r} does not exist")
    return row


@routes.get("/api/v1/admin/channels/{channel_id}")
@operation(
    "One channel instance with masked settings and setup instructions",
    "admin",
    errors=(403, 404),
    response=ChannelOut,
)
async def admin_get(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    return web.json_response(request.app[CHANNELS].public_dict(_row(request), admin=True))


@routes.patch("/api/v1/admin/channels/{channel_id}")
@operation(
    "Rename, enable/disable or change settings (merged; masked secrets keep their value)",
    "admin",
    body=ChannelPatch,
    errors=(403, 404, 422),
    response=ChannelOut,
)
async def admin_patch(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    row = _row(request)
    req = ChannelPatch.model_validate(await read_json(request))
    svc = request.app[CHANNELS]
    try:
        new = await upsert_channel(
            svc,
            row["id"],
            row["type"],
            req.name or row["name"],
            row["enabled"] if req.enabled is None else req.enabled,
            req.settings or {},
            source=row["source"],
        )
    except SettingsInvalid as exc:
        raise _settings_error(exc) from None
    if req.settings:
        svc.check_health_soon(row["id"])
    request.app[OUTBOX].notify()
    return web.json_response(svc.public_dict(new, admin=True))


@routes.post("/api/v1/admin/channels/{channel_id}/check")
@operation(
    "Test the channel's credentials with its provider now; returns the health",
    "admin",
    errors=(403, 404, 409),
    response=HealthOut,
)
async def admin_check(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    row = _row(request)
    svc = request.app[CHANNELS]
    health = await svc.check_health(row["id"])
    if health is None:
        raise ApiError(409, "channel_inactive", "the channel is disabled or its plugin is not installed")
    return web.json_response(health.public())


async def _toggle(request: web.Request, enabled: bool) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    row = _row(request)
    svc = request.app[CHANNELS]
    try:
        new = await upsert_channel(
            svc, row["id"], row["type"], row["name"], enabled, {}, source=row["source"]
        )
    except SettingsInvalid as exc:
        raise _settings_error(exc) from None
    request.app[OUTBOX].notify()
    return web.json_response(svc.public_dict(new, admin=True))


@routes.post("/api/v1/admin/channels/{channel_id}/enable")
@operation("Enable a channel", "admin", errors=(403, 404, 422), response=ChannelOut)
async def admin_enable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, True)


@routes.post("/api/v1/admin/channels/{channel_id}/disable")
@operation(
    "Disable a channel (webhooks answer 404, queued sends wait)",
    "admin",
    errors=(403, 404),
    response=ChannelOut,
)
async def admin_disable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, False)


@routes.delete("/api/v1/admin/channels/{channel_id}")
@operation("Delete a channel instance", "admin", status=204, errors=(403, 404))
async def admin_delete(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.manage")
    row = _row(request)
    svc = request.app[CHANNELS]
    async with request.app[STORE].tx() as tx:
        # What was waiting to go out on this channel never will: tell the app instead of leaving
        # the messages queued forever.
        await cancel_channel_queue(tx, row["id"], "the channel was deleted")
        await tx.conn.execute(CH.delete().where(CH.c.id == row["id"]))
        await tx.emit(
            "channel.updated", {"id": row["id"], "type": row["type"], "deleted": True}, channel_id=row["id"]
        )
    svc.forget(row["id"])
    return web.Response(status=204)


@routes.get("/api/v1/plugins")
@operation(
    "Installed plugins with versions, hooks and channel types", "admin", errors=(403,), response=PluginsOut
)
async def plugins(request: web.Request) -> web.StreamResponse:
    await require_user(request, "plugins.read")
    return web.json_response(request.app[PLUGIN_REPORT].as_dict())
