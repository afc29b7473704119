"""Automations over HTTP (admin): rules in order with their versions, the run log per rule and
per conversation, dry runs and backtests, business hours. Everything needs ``automations.manage``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, field_validator

from hub.actions import ActionSpec
from hub.appkeys import AUTOMATIONS
from hub.automations.definition import Conditions, RuleDefinition, Trigger
from hub.automations.hours import Autoresponder, Day, Hours, Interval, TimeZone
from hub.limits import Id, omit_null
from hub.web.auth import require_actor
from hub.web.errors import ApiError, query_int, query_text, read_json
from hub.web.openapi import operation, query_integer

__all__ = [
    "BacktestIn",
    "DryRunIn",
    "HoursIn",
    "RuleIn",
    "RulePatch",
    "hours_of_request",
    "routes",
    "rule_definition",
    "subject_of",
]

routes = web.RouteTableDef()
PERMISSION = "automations.manage"

RuleName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: RuleName
    enabled: bool = True
    mode: Literal["live", "shadow"] = Field(default="live", description="shadow: evaluated and logged only")
    trigger: Trigger
    conditions: Conditions | None = Field(  # type: ignore[valid-type]
        default=None,
        description="groups {all: [...]} / {any: [...]} of tests {field, op, value}; none: always",
    )
    actions: list[ActionSpec] = Field(min_length=1, max_length=50)
    stop_processing: bool = Field(default=False, description="when it acts, later rules do not run")
    once_per_conversation: bool = False
    cooldown_minutes: float = Field(default=0, ge=0, le=525_600)
    position: int | None = Field(default=None, ge=0, le=1_000_000, description="none: after the others")

    def definition(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"position"}, exclude_none=False)
        if out["conditions"] is None:
            out["conditions"] = {"all": []}
        return out


class RulePatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra=omit_null(
            "name",
            "enabled",
            "mode",
            "trigger",
            "conditions",
            "actions",
            "stop_processing",
            "once_per_conversation",
            "cooldown_minutes",
            "position",
        ),
    )

    name: RuleName | None = None
    enabled: bool | None = None
    mode: Literal["live", "shadow"] | None = None
    trigger: Trigger | None = None
    conditions: Conditions | None = None  # type: ignore[valid-type]
    actions: list[ActionSpec] | None = Field(default=None, min_length=1, max_length=50)
    stop_processing: bool | None = None
    once_per_conversation: bool | None = None
    cooldown_minutes: float | None = Field(default=None, ge=0, le=525_600)
    position: int | None = Field(default=None, ge=0, le=1_000_000)

    @field_validator("*", mode="before")
    @classmethod
    def _nn(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class RuleOut(BaseModel):
    id: str
    name: str
    position: int
    enabled: bool
    mode: str
    version: int = Field(description="grows with every edit; the run log names the version that ran")
    definition: dict[str, Any] = Field(
        description="trigger, conditions, actions and options (secrets masked)"
    )
    created_at: str
    updated_at: str


class RuleList(BaseModel):
    rules: list[RuleOut] = Field(description="in the order they run")


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rule_ids: list[Id] = Field(
        max_length=1000,
        description="these rules first, in this order; the others keep their order after them",
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("rule_ids")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each rule once")
        return value


class VersionOut(BaseModel):
    rule_id: str
    version: int
    name: str
    definition: dict[str, Any]
    created_by: dict[str, Any]
    created_at: str


class VersionList(BaseModel):
    versions: list[VersionOut]


class RunOut(BaseModel):
    id: str
    rule_id: str = Field(description="the rule's id; ooo:<business hours id> for the out-of-office reply")
    rule_version: int
    conversation_id: str | None
    channel_id: str | None
    event_seq: int | None = Field(description="the event evaluated; null for a time trigger")
    trigger: str
    depth: int = Field(description="how many rule actions led to the event (0: a person or a customer)")
    mode: str
    outcome: str = Field(
        description="applied, partial, blocked, not_matched, skipped (once/cooldown), stopped (depth "
        "limit), shadow or error"
    )
    reason: str | None
    conditions: list[dict[str, Any]] = Field(description="each condition: field, op, value, seen, result")
    actions: list[dict[str, Any]] = Field(description="each action's result")
    created_at: str


class RunList(BaseModel):
    runs: list[RunOut] = Field(description="newest first")
    next_before: str | None = Field(description="pass as before= for older runs; null: no more")


class DraftDryRun(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rule: RuleIn = Field(description="a draft rule")
    event_seq: int = Field(ge=1, le=2**62)


class SavedDryRun(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rule_id: Id = Field(description="a saved rule, as it is now")
    event_seq: int = Field(ge=1, le=2**62)


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    days: float = Field(default=7, gt=0, le=365)
    max_events: int = Field(default=10_000, ge=1, le=100_000)


class DraftBacktest(_Window):
    rule: RuleIn = Field(description="a draft rule")


class SavedBacktest(_Window):
    rule_id: Id = Field(description="a saved rule, as it is now")


class DryRunIn(RootModel[DraftDryRun | SavedDryRun]):
    """A draft (``rule``) or a saved rule (``rule_id``), and the event to evaluate it against."""


class BacktestIn(RootModel[DraftBacktest | SavedBacktest]):
    """A draft (``rule``) or a saved rule (``rule_id``), and the window of the event log."""


class Evaluation(BaseModel):
    event_seq: int
    event_type: str
    trigger: str | None
    conversation_id: str | None
    matched: bool
    conditions: list[dict[str, Any]]
    would_do: list[dict[str, Any]]


class DryRunOut(Evaluation):
    reason: str | None = Field(description="why it was not evaluated (the trigger does not fire)")


class BacktestOut(BaseModel):
    days: float
    events_examined: int
    events_evaluated: int = Field(description="events on which the trigger fires")
    truncated: bool = Field(description="max_events was reached before the end of the window")
    match_count: int
    matches: list[Evaluation] = Field(description="the first 500")
    conversations: list[str] = Field(description="the conversations that would have matched")


class HoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: RuleName
    scope_type: Literal["channel", "team"]
    scope_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    timezone: TimeZone
    weekly: dict[Day, Annotated[list[Interval], Field(max_length=12)]] = Field(
        default_factory=dict,
        description="opening intervals [from, to] per day, local time; a day left out is closed",
    )
    holidays: list[Annotated[date, Field(strict=False)]] = Field(default_factory=list, max_length=400)
    autoresponder: Autoresponder = Field(default_factory=Autoresponder)


class HoursPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra=omit_null("name", "timezone", "weekly", "holidays", "autoresponder"),
    )

    name: RuleName | None = None
    timezone: TimeZone | None = None
    weekly: dict[Day, Annotated[list[Interval], Field(max_length=12)]] | None = None
    holidays: list[Annotated[date, Field(strict=False)]] | None = Field(default=None, max_length=400)
    autoresponder: Autoresponder | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _nn(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class HoursOut(BaseModel):
    id: str
    name: str
    scope_type: str
    scope_id: str
    timezone: str
    weekly: dict[str, list[list[str]]]
    holidays: list[str]
    autoresponder: dict[str, Any]
    created_at: str
    updated_at: str


class HoursList(BaseModel):
    business_hours: list[HoursOut]


def rule_definition(rule: RuleIn) -> RuleDefinition:
    """The rule the service stores. RuleDefinition checks what the request model cannot say
    (nesting, condition count): a 422. The API and the console both call this."""
    return RuleDefinition.model_validate(rule.definition())


def hours_of_request(req: HoursIn) -> Hours:
    """The schedule part of a business-hours request (API and console)."""
    return Hours.model_validate({"timezone": req.timezone, "weekly": req.weekly, "holidays": req.holidays})


async def subject_of(automations: Any, req: Any) -> RuleDefinition:
    """What a dry run or a backtest evaluates: the draft (``rule``) or the saved rule (``rule_id``)."""
    if hasattr(req, "rule"):
        return rule_definition(req.rule)
    return await automations.definition_of(req.rule_id, None)


# ---- rules --------------------------------------------------------------------------------------


@routes.get("/api/v1/admin/automations/rules")
@operation("The automation rules, in the order they run", "automations", errors=(403,), response=RuleList)
async def list_rules(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    return web.json_response({"rules": await request.app[AUTOMATIONS].list_rules()})


@routes.post("/api/v1/admin/automations/rules")
@operation(
    "Create a rule (version 1); it runs after the others unless position says otherwise",
    "automations",
    body=RuleIn,
    status=201,
    errors=(403, 422),
    response=RuleOut,
)
async def create_rule(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, PERMISSION)
    req = RuleIn.model_validate(await read_json(request))
    out = await request.app[AUTOMATIONS].create_rule(actor, rule_definition(req), req.position)
    return web.json_response(out, status=201)


@routes.put("/api/v1/admin/automations/order")
@operation(
    "Set the order rules run in: those named first, the others after them",
    "automations",
    body=OrderIn,
    errors=(403, 404, 422),
    response=RuleList,
)
async def order_rules(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    req = OrderIn.model_validate(await read_json(request))
    return web.json_response({"rules": await request.app[AUTOMATIONS].reorder(req.rule_ids)})


@routes.get("/api/v1/admin/automations/rules/{rule_id}")
@operation("One rule", "automations", errors=(403, 404), response=RuleOut)
async def get_rule(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    return web.json_response(await request.app[AUTOMATIONS].get_rule(request.match_info["rule_id"]))


@routes.patch("/api/v1/admin/automations/rules/{rule_id}")
@operation(
    "Change a rule: an edit makes a new version (a move alone does not)",
    "automations",
    body=RulePatch,
    errors=(403, 404, 422),
    response=RuleOut,
)
async def patch_rule(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, PERMISSION)
    req = RulePatch.model_validate(await read_json(request))
    changes = req.model_dump(exclude_unset=True, mode="json")
    position = changes.pop("position", None)
    out = await request.app[AUTOMATIONS].update_rule(actor, request.match_info["rule_id"], changes, position)
    return web.json_response(out)


@routes.delete("/api/v1/admin/automations/rules/{rule_id}")
@operation("Delete a rule (its versions and run log stay)", "automations", status=204, errors=(403, 404))
async def delete_rule(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    await request.app[AUTOMATIONS].delete_rule(request.match_info["rule_id"])
    return web.Response(status=204)


@routes.get("/api/v1/admin/automations/rules/{rule_id}/versions")
@operation("A rule's versions, newest first", "automations", errors=(403, 404), response=VersionList)
async def list_rule_versions(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    versions = await request.app[AUTOMATIONS].versions(request.match_info["rule_id"])
    return web.json_response({"versions": versions})


# ---- run log ------------------------------------------------------------------------------------

_RUN_QUERY: dict[str, Any] = {
    "rule_id": "only this rule's runs (ooo:<id> for an out-of-office reply)",
    "conversation_id": "only this conversation's runs",
    "outcome": "only runs with this outcome",
    "before": "runs older than this run id (next_before of the previous page)",
    "limit": ("at most this many (over 200 gives 200)", query_integer(1)),
}


def _known(request: web.Request, *names: str) -> None:
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown query parameter {unknown[0][:64]!r}; this takes {', '.join(names)}"
        )


@routes.get("/api/v1/admin/automations/runs")
@operation(
    "The run log: every evaluation with each condition's seen value and result and each action's "
    "result; per rule or per conversation",
    "automations",
    errors=(400, 403),
    response=RunList,
    query=_RUN_QUERY,
)
async def list_runs(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    _known(request, *_RUN_QUERY)
    out = await request.app[AUTOMATIONS].runs(
        rule_id=query_text(request, "rule_id"),
        conversation_id=query_text(request, "conversation_id"),
        outcome=query_text(request, "outcome"),
        before=query_text(request, "before"),
        limit=query_int(request, "limit", 50, minimum=1, maximum=200),
    )
    return web.json_response(out)


# ---- dry run and backtest -----------------------------------------------------------------------


@routes.post("/api/v1/admin/automations/dry-run")
@operation(
    "Evaluate a draft (or a rule) against one stored event: what it would do; nothing is done",
    "automations",
    body=DryRunIn,
    errors=(403, 404, 422),
    response=DryRunOut,
)
async def dry_run(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    req = DryRunIn.model_validate(await read_json(request)).root
    definition = await subject_of(request.app[AUTOMATIONS], req)
    return web.json_response(await request.app[AUTOMATIONS].dry_run(definition, req.event_seq))


@routes.post("/api/v1/admin/automations/backtest")
@operation(
    "Evaluate a draft (or a rule) against the event log of the last days: which conversations "
    "would have matched and what would have been done; nothing is done",
    "automations",
    body=BacktestIn,
    errors=(403, 404, 422),
    response=BacktestOut,
)
async def backtest(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    req = BacktestIn.model_validate(await read_json(request)).root
    definition = await subject_of(request.app[AUTOMATIONS], req)
    out = await request.app[AUTOMATIONS].backtest(definition, req.days, req.max_events)
    return web.json_response(out)


# ---- business hours -----------------------------------------------------------------------------


@routes.get("/api/v1/admin/business-hours")
@operation("Business hours of channels and teams", "automations", errors=(403,), response=HoursList)
async def list_business_hours(request: web.Request) -> web.StreamResponse:
    await require_actor(request, PERMISSION)
    return web.json_response({"business_hours": await request.app[AUTOMATIONS].list_hours()})


@routes.post("/api/v1/admin/business-hours")
@operation(
    "Set a channel's or a team's business hours (time zone, weekly hours, holidays) and its "
    "out-of-office reply",
    "automations",
    body=HoursIn,
    status=201,
    errors=(403, 404, 409, 422),
    response=HoursOut,
)
async def create_business_hours(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, PERMISSION)
    req = HoursIn.model_validate(await read_json(request))
    out = await request.app[AUTOMATIONS].create_hours(
        req.name, req.scope_type, req.scope_id, hours_of_request(req), req.autoresponder, by=actor.ref
    )
    return web.json_response(out, status=201)


@routes.patch("/api/v1/admin/business-hours/{hours_id}")
@operation(
    "Change business hours or their out-of-office reply",
    "automations",
    body=HoursPatch,
    errors=(403, 404, 422),
    response=HoursOut,
)
async def patch_business_hours(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, PERMISSION)
    req = HoursPatch.model_validate(await read_json(request))
    changes = req.model_dump(exclude_unset=True, mode="json")
    return web.json_response(
        await request.app[AUTOMATIONS].update_hours(request.match_info["hours_id"], changes, by=actor.ref)
    )


@routes.delete("/api/v1/admin/business-hours/{hours_id}")
@operation("Delete business hours", "automations", status=204, errors=(403, 404))
async def delete_business_hours(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, PERMISSION)
    await request.app[AUTOMATIONS].delete_hours(request.match_info["hours_id"], by=actor.ref)
    return web.Response(status=204)
