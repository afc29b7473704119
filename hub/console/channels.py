"""Channels: the list with health, the setup wizard generated from each plugin's ``Settings``
model, the live credentials check, the wait for the first event, enable/disable, and deliveries."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from hub.appkeys import CHANNEL_ADMIN, DELIVERIES, OUTBOX, REGISTRY
from hub.channel import HEALTH_ACTIONS, HealthState
from hub.channels import SettingsInvalid
from hub.console.base import form_data, is_htmx, need_actor, redirect, render
from hub.console.forms import errors_by_field, form_fields, parse_form
from hub.services.deliveries import DELIVERY_STATES
from hub.services.errors import Conflict, Invalid

__all__ = ["routes"]

routes = web.RouteTableDef()
STATES = frozenset(s.value for s in HealthState)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# What the admin can do about each health state, beside the action text every channel shares.
HEALTH_BUTTONS: dict[str, list[tuple[str, str]]] = {
    HealthState.OK: [("check", "Check again")],
    HealthState.CONNECTING: [("check", "Check now")],
    HealthState.AUTH_FAILED: [("settings", "Update credentials"), ("check", "Check again")],
    HealthState.RATE_LIMITED: [("check", "Check now")],
    HealthState.UNREACHABLE: [("check", "Check now")],
    HealthState.PAUSED: [("enable", "Enable")],
    HealthState.UNKNOWN: [("check", "Check now")],
}


def _type_info(cls: Any) -> dict[str, Any]:
    doc = (cls.__doc__ or "").strip().splitlines()
    return {"name": cls.type_name, "summary": doc[0] if doc else "", "mode": cls.mode}


def _health(channel: dict[str, Any]) -> dict[str, Any]:
    health = dict(channel.get("health") or {})
    state = health.get("state") or HealthState.UNKNOWN.value
    if not channel.get("enabled"):
        state = HealthState.PAUSED.value
        health["action"] = HEALTH_ACTIONS[HealthState.PAUSED]
    health["state"] = state
    health.setdefault("action", HEALTH_ACTIONS.get(HealthState(state), "") if state in STATES else "")
    health["buttons"] = HEALTH_BUTTONS.get(state, [])
    return health


@routes.get("/channels")
async def channel_list(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "channels.manage")
    data = request.config_dict[CHANNEL_ADMIN].all(actor)
    rows = [{**c, "health_view": _health(c)} for c in data["channels"]]
    return await render(request, "channels/list.html", {"channels": rows})


@routes.get("/channels/new")
async def choose_type(request: web.Request) -> web.StreamResponse:
    await need_actor(request, "channels.manage")
    types = [_type_info(cls) for _, cls in sorted(request.config_dict[REGISTRY].types().items())]
    return await render(request, "channels/choose.html", {"types": types})


def _settings_model(request: web.Request, type_name: str) -> Any:
    cls = request.config_dict[REGISTRY].get(type_name)
    if cls is None:
        raise web.HTTPNotFound(reason=f"No installed plugin provides the channel type {type_name!r}")
    return cls


async def _wizard(
    request: web.Request,
    cls: Any,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    head: dict[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    fields = form_fields(cls.Settings, values or {}, errors or {})
    ctx = {"type": _type_info(cls), "fields": fields, "head": head or {}, "errors": errors or {}}
    return await render(request, "channels/new.html", ctx, status=status)


@routes.get("/channels/new/{type_name}")
async def new_channel(request: web.Request) -> web.StreamResponse:
    await need_actor(request, "channels.manage")
    cls = _settings_model(request, request.match_info["type_name"])
    return await _wizard(request, cls, head={"name": "", "id": ""})


@routes.post("/channels/new/{type_name}")
async def create_channel(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "channels.manage")
    cls = _settings_model(request, request.match_info["type_name"])
    form = await form_data(request)
    head = {"name": form.get("name", "").strip(), "id": form.get("id", "").strip()}
    values, errors = parse_form(cls.Settings, form, editing=False)
    if not head["name"] or len(head["name"]) > 200:
        errors["name"] = "Give the channel a name of 1 to 200 characters."
    if head["id"] and not ID_PATTERN.match(head["id"]):
        errors["id"] = "Letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit."
    if not errors:
        try:
            out = await request.config_dict[CHANNEL_ADMIN].create(
                actor, head["id"] or None, cls.type_name, head["name"], True, values
            )
        except SettingsInvalid as exc:
            errors = errors_by_field(exc.errors, "settings")
        except Conflict as exc:
            errors = {"id": exc.message}
        except Invalid as exc:
            errors = errors_by_field(exc.details)
        else:
            return redirect(request, f"/channels/{out['id']}?created=1")
    # Never echo a secret back: the password inputs are rendered empty.
    shown = {k: v for k, v in values.items() if k not in cls.Settings.secret_fields()}
    return await _wizard(request, cls, values=shown, errors=errors, head=head, status=422)


async def _channel(request: web.Request) -> tuple[Any, dict[str, Any]]:
    actor = await need_actor(request, "channels.manage")
    return actor, request.config_dict[CHANNEL_ADMIN].get(actor, request.match_info["channel_id"])


@routes.get("/channels/{channel_id}")
async def channel_page(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    first = await request.config_dict[DELIVERIES].first(actor, channel["id"])
    ctx = {
        "channel": channel,
        "health": _health(channel),
        "first": first,
        "created": request.query.get("created") == "1",
    }
    return await render(request, "channels/detail.html", ctx)


@routes.post("/channels/{channel_id}/check")
async def check(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    admin = request.config_dict[CHANNEL_ADMIN]
    if channel["enabled"]:
        await admin.check(actor, channel["id"])
        channel = admin.get(actor, channel["id"])
    if is_htmx(request):
        return await render(
            request, "channels/_health.html", {"channel": channel, "health": _health(channel)}
        )
    return redirect(request, f"/channels/{channel['id']}")


@routes.get("/channels/{channel_id}/first-delivery")
async def first_delivery(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    first = await request.config_dict[DELIVERIES].first(actor, channel["id"])
    return await render(request, "channels/_first.html", {"channel": channel, "first": first})


async def _toggle(request: web.Request, enabled: bool) -> web.StreamResponse:
    actor, channel = await _channel(request)
    await request.config_dict[CHANNEL_ADMIN].update(actor, channel["id"], enabled=enabled)
    request.config_dict[OUTBOX].notify()
    back = "/channels" if request.query.get("back") == "list" else f"/channels/{channel['id']}"
    return redirect(request, back)


@routes.post("/channels/{channel_id}/enable")
async def enable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, True)


@routes.post("/channels/{channel_id}/disable")
async def disable(request: web.Request) -> web.StreamResponse:
    return await _toggle(request, False)


async def _settings_page(
    request: web.Request,
    channel: dict[str, Any],
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    name: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    cls = _settings_model(request, channel["type"])
    secrets = frozenset(k for k in cls.Settings.secret_fields() if channel["settings"].get(k))
    plain = {k: v for k, v in channel["settings"].items() if k not in cls.Settings.secret_fields()}
    fields = form_fields(cls.Settings, {**plain, **(values or {})}, errors or {}, stored_secrets=secrets)
    ctx = {"channel": channel, "fields": fields, "errors": errors or {}, "name": name or channel["name"]}
    return await render(request, "channels/settings.html", ctx, status=status)


@routes.get("/channels/{channel_id}/settings")
async def settings_page(request: web.Request) -> web.StreamResponse:
    _, channel = await _channel(request)
    return await _settings_page(request, channel)


@routes.post("/channels/{channel_id}/settings")
async def save_settings(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    cls = _settings_model(request, channel["type"])
    form = await form_data(request)
    name = form.get("name", "").strip()
    values, errors = parse_form(cls.Settings, form, editing=True)
    if not name or len(name) > 200:
        errors["name"] = "Give the channel a name of 1 to 200 characters."
    if not errors:
        try:
            await request.config_dict[CHANNEL_ADMIN].update(actor, channel["id"], name=name, settings=values)
        except SettingsInvalid as exc:
            errors = errors_by_field(exc.errors, "settings")
        else:
            request.config_dict[OUTBOX].notify()
            return redirect(request, f"/channels/{channel['id']}")
    shown = {k: v for k, v in values.items() if k not in cls.Settings.secret_fields()}
    return await _settings_page(request, channel, values=shown, errors=errors, name=name, status=422)


@routes.get("/channels/{channel_id}/deliveries")
async def deliveries(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    state = request.query.get("state") or None
    if state is not None and state not in DELIVERY_STATES:
        state = None
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    page = await request.config_dict[DELIVERIES].list(actor, channel["id"], state=state, before=before)
    ctx = {"channel": channel, "page": page, "state": state, "states": DELIVERY_STATES}
    return await render(request, "channels/deliveries.html", ctx)


@routes.post("/channels/{channel_id}/deliveries/{delivery_id:[0-9]{1,18}}/replay")
async def replay(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    delivery = await request.config_dict[DELIVERIES].replay(
        actor, channel["id"], int(request.match_info["delivery_id"])
    )
    if is_htmx(request):
        return await render(request, "channels/_delivery.html", {"channel": channel, "d": delivery})
    return redirect(request, f"/channels/{channel['id']}/deliveries")


@routes.post("/channels/{channel_id}/delete")
async def delete(request: web.Request) -> web.StreamResponse:
    actor, channel = await _channel(request)
    await request.config_dict[CHANNEL_ADMIN].delete(actor, channel["id"])
    return redirect(request, "/channels")
