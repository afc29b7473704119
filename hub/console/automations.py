"""Automations, business hours and bots as admins configure them in the console.

A rule's trigger, conditions and actions are JSON typed into text areas and validated by the admin
API's own request models (``RuleIn``, ``RulePatch``, ``DraftDryRun``, ``DraftBacktest``,
``HoursIn``, ``BotIn``, ``BotPatch``), then handed to the service the API calls: one code path, the
same refusals, each shown beside its field. A bot's token and signing secret are rendered in the
answer to the form that made them (never in a URL) and are not stored readable, so they are shown
once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from hub.access import Actor
from hub.appkeys import AUTOMATIONS, BOTS, CHANNEL_ADMIN
from hub.bots.models import BotIn, BotPatch
from hub.console.base import (
    FORM_ERRORS,
    FormPage,
    action_route,
    field_errors,
    form_data,
    form_list,
    need_actor,
    page_route,
    redirect,
    render,
)
from hub.services.errors import Invalid
from hub.web.automations import (
    DraftBacktest,
    DraftDryRun,
    HoursIn,
    RuleIn,
    RulePatch,
    hours_of_request,
    rule_definition,
)

__all__ = ["routes"]

routes = web.RouteTableDef()
AUTOMATIONS_PERMISSION = "automations.manage"
BOTS_PERMISSION = "bots.manage"
JSON_FIELDS = ("trigger", "conditions", "actions")
OUTCOMES = ("applied", "partial", "blocked", "not_matched", "skipped", "stopped", "shadow", "error")
RULE_EXAMPLE = {
    "trigger": '{"type": "message_created", "direction": "inbound"}',
    "conditions": '{"all": [{"field": "message.text", "op": "contains", "value": "refund"}]}',
    "actions": '[{"type": "add_label", "label": "refunds"}]',
}


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _by_field(exc: Exception, default: str) -> dict[str, str]:
    """The model's errors by form field: a list item's error (``actions.2``) beside its list, and
    the path inside the JSON named in the message."""
    out: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            key = loc[0] if loc else default
            where = ".".join(loc[1:])
            out.setdefault(key, f"{where}: {e['msg']}" if where else e["msg"])
        return out
    return field_errors(exc, default)


# ---- rules --------------------------------------------------------------------------------------


def _rule_form(form: dict[str, str]) -> dict[str, Any]:
    return {
        "name": form.get("name", "").strip(),
        "mode": form.get("mode", "live"),
        "enabled": "enabled" in form,
        "trigger": form.get("trigger", ""),
        "conditions": form.get("conditions", ""),
        "actions": form.get("actions", ""),
        "stop_processing": "stop_processing" in form,
        "once_per_conversation": "once_per_conversation" in form,
        "cooldown_minutes": form.get("cooldown_minutes", "0").strip() or "0",
        "event_seq": form.get("event_seq", "").strip(),
        "days": form.get("days", "7").strip() or "7",
    }


def _rule_from(rule: dict[str, Any]) -> dict[str, Any]:
    d = rule["definition"]
    return {
        "name": rule["name"],
        "mode": rule["mode"],
        "enabled": rule["enabled"],
        "trigger": _pretty(d["trigger"]),
        "conditions": _pretty(d.get("conditions") or {"all": []}),
        "actions": _pretty(d["actions"]),
        "stop_processing": d.get("stop_processing", False),
        "once_per_conversation": d.get("once_per_conversation", False),
        "cooldown_minutes": str(d.get("cooldown_minutes", 0)),
        "event_seq": "",
        "days": "7",
    }


def _number(text: str) -> Any:
    """A number typed in a form; left as text (for the model to refuse) when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _rule_body(shown: dict[str, Any]) -> dict[str, Any]:
    """The request body the API would receive, from the form; unreadable JSON is refused beside
    its text area (``Invalid``, field by field)."""
    body: dict[str, Any] = {
        "name": shown["name"],
        "enabled": shown["enabled"],
        "mode": shown["mode"],
        "stop_processing": shown["stop_processing"],
        "once_per_conversation": shown["once_per_conversation"],
        "cooldown_minutes": _number(shown["cooldown_minutes"]),
    }
    if isinstance(body["cooldown_minutes"], int):
        body["cooldown_minutes"] = float(body["cooldown_minutes"])
    problems = []
    for name in JSON_FIELDS:
        text = shown[name].strip()
        if not text and name == "conditions":
            body[name] = {"all": []}
            continue
        try:
            body[name] = json.loads(text)
        except ValueError as exc:
            problems.append({"field": name, "message": f"not JSON: {exc}"})
    if problems:
        err = Invalid(problems[0]["field"], problems[0]["message"])
        err.details = problems
        raise err
    return body


async def _rules_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    ctx = {"rules": await request.config_dict[AUTOMATIONS].list_rules(), "errors": errors or {}}
    return await render(request, "automations/rules.html", ctx, status=status)


page_route(routes, "/automations", AUTOMATIONS_PERMISSION, _rules_page)


async def _editor(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    rule_id: str | None = None,
    report: dict[str, Any] | None = None,
) -> web.StreamResponse:
    svc = request.config_dict[AUTOMATIONS]
    rule = await svc.get_rule(rule_id) if rule_id else None
    if form is None:
        form = (
            _rule_from(rule)
            if rule
            else {
                **_rule_form({"enabled": "on"}),
                **RULE_EXAMPLE,
            }
        )
    ctx = {
        "rule": rule,
        "versions": await svc.versions(rule_id) if rule_id else [],
        "form": form,
        "errors": errors or {},
        "report": report,
    }
    return await render(request, "automations/edit.html", ctx, status=status)


@routes.get("/automations/new")
async def new_rule(request: web.Request) -> web.StreamResponse:
    return await _editor(request, await need_actor(request, AUTOMATIONS_PERMISSION))


@routes.get("/automations/runs")
async def runs_page(request: web.Request) -> web.StreamResponse:
    """The run log, per rule or per conversation: each condition's value and result."""
    await need_actor(request, AUTOMATIONS_PERMISSION)
    svc = request.config_dict[AUTOMATIONS]
    q = {
        k: request.query.get(k, "").strip()[:200] for k in ("rule_id", "conversation_id", "outcome", "before")
    }
    out = await svc.runs(
        rule_id=q["rule_id"] or None,
        conversation_id=q["conversation_id"] or None,
        outcome=q["outcome"] or None,
        before=q["before"] or None,
        limit=50,
    )
    rules = await svc.list_rules()
    ctx = {
        "runs": out["runs"],
        "next_before": out["next_before"],
        "query": q,
        "rules": rules,
        "names": {r["id"]: r["name"] for r in rules},
        "outcomes": OUTCOMES,
    }
    return await render(request, "automations/runs.html", ctx)


@routes.post("/automations")
async def create_rule(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, AUTOMATIONS_PERMISSION)
    shown = _rule_form(await form_data(request))
    svc = request.config_dict[AUTOMATIONS]

    async def work() -> dict[str, Any]:
        req = RuleIn.model_validate(_rule_body(shown))
        return await svc.create_rule(actor, rule_definition(req), req.position)

    async def then(rule: dict[str, Any]) -> web.StreamResponse:
        return redirect(request, f"/automations/{rule['id']}")

    return await _submit(request, actor, _editor, shown, work, then)


async def _submit(
    request: web.Request,
    actor: Actor,
    page: FormPage,
    shown: dict[str, Any],
    work: Callable[[], Awaitable[Any]],
    then: Callable[[Any], Awaitable[web.StreamResponse]],
    field: str = "(form)",
) -> web.StreamResponse:
    """``submit``, with a model's errors placed beside the JSON text areas and the path inside
    the JSON named in the message."""
    try:
        result = await work()
    except ValidationError as exc:
        return await page(request, actor, errors=_by_field(exc, "(form)"), form=shown, status=422)
    except FORM_ERRORS as exc:
        errors = {k.split(".")[0]: v for k, v in field_errors(exc, field).items()}
        return await page(request, actor, errors=errors, form=shown, status=422)
    return await then(result)


@routes.get("/automations/{rule_id}")
async def edit_rule(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, AUTOMATIONS_PERMISSION)
    return await _editor(request, actor, rule_id=request.match_info["rule_id"])


@routes.post("/automations/{rule_id}")
async def update_rule(request: web.Request) -> web.StreamResponse:
    """An edit (a new version when anything changed), exactly as ``PATCH`` with every field."""
    actor = await need_actor(request, AUTOMATIONS_PERMISSION)
    rule_id = request.match_info["rule_id"]
    shown = _rule_form(await form_data(request))
    svc = request.config_dict[AUTOMATIONS]

    async def work() -> dict[str, Any]:
        req = RulePatch.model_validate(_rule_body(shown))
        changes = req.model_dump(exclude_unset=True, mode="json")
        position = changes.pop("position", None)
        return await svc.update_rule(actor, rule_id, changes, position)

    async def then(rule: dict[str, Any]) -> web.StreamResponse:
        return redirect(request, f"/automations/{rule['id']}")

    return await _submit(request, actor, partial(_editor, rule_id=rule_id), shown, work, then)


async def _try(request: web.Request, kind: str) -> web.StreamResponse:
    """A dry run (one stored event) or a backtest (the last days) of the rule as typed in the
    editor, saved or not: the API's draft models, the service's evaluation; nothing is done."""
    actor = await need_actor(request, AUTOMATIONS_PERMISSION)
    form = await form_data(request)
    shown = _rule_form(form)
    rule_id = form.get("rule_id") or None
    svc = request.config_dict[AUTOMATIONS]
    page = partial(_editor, rule_id=rule_id)

    async def work() -> dict[str, Any]:
        draft = RuleIn.model_validate(_rule_body(shown))
        if kind == "dry_run":
            req = DraftDryRun.model_validate({"rule": draft, "event_seq": _number(shown["event_seq"])})
            out = await svc.dry_run(rule_definition(req.rule), req.event_seq)
        else:
            days = _number(shown["days"])
            req2 = DraftBacktest.model_validate(
                {"rule": draft, "days": float(days) if isinstance(days, int) else days}
            )
            out = await svc.backtest(rule_definition(req2.rule), req2.days, req2.max_events)
        return {"kind": kind, "data": out}

    async def show(report: dict[str, Any]) -> web.StreamResponse:
        return await page(request, actor, form=shown, report=report)

    missing = "event_seq" if kind == "dry_run" else "(form)"  # the event (or rule) that is not there
    return await _submit(request, actor, page, shown, work, show, missing)


@routes.post("/automations-try/dry-run")
async def dry_run(request: web.Request) -> web.StreamResponse:
    return await _try(request, "dry_run")


@routes.post("/automations-try/backtest")
async def backtest(request: web.Request) -> web.StreamResponse:
    return await _try(request, "backtest")


async def _move(request: web.Request, actor: Actor) -> None:
    """One place up or down: the service's reorder with the two rules swapped."""
    svc = request.config_dict[AUTOMATIONS]
    rule_id = request.match_info["rule_id"]
    ids = [r["id"] for r in await svc.list_rules()]
    if rule_id not in ids:
        await svc.get_rule(rule_id)  # the service's 404
    i = ids.index(rule_id)
    j = i - 1 if request.match_info["direction"] == "up" else i + 1
    if 0 <= j < len(ids):
        ids[i], ids[j] = ids[j], ids[i]
        await svc.reorder(ids)


async def _switch(request: web.Request, actor: Actor) -> None:
    """Enable, disable, or run live or in shadow: a ``PATCH`` of that one field."""
    changes = {
        "enable": {"enabled": True},
        "disable": {"enabled": False},
        "live": {"mode": "live"},
        "shadow": {"mode": "shadow"},
    }.get(request.match_info["switch"])
    if changes is None:
        raise web.HTTPNotFound()
    req = RulePatch.model_validate(changes)
    await request.config_dict[AUTOMATIONS].update_rule(
        actor, request.match_info["rule_id"], req.model_dump(exclude_unset=True, mode="json"), None
    )


async def _delete_rule(request: web.Request, actor: Actor) -> None:
    await request.config_dict[AUTOMATIONS].delete_rule(request.match_info["rule_id"])


action_route(
    routes,
    "/automations/{rule_id}/move/{direction:up|down}",
    AUTOMATIONS_PERMISSION,
    _move,
    then="/automations",
)
action_route(
    routes,
    "/automations/{rule_id}/{switch:enable|disable|live|shadow}",
    AUTOMATIONS_PERMISSION,
    _switch,
    then="/automations",
)
action_route(
    routes, "/automations/{rule_id}/delete", AUTOMATIONS_PERMISSION, _delete_rule, then="/automations"
)


# ---- business hours -----------------------------------------------------------------------------

WEEKLY_EXAMPLE = json.dumps({day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")})


async def _hours_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    ctx = {
        "hours": await request.config_dict[AUTOMATIONS].list_hours(),
        "errors": errors or {},
        "form": form
        or {
            "name": "",
            "scope_type": "channel",
            "scope_id": "",
            "timezone": "UTC",
            "weekly": WEEKLY_EXAMPLE,
            "holidays": "",
            "reply": False,
            "reply_text": "",
        },
    }
    return await render(request, "automations/hours.html", ctx, status=status)


page_route(routes, "/business-hours", AUTOMATIONS_PERMISSION, _hours_page)


@routes.post("/business-hours")
async def create_hours(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, AUTOMATIONS_PERMISSION)
    form = await form_data(request)
    shown: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "scope_type": form.get("scope_type", ""),
        "scope_id": form.get("scope_id", "").strip(),
        "timezone": form.get("timezone", "").strip(),
        "weekly": form.get("weekly", ""),
        "holidays": form.get("holidays", ""),
        "reply": "reply" in form,
        "reply_text": form.get("reply_text", ""),
    }

    async def work() -> None:
        try:
            weekly = json.loads(shown["weekly"]) if shown["weekly"].strip() else {}
        except ValueError as exc:
            raise Invalid("weekly", f"not JSON: {exc}") from None
        auto: dict[str, Any] = {"enabled": shown["reply"]}
        if shown["reply_text"].strip():
            auto["text"] = shown["reply_text"].strip()
        body = {
            "name": shown["name"],
            "scope_type": shown["scope_type"],
            "scope_id": shown["scope_id"],
            "timezone": shown["timezone"],
            "weekly": weekly,
            "holidays": [d.strip() for d in shown["holidays"].replace("\n", ",").split(",") if d.strip()],
            "autoresponder": auto,
        }
        req = HoursIn.model_validate(body)
        await request.config_dict[AUTOMATIONS].create_hours(
            req.name, req.scope_type, req.scope_id, hours_of_request(req), req.autoresponder, by=actor.ref
        )

    async def then(_: None) -> web.StreamResponse:
        return redirect(request, "/business-hours")

    return await _submit(request, actor, _hours_page, shown, work, then, "scope_id")


async def _delete_hours(request: web.Request, actor: Actor) -> None:
    await request.config_dict[AUTOMATIONS].delete_hours(request.match_info["hours_id"], by=actor.ref)


action_route(
    routes, "/business-hours/{hours_id}/delete", AUTOMATIONS_PERMISSION, _delete_hours, then="/business-hours"
)


# ---- bots ---------------------------------------------------------------------------------------

FLOW_EXAMPLE = (
    '{"greeting": "Hello! How can we help?", "menu_button": "Options",\n'
    ' "options": [{"title": "Talk to a person", "reply": "Connecting you.", "handoff": true}]}'
)


def _channels(request: web.Request, actor: Actor) -> list[dict[str, Any]]:
    admin = request.config_dict[CHANNEL_ADMIN]
    if actor.can("channels.manage"):
        return list(admin.all(actor)["channels"])
    return list(admin.visible(actor))


async def _bots_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    credentials: dict[str, Any] | None = None,
) -> web.StreamResponse:
    channels = _channels(request, actor)
    ctx = {
        "bots": await request.config_dict[BOTS].list_bots(actor),
        "channels": channels,
        "channel_names": {c["id"]: c["name"] for c in channels},
        "errors": errors or {},
        "form": form
        or {"name": "", "kind": "webhook", "webhook_url": "", "flow": FLOW_EXAMPLE, "channel_ids": []},
        "credentials": credentials,
    }
    return await render(request, "automations/bots.html", ctx, status=status)


page_route(routes, "/bots", BOTS_PERMISSION, _bots_page)


@routes.post("/bots")
async def create_bot(request: web.Request) -> web.StreamResponse:
    """The answer shows the new bot's token and signing secret, this once."""
    actor = await need_actor(request, BOTS_PERMISSION)
    form = await form_data(request)
    shown: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "kind": form.get("kind", "webhook"),
        "webhook_url": form.get("webhook_url", "").strip(),
        "flow": form.get("flow", ""),
        "channel_ids": await form_list(request, "channel_ids"),
    }

    async def work() -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": shown["name"],
            "kind": shown["kind"],
            "channel_ids": shown["channel_ids"],
        }
        if shown["kind"] == "builtin":
            try:
                body["flow"] = json.loads(shown["flow"])
            except ValueError as exc:
                raise Invalid("flow", f"not JSON: {exc}") from None
        else:
            body["webhook_url"] = shown["webhook_url"]
        return await request.config_dict[BOTS].create(actor, BotIn.model_validate(body))

    async def then(created: dict[str, Any]) -> web.StreamResponse:
        return await _bots_page(request, actor, credentials=created)

    return await _submit(request, actor, _bots_page, shown, work, then)


async def _patch_bot(request: web.Request, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    patch = BotPatch.model_validate(body)
    return await request.config_dict[BOTS].update(actor, request.match_info["bot_id"], patch)


@routes.post("/bots/{bot_id}/channels")
async def attach_channels(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, BOTS_PERMISSION)
    channel_ids = await form_list(request, "channel_ids")
    try:
        await _patch_bot(request, actor, {"channel_ids": channel_ids})
    except (ValidationError, Invalid) as exc:
        return await _bots_page(request, actor, errors=field_errors(exc, "(form)"), status=422)
    return redirect(request, "/bots")


@routes.post("/bots/{bot_id}/rotate")
async def rotate_bot(request: web.Request) -> web.StreamResponse:
    """New credentials, shown this once; the old ones stop working."""
    actor = await need_actor(request, BOTS_PERMISSION)
    out = await _patch_bot(request, actor, {"rotate_credentials": True})
    return await _bots_page(request, actor, credentials=out)


async def _toggle_bot(request: web.Request, actor: Actor) -> None:
    await _patch_bot(request, actor, {"enabled": request.match_info["switch"] == "enable"})


async def _delete_bot(request: web.Request, actor: Actor) -> None:
    await request.config_dict[BOTS].delete(actor, request.match_info["bot_id"])


action_route(routes, "/bots/{bot_id}/{switch:enable|disable}", BOTS_PERMISSION, _toggle_bot, then="/bots")
action_route(routes, "/bots/{bot_id}/delete", BOTS_PERMISSION, _delete_bot, then="/bots")
