"""The agents' workspace as admins configure it: labels, quick replies (with their placeholders
rendered), macros (an ordered list of actions, personal or shared), custom attribute definitions
and the notification defaults. Each form is validated by the admin API's own request model and
handed to the service the API calls, through ``submit``: one code path, the same refusals."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from hub.access import Actor
from hub.appkeys import ATTRIBUTES, LABELS, MACROS, NOTIFICATIONS, ORG, QUICK_REPLIES, TEAMS
from hub.console.base import action_route, form_data, need_actor, page_route, render, submit
from hub.notify.notifier import EVENT_TYPES, MEDIA
from hub.services.attributes import APPLIES_TO, TYPES
from hub.services.errors import Invalid, NotFound
from hub.services.quick_replies import PLACEHOLDERS, placeholder_problems, render_text
from hub.web.config import LabelIn, LabelPatch, attribute_changes, attribute_spec
from hub.web.notifications import PreferencesIn, preference_changes
from hub.web.workspace import MacroIn, QuickReplyIn, QuickReplyPatch

__all__ = ["ACTION_TYPES", "routes"]

routes = web.RouteTableDef()


def _text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _delete_route(page: str, param: str, permission: str, service: web.AppKey[Any]) -> None:
    """``POST /{page}/{param}/delete``: the service deletes it, and back to the page."""

    def delete(request: web.Request, actor: Actor) -> Awaitable[None]:
        return request.config_dict[service].delete(actor, request.match_info[param])

    action_route(routes, f"/{page}/{{{param}}}/delete", permission, delete, then=f"/{page}")


# ---- labels -------------------------------------------------------------------------------------


async def _labels_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    editing: str | None = None,
) -> web.StreamResponse:
    ctx = {
        "labels": (await request.config_dict[LABELS].list(actor))["labels"],
        "errors": errors or {},
        "form": form or {"name": "", "colour": "#1f93ff", "description": ""},
        "editing": editing,
    }
    return await render(request, "workspace/labels.html", ctx, status=status)


def _label_form(form: dict[str, str]) -> dict[str, str]:
    return {k: _text(form, k) for k in ("name", "colour", "description")}


page_route(routes, "/labels", "labels.manage", _labels_page)


@routes.post("/labels")
async def create_label(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "labels.manage")
    shown = _label_form(await form_data(request))

    async def work() -> None:
        req = LabelIn.model_validate({**shown, "description": shown["description"] or None})
        await request.config_dict[LABELS].create(actor, req.name, req.colour, req.description)

    return await submit(request, actor, _labels_page, shown, work, then="/labels", field="name")


@routes.post("/labels/{label_id}")
async def update_label(request: web.Request) -> web.StreamResponse:
    """Rename, recolour or describe (an empty description clears it)."""
    actor = await need_actor(request, "labels.manage")
    label_id = request.match_info["label_id"]
    shown = _label_form(await form_data(request))

    async def work() -> None:
        req = LabelPatch.model_validate({**shown, "description": shown["description"] or None})
        await request.config_dict[LABELS].update(
            actor,
            label_id,
            name=req.name,
            colour=req.colour,
            description=req.description,
            clear_description=req.description is None,
        )

    page = partial(_labels_page, editing=label_id)
    return await submit(request, actor, page, shown, work, then="/labels", field="name")


_delete_route("labels", "label_id", "labels.manage", LABELS)


# ---- quick replies ------------------------------------------------------------------------------

# What a preview fills the placeholders with (the agent is the admin looking at it).
SAMPLE_CONVERSATION: dict[str, Any] = {
    "contact": {"name": "Ana Silva", "email": "ana@example.com", "phone": "+351 912 345 678"},
    "custom_attributes": {"order_id": "A-1042", "plan": "gold"},
}


def preview(text: str, actor: Actor) -> dict[str, Any]:
    """The text as it would render for the sample conversation, or why it would be refused."""
    problems = placeholder_problems(text)
    if problems:
        return {"text": None, "problems": problems}
    return {"text": render_text(text, SAMPLE_CONVERSATION, dict(actor.user)), "problems": []}


async def _quick_replies_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    editing: str | None = None,
) -> web.StreamResponse:
    replies = await request.config_dict[QUICK_REPLIES].search(actor, None, 500)
    form = form or {"code": "", "text": ""}
    ctx = {
        "replies": [{**r, "preview": preview(r["text"], actor)} for r in replies],
        "errors": errors or {},
        "form": form,
        "form_preview": preview(form["text"], actor) if form["text"] else None,
        "editing": editing,
        "placeholders": [*PLACEHOLDERS, "conversation.custom_attributes.KEY"],
        "sample": SAMPLE_CONVERSATION,
    }
    return await render(request, "workspace/quick_replies.html", ctx, status=status)


page_route(routes, "/quick-replies", "config.manage", _quick_replies_page)


@routes.post("/quick-replies/preview")
async def quick_reply_preview(request: web.Request) -> web.StreamResponse:
    """The preview beside the text box, as the admin types (htmx)."""
    actor = await need_actor(request, "config.manage")
    text = (await form_data(request)).get("text", "")[:4096]
    ctx = {"p": preview(text, actor) if text.strip() else None, "target": "new"}
    return await render(request, "workspace/_preview.html", ctx)


@routes.post("/quick-replies")
async def create_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    form = await form_data(request)
    shown = {"code": _text(form, "code"), "text": form.get("text", "")}

    async def work() -> None:
        req = QuickReplyIn.model_validate(shown)
        await request.config_dict[QUICK_REPLIES].create(actor, req.code, req.text)

    return await submit(request, actor, _quick_replies_page, shown, work, then="/quick-replies", field="code")


@routes.post("/quick-replies/{quick_reply_id}")
async def update_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    reply_id = request.match_info["quick_reply_id"]
    form = await form_data(request)
    shown = {"code": _text(form, "code"), "text": form.get("text", "")}

    async def work() -> None:
        req = QuickReplyPatch.model_validate(shown)
        await request.config_dict[QUICK_REPLIES].update(actor, reply_id, req.code, req.text)

    page = partial(_quick_replies_page, editing=reply_id)
    return await submit(request, actor, page, shown, work, then="/quick-replies", field="code")


_delete_route("quick-replies", "quick_reply_id", "config.manage", QUICK_REPLIES)


# ---- macros -------------------------------------------------------------------------------------

# Each action type's one input in the editor: (the field it fills, what the admin types).
ACTION_TYPES: dict[str, tuple[str, str]] = {
    "send_text": ("text", "the text to send"),
    "send_quick_reply": ("quick_reply_id", "a quick reply's code"),
    "add_label": ("label", "a label's name"),
    "remove_label": ("label", "a label's name"),
    "assign_agent": ("user_id", "a user's email (empty unassigns)"),
    "assign_team": ("team_id", "a team's name (empty clears the team)"),
    "set_status": ("status", "open, pending or resolved"),
    "snooze": ("minutes", "minutes"),
    "set_custom_attribute": ("key", "key=value (value as JSON when it parses: 42, true)"),
    "add_note": ("text", "the note"),
}
MAX_ACTIONS = 50
BLANK_ROWS = 3


def _value_of(action: dict[str, Any], names: dict[str, dict[str, str]]) -> str:
    """What the editor shows for a stored action (the inverse of ``_action``)."""
    kind = action.get("type", "")
    if kind == "set_custom_attribute":
        value = action.get("value")
        return f"{action.get('key', '')}={value if isinstance(value, str) else json.dumps(value)}"
    field = ACTION_TYPES.get(kind, ("", ""))[0]
    raw = action.get(field)
    if raw is None:
        return ""
    return names.get(field, {}).get(str(raw), str(raw))


async def _lookups(request: web.Request, actor: Actor) -> dict[str, dict[str, str]]:
    """id -> what the admin types, for the references an action holds."""
    users = await request.config_dict[ORG].list_users(actor)
    teams = await request.config_dict[TEAMS].list_teams(actor)
    replies = await request.config_dict[QUICK_REPLIES].search(actor, None, 500)
    return {
        "user_id": {u["id"]: u["email"] for u in users},
        "team_id": {t["id"]: t["name"] for t in teams},
        "quick_reply_id": {r["id"]: r["code"] for r in replies},
    }


def _action(kind: str, value: str, ids: dict[str, dict[str, str]]) -> dict[str, Any]:
    """One editor row as the action the API takes; a reference typed by name becomes its id (an
    unknown one stays as typed, and the service says it does not exist)."""
    field = ACTION_TYPES[kind][0]
    if kind == "set_custom_attribute":
        key, _, text = value.partition("=")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        if isinstance(parsed, dict | list):
            parsed = text
        return {"type": kind, "key": key.strip(), "value": parsed}
    if kind == "snooze":
        return {"type": kind, field: int(value) if value.isascii() and value.isdigit() else value}
    if field in ids:
        return {"type": kind, field: ids[field].get(value.casefold(), value) if value else None}
    return {"type": kind, field: value}


def _rows(form: dict[str, str]) -> list[dict[str, Any]]:
    """The editor's rows that have a type, in the order their positions say (ties: as shown)."""
    rows: list[tuple[tuple[int, int], str, str]] = []
    for i in range(MAX_ACTIONS + BLANK_ROWS):
        kind = form.get(f"action_type_{i}", "")
        if kind not in ACTION_TYPES:
            continue
        pos = form.get(f"action_pos_{i}", "").strip()
        rank = int(pos) if pos.isascii() and pos.isdigit() and len(pos) < 6 else i + 1
        rows.append(((rank, i), kind, form.get(f"action_value_{i}", "").strip()))
    rows.sort()
    return [{"type": kind, "value": value} for _, kind, value in rows]


async def _macros_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    macro: dict[str, Any] | None = None,
) -> web.StreamResponse:
    names = await _lookups(request, actor)
    macros = await request.config_dict[MACROS].visible_to(actor)
    users = names["user_id"]
    if form is None:
        form = {"name": "", "visibility": "shared", "actions": []}
        if macro is not None:
            rows = [{"type": a["type"], "value": _value_of(a, names)} for a in macro["actions"]]
            form = {"name": macro["name"], "visibility": macro["visibility"], "actions": rows}
    listed = [
        {
            **m,
            "owner": users.get(m["owner_id"], m["owner_id"]),
            "steps": [{"type": a["type"], "value": _value_of(a, names)} for a in m["actions"]],
        }
        for m in macros
    ]
    ctx = {
        "macros": listed,
        "macro": macro,
        "form": form,
        "rows": [*form["actions"], *[{"type": "", "value": ""}] * BLANK_ROWS],
        "errors": errors or {},
        "action_types": ACTION_TYPES,
    }
    return await render(request, "workspace/macros.html", ctx, status=status)


async def _macro_work(
    request: web.Request, actor: Actor, shown: dict[str, Any], macro_id: str | None
) -> dict[str, Any]:
    names = await _lookups(request, actor)
    ids = {field: {v.casefold(): k for k, v in by_id.items()} for field, by_id in names.items()}
    actions = [_action(r["type"], r["value"], ids) for r in shown["actions"]]
    req = MacroIn.model_validate(
        {"name": shown["name"], "visibility": shown["visibility"], "actions": actions}
    )
    dumped = [a.model_dump(mode="json") for a in req.actions]
    svc = request.config_dict[MACROS]
    if macro_id is None:
        return await svc.create(actor, req.name, req.visibility, dumped)
    changes = {"name": req.name, "visibility": req.visibility, "actions": dumped}
    return await svc.update(actor, macro_id, changes)


def _macro_form(form: dict[str, str]) -> dict[str, Any]:
    visibility = form.get("visibility", "personal")
    return {"name": _text(form, "name"), "visibility": visibility, "actions": _rows(form)}


page_route(routes, "/macros", "config.manage", _macros_page)


@routes.post("/macros")
async def create_macro(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    shown = _macro_form(await form_data(request))
    work = partial(_macro_work, request, actor, shown, None)
    return await submit(request, actor, _macros_page, shown, work, then="/macros", field="name")


@routes.get("/macros/{macro_id}")
async def edit_macro(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    macro = await request.config_dict[MACROS].get(actor, request.match_info["macro_id"])
    return await _macros_page(request, actor, macro=macro)


@routes.post("/macros/{macro_id}")
async def update_macro(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    macro = await request.config_dict[MACROS].get(actor, request.match_info["macro_id"])
    shown = _macro_form(await form_data(request))
    work = partial(_macro_work, request, actor, shown, macro["id"])
    page = partial(_macros_page, macro=macro)
    return await submit(request, actor, page, shown, work, then="/macros", field="name")


_delete_route("macros", "macro_id", "config.manage", MACROS)


# ---- custom attributes --------------------------------------------------------------------------

ATTRIBUTE_FIELDS = ("name", "options", "pattern", "min", "max", "description", "position")
# The constraints each type takes (the others it refuses).
CONSTRAINTS: dict[str, tuple[str, ...]] = {
    "text": ("pattern", "min", "max"),
    "link": ("pattern", "min", "max"),
    "number": ("min", "max"),
    "date": ("min", "max"),
    "list": ("options",),
}


def _bound(kind: str, text: str) -> Any:
    """A min/max as typed, as the type takes it: a number, a length or a date (YYYY-MM-DD)."""
    if not text:
        return None
    if kind == "date":
        return text
    try:
        number = float(text)
    except ValueError:
        return text  # the request model says what it wanted
    return int(number) if kind in ("text", "link") and number.is_integer() else number


def _definition(kind: str, shown: dict[str, Any]) -> dict[str, Any]:
    """The form's fields as a request body: only what this type takes, empty ones left out."""
    body: dict[str, Any] = {"name": shown["name"], "required": shown["required"]}
    if shown["description"]:
        body["description"] = shown["description"]
    if shown["position"]:
        pos = shown["position"]
        body["position"] = int(pos) if pos.isascii() and pos.isdigit() and len(pos) < 9 else pos
    takes = CONSTRAINTS.get(kind, ())
    if "options" in takes:
        body["options"] = [o.strip() for o in shown["options"].splitlines() if o.strip()]
    if "pattern" in takes and shown["pattern"]:
        body["pattern"] = shown["pattern"]
    for bound in ("min", "max"):
        if bound in takes and shown[bound]:
            body[bound] = _bound(kind, shown[bound])
    return body


def _untagged(exc: ValidationError) -> Invalid:
    """The errors of a definition's (tagged union) model by form field: ``text.min`` -> ``min``."""
    details = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if loc and loc[0] in TYPES:
            loc = loc[1:]
        details.append({"field": ".".join(loc) or "type", "message": e["msg"]})
    refused = Invalid(details[0]["field"], details[0]["message"])
    refused.details = details
    return refused


async def _attributes_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    editing: str | None = None,
) -> web.StreamResponse:
    defs = await request.config_dict[ATTRIBUTES].list(actor)
    blank = {k: "" for k in ATTRIBUTE_FIELDS} | {"applies_to": "conversation", "key": "", "type": "text"}
    ctx = {
        "groups": [(kind, defs[kind]) for kind in APPLIES_TO],
        "applies_to": APPLIES_TO,
        "types": TYPES,
        "errors": errors or {},
        "form": form or {**blank, "required": False},
        "editing": editing,
    }
    return await render(request, "workspace/attributes.html", ctx, status=status)


def _attribute_form(form: dict[str, str]) -> dict[str, Any]:
    shown: dict[str, Any] = {k: form.get(k, "").strip() for k in ATTRIBUTE_FIELDS}
    shown["options"] = form.get("options", "")
    shown["required"] = "required" in form
    return shown


page_route(routes, "/attributes", "attributes.manage", _attributes_page)


@routes.post("/attributes")
async def create_attribute(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "attributes.manage")
    form = await form_data(request)
    shown = _attribute_form(form) | {k: _text(form, k) for k in ("applies_to", "key", "type")}

    async def work() -> None:
        body = {k: shown[k] for k in ("applies_to", "key", "type")} | _definition(shown["type"], shown)
        try:
            spec = attribute_spec(body)
        except ValidationError as exc:
            raise _untagged(exc) from None
        await request.config_dict[ATTRIBUTES].create(actor, spec)

    return await submit(request, actor, _attributes_page, shown, work, then="/attributes", field="key")


@routes.post("/attributes/{definition_id}")
async def update_attribute(request: web.Request) -> web.StreamResponse:
    """Change a definition: every field the form shows is set (an empty one is removed)."""
    actor = await need_actor(request, "attributes.manage")
    definition_id = request.match_info["definition_id"]
    defs = await request.config_dict[ATTRIBUTES].list(actor)
    stored = next((d for kind in APPLIES_TO for d in defs[kind] if d["id"] == definition_id), None)
    if stored is None:
        raise NotFound(f"attribute definition {definition_id} does not exist")
    shown = _attribute_form(await form_data(request))

    async def work() -> None:
        body = _definition(stored["type"], shown)
        for name in ("description", *CONSTRAINTS.get(stored["type"], ())):
            body.setdefault(name, None)  # emptied in the form: removed
        await request.config_dict[ATTRIBUTES].update(actor, definition_id, attribute_changes(body))

    page = partial(_attributes_page, editing=definition_id)
    return await submit(request, actor, page, shown, work, then="/attributes", field="name")


_delete_route("attributes", "definition_id", "attributes.manage", ATTRIBUTES)


# ---- notification defaults ----------------------------------------------------------------------


async def _notifications_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    saved: bool = False,
) -> web.StreamResponse:
    prefs = (await request.config_dict[NOTIFICATIONS].defaults(actor))["preferences"]
    ctx = {
        "prefs": form or prefs,
        "events": EVENT_TYPES,
        "media": MEDIA,
        "errors": errors or {},
        "saved": saved or request.query.get("saved") == "1",
    }
    return await render(request, "workspace/notifications.html", ctx, status=status)


page_route(routes, "/notifications", "config.manage", _notifications_page)


@routes.post("/notifications")
async def set_notification_defaults(request: web.Request) -> web.StreamResponse:
    """Every box of the table is a choice: a checked box is on, an unchecked one off."""
    actor = await need_actor(request, "config.manage")
    form = await form_data(request)
    changes = {event: {m: f"{event}.{m}" in form for m in MEDIA} for event in EVENT_TYPES}

    async def work() -> None:
        req = PreferencesIn.model_validate({"preferences": changes})
        await request.config_dict[NOTIFICATIONS].set_defaults(actor, preference_changes(req))

    return await submit(
        request, actor, _notifications_page, changes, work, then="/notifications?saved=1", field="preferences"
    )
