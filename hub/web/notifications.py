"""Notifications over HTTP: preferences (the app's and the admin's views of one table), the
organisation's defaults, the in-app list, and push devices."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from hub.appkeys import NOTIFICATIONS, NOTIFIER_REGISTRY
from hub.notify.notifier import EVENT_TYPES, MEDIA
from hub.web.auth import require_actor
from hub.web.errors import ApiError, query_int, query_text, read_json
from hub.web.etag import config_response
from hub.web.openapi import operation, query_integer
from hub.web.workspace import known_query

__all__ = ["routes"]

routes = web.RouteTableDef()


class MediaChoice(BaseModel):
    """On or off per medium; a medium left out keeps its setting."""

    model_config = ConfigDict(extra="forbid")

    push: StrictBool | None = None
    email: StrictBool | None = None
    in_app: StrictBool | None = None


class MediaOut(BaseModel):
    push: bool
    email: bool
    in_app: bool


class PreferenceChoices(BaseModel):
    """Per event type, per medium: true or false; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    conversation_created: MediaChoice | None = Field(
        default=None, description=EVENT_TYPES["conversation_created"]
    )
    assigned: MediaChoice | None = Field(default=None, description=EVENT_TYPES["assigned"])
    new_message: MediaChoice | None = Field(default=None, description=EVENT_TYPES["new_message"])
    mention: MediaChoice | None = Field(default=None, description=EVENT_TYPES["mention"])
    snooze_ended: MediaChoice | None = Field(default=None, description=EVENT_TYPES["snooze_ended"])


class PreferenceTable(BaseModel):
    """Per event type, per medium: on or off."""

    conversation_created: MediaOut = Field(description=EVENT_TYPES["conversation_created"])
    assigned: MediaOut = Field(description=EVENT_TYPES["assigned"])
    new_message: MediaOut = Field(description=EVENT_TYPES["new_message"])
    mention: MediaOut = Field(description=EVENT_TYPES["mention"])
    snooze_ended: MediaOut = Field(description=EVENT_TYPES["snooze_ended"])


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: PreferenceChoices


class PreferencesOut(BaseModel):
    user_id: str
    preferences: PreferenceTable


class DefaultsOut(BaseModel):
    preferences: PreferenceTable


class NotificationOut(BaseModel):
    id: str
    user_id: str
    event: str = Field(description=", ".join(EVENT_TYPES))
    title: str
    body: str | None
    conversation_id: str | None
    channel_id: str | None
    data: dict[str, object]
    read_at: str | None
    created_at: str


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    unread_count: int
    next_before: str | None


class ReadAllOut(BaseModel):
    marked: int
    read_at: str


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="the push notifier that reaches the device (webhook, or a plugin's)"
    )
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    platform: Annotated[str, StringConstraints(max_length=32)] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class DeviceOut(BaseModel):
    id: str
    provider: str
    platform: str | None
    name: str | None
    created_at: str


class DeviceList(BaseModel):
    devices: list[DeviceOut]


def preference_changes(req: PreferencesIn) -> dict[str, dict[str, bool]]:
    table = req.preferences.model_dump(exclude_none=True)
    return {
        event: {m: v for m, v in media.items() if m in MEDIA and v is not None}
        for event, media in table.items()
    }


def _device_schema(app: web.Application) -> dict[str, Any]:
    """DeviceIn, with ``provider`` one of the push notifiers installed in this hub."""
    schema = DeviceIn.model_json_schema()
    push = sorted(n for n, cls in app[NOTIFIER_REGISTRY].types().items() if cls.medium == "push")
    schema["properties"]["provider"]["enum"] = push
    return schema


# ---- preferences --------------------------------------------------------------------------------


@routes.get("/api/v1/me/notification-preferences")
@operation(
    "Your notification preferences, defaults included (cacheable: ETag / If-None-Match)",
    "notifications",
    response=PreferencesOut,
    etag=True,
)
async def my_preferences(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "notification_preferences")


@routes.patch("/api/v1/me/notification-preferences")
@operation(
    "Change some of your notification preferences (the rest stay)",
    "notifications",
    body=PreferencesIn,
    errors=(422,),
    response=PreferencesOut,
)
async def set_my_preferences(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = PreferencesIn.model_validate(await read_json(request))
    return web.json_response(
        await request.app[NOTIFICATIONS].set_preferences(actor, actor.id, preference_changes(req))
    )


@routes.get("/api/v1/admin/users/{user_id}/notification-preferences")
@operation(
    "A user's notification preferences, as their app sees them",
    "notifications",
    errors=(403, 404),
    response=PreferencesOut,
)
async def user_preferences(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    return web.json_response(
        await request.app[NOTIFICATIONS].preferences(actor, request.match_info["user_id"])
    )


@routes.patch("/api/v1/admin/users/{user_id}/notification-preferences")
@operation(
    "Change some of a user's notification preferences",
    "notifications",
    body=PreferencesIn,
    errors=(403, 404, 422),
    response=PreferencesOut,
)
async def set_user_preferences(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = PreferencesIn.model_validate(await read_json(request))
    out = await request.app[NOTIFICATIONS].set_preferences(
        actor, request.match_info["user_id"], preference_changes(req)
    )
    return web.json_response(out)


@routes.get("/api/v1/admin/notification-defaults")
@operation("The organisation's default preferences", "notifications", errors=(403,), response=DefaultsOut)
async def defaults(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    return web.json_response(await request.app[NOTIFICATIONS].defaults(actor))


@routes.patch("/api/v1/admin/notification-defaults")
@operation(
    "Change the default preferences (for every user who did not choose otherwise)",
    "notifications",
    body=PreferencesIn,
    errors=(403, 422),
    response=DefaultsOut,
)
async def set_defaults(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    req = PreferencesIn.model_validate(await read_json(request))
    return web.json_response(await request.app[NOTIFICATIONS].set_defaults(actor, preference_changes(req)))


# ---- the in-app list ----------------------------------------------------------------------------


@routes.get("/api/v1/notifications")
@operation(
    "Your in-app notifications, newest first, with the unread count",
    "notifications",
    response=NotificationPage,
    query={
        "unread": ("true: only unread ones", {"type": "string", "enum": ["true", "false"]}),
        "before": "a notification id: older ones than it",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
)
async def list_notifications(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    known_query(request, "unread", "before", "limit")
    unread = request.query.get("unread", "false")
    if unread not in ("true", "false"):
        raise ApiError(400, "bad_request", "unread must be true or false")
    page = await request.app[NOTIFICATIONS].page(
        actor,
        unread=unread == "true",
        before=query_text(request, "before"),
        limit=query_int(request, "limit", 50, minimum=1, maximum=200),
    )
    return web.json_response(page)


@routes.post("/api/v1/notifications/{notification_id}/read")
@operation("Mark one notification read", "notifications", errors=(404,), response=NotificationOut)
async def read_notification(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    out = await request.app[NOTIFICATIONS].mark_read(actor, request.match_info["notification_id"])
    return web.json_response(out)


@routes.post("/api/v1/notifications/read-all")
@operation("Mark all your notifications read", "notifications", response=ReadAllOut)
async def read_all(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(await request.app[NOTIFICATIONS].mark_all_read(actor))


# ---- push devices -------------------------------------------------------------------------------


@routes.get("/api/v1/me/devices")
@operation("Your devices registered for push", "notifications", response=DeviceList)
async def list_devices(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response({"devices": await request.app[NOTIFICATIONS].devices(actor)})


@routes.post("/api/v1/me/devices")
@operation(
    "Register a device for push (a token registered before moves to you)",
    "notifications",
    body=DeviceIn,
    body_schema=_device_schema,
    status=201,
    errors=(422,),
    response=DeviceOut,
)
async def register_device(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = DeviceIn.model_validate(await read_json(request))
    out = await request.app[NOTIFICATIONS].register_device(
        actor, req.provider, req.token, req.platform, req.name
    )
    return web.json_response(out, status=201)


@routes.delete("/api/v1/me/devices/{device_id}")
@operation("Unregister a device", "notifications", status=204, errors=(404,))
async def delete_device(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    await request.app[NOTIFICATIONS].delete_device(actor, request.match_info["device_id"])
    return web.Response(status=204)
