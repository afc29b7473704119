"""Automation rules without a server: condition tests, nested groups and what the run log records,
business hours (time zones, holidays, DST), the loop guard's judgement, rule validation, and the
documented plugin example registering an action and a condition field."""

from __future__ import annotations

import asyncio
import re
import types
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.automations.conditions import Facts, evaluate, judge
from hub.automations.definition import RuleDefinition
from hub.automations.guard import automatic_reason
from hub.automations.hours import DAYS, Hours

DOC = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text("utf-8")

texts = st.text(max_size=30)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), texts)


# ---- one test -----------------------------------------------------------------------------------


@given(seen=st.one_of(texts, st.lists(texts, max_size=4), st.none()), want=texts)
def test_contains_and_not_contains_are_complements(seen: Any, want: str) -> None:
    assert judge("contains", seen, want) != judge("not_contains", seen, want)


@given(seen=scalars, want=st.lists(scalars, max_size=5))
def test_in_and_not_in_are_complements(seen: Any, want: list[Any]) -> None:
    assert judge("in", seen, want) != judge("not_in", seen, want)


@given(seen=st.one_of(scalars, st.lists(scalars, max_size=3)))
def test_is_set_and_is_not_set_are_complements(seen: Any) -> None:
    assert judge("is_set", seen, None) != judge("is_not_set", seen, None)


@given(a=st.integers(-100, 100), b=st.integers(-100, 100))
def test_comparisons_order_numbers(a: int, b: int) -> None:
    assert judge("gt", a, b) == (a > b) and judge("lte", a, b) == (a <= b)
    assert judge("gte", str(a), b) == (a >= b), "a number held as text compares as a number"


def test_text_tests_ignore_case_and_lists_are_searched() -> None:
    assert judge("eq", "Open", "open") and judge("contains", "I want a REFUND", "refund")
    assert judge("starts_with", "Hello there", "hello") and not judge("starts_with", "oh hello", "hello")
    assert judge("regex", "order #12345", r"#\d{5}") and not judge("regex", None, "x")
    assert judge("includes", ["vip", "billing"], "VIP") and judge("excludes", ["billing"], "vip")
    assert judge("includes", None, "vip") is False
    assert judge("eq", True, True) and not judge("eq", 1, True), "a number is not a boolean"
    assert judge("gt", None, 1) is False and judge("lt", "abc", 3) is False


# ---- groups and the run log ---------------------------------------------------------------------


def _facts(**message: Any) -> Facts:
    conv = {
        "id": "cv_1",
        "channel_id": "ch_1",
        "status": "open",
        "labels": ["vip"],
        "priority": None,
        "custom_attributes": {"plan": "gold", "seats": 12},
        "contact": {"id": "ct_1", "name": "Ann", "email": "ann@example.com"},
    }
    return Facts(None, datetime.now(UTC), conv, {"direction": "inbound", **message}, "whatsapp")  # type: ignore[arg-type]


def _rule(conditions: dict[str, Any]) -> RuleDefinition:
    return RuleDefinition.model_validate(
        {
            "name": "r",
            "trigger": {"type": "message_created"},
            "conditions": conditions,
            "actions": [{"type": "add_label", "label": "x"}],
        }
    )


def test_nested_groups_are_judged_and_every_condition_is_logged() -> None:
    rule = _rule(
        {
            "all": [
                {"field": "channel.type", "op": "eq", "value": "whatsapp"},
                {
                    "any": [
                        {"field": "message.text", "op": "contains", "value": "refund"},
                        {"field": "conversation.custom_attributes.seats", "op": "gte", "value": 10},
                    ]
                },
                {"field": "conversation.labels", "op": "includes", "value": "vip"},
            ]
        }
    )
    log: list[dict[str, Any]] = []
    assert asyncio.run(evaluate(rule.conditions, _facts(text="hello"), log)) is True
    leaves = {x["path"]: x for x in log if "field" in x}
    assert leaves["0"]["seen"] == "whatsapp" and leaves["0"]["result"] is True
    # The any-group does not stop at its first answer: the log shows both members.
    assert leaves["1.0"] == {
        "path": "1.0",
        "field": "message.text",
        "op": "contains",
        "value": "refund",
        "seen": "hello",
        "result": False,
    }
    assert leaves["1.1"]["seen"] == 12 and leaves["1.1"]["result"] is True
    assert leaves["2"]["seen"] == ["vip"]
    groups = [x for x in log if "group" in x]
    assert [(g["path"], g["group"], g["result"]) for g in groups] == [("1", "any", True), ("", "all", True)]

    log = []
    assert asyncio.run(evaluate(rule.conditions, _facts(text="x", sender={"type": "bot"}), log)) is True
    empty_any = _rule({"any": []})
    assert asyncio.run(evaluate(empty_any.conditions, _facts(), [])) is False
    assert asyncio.run(evaluate(_rule({"all": []}).conditions, _facts(), [])) is True


def test_the_loop_guard_field_reads_the_message() -> None:
    rule = _rule({"all": [{"field": "message.automatic", "op": "eq", "value": True}]})
    log: list[dict[str, Any]] = []
    assert asyncio.run(evaluate(rule.conditions, _facts(text="Out of office: back Monday"), log))
    assert not asyncio.run(evaluate(rule.conditions, _facts(text="where is my order?"), []))


@pytest.mark.parametrize(
    ("conditions", "fragment"),
    [
        ({"all": [{"field": "nope", "op": "eq", "value": 1}]}, "unknown condition field"),
        ({"all": [{"field": "message.text", "op": "regex", "value": "("}]}, "does not compile"),
        ({"all": [{"field": "message.text", "op": "in", "value": "a"}]}, "valid list"),
        ({"all": [{"field": "message.text", "op": "eq", "value": "5", "x": 1}]}, "Extra inputs"),
        ({"all": [{"field": "message.text", "op": "is_set", "value": "a"}]}, "None"),
        ({"all": [{"field": "message.text", "op": "like", "value": "a"}]}, "op"),
        ({"all": [{"field": "message.text", "op": "eq", "value": "a"}] * 101}, "at most"),
    ],
)
def test_bad_conditions_are_refused_with_the_reason(conditions: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _rule(conditions)
    assert fragment in str(exc.value)


def test_groups_nest_only_so_deep() -> None:
    cond: dict[str, Any] = {"field": "message.text", "op": "eq", "value": "a"}
    for _ in range(7):
        cond = {"all": [cond]}
    with pytest.raises(ValidationError, match=r"AllOf5\.all\.0"):
        _rule(cond)
    for _ in range(2):
        cond = cond["all"][0]
    assert _rule(cond).conditions is not None, "five levels of groups are fine"


def test_a_no_reply_trigger_needs_minutes_and_only_it_takes_them() -> None:
    base = {"name": "r", "actions": [{"type": "add_label", "label": "x"}]}
    with pytest.raises(ValidationError, match=r"no_reply\.minutes"):
        RuleDefinition.model_validate({**base, "trigger": {"type": "no_reply"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RuleDefinition.model_validate({**base, "trigger": {"type": "message_created", "minutes": 5}})
    with pytest.raises(ValidationError, match="valid number"):
        RuleDefinition.model_validate({**base, "trigger": {"type": "no_reply", "minutes": "5"}})


def test_an_interval_that_ends_before_it_starts_runs_past_midnight() -> None:
    night = Hours(timezone="UTC", weekly={"fri": [["22:00", "02:00"]]})
    assert night.is_open(datetime(2026, 12, 11, 23, 0, tzinfo=UTC))  # Friday night
    assert night.is_open(datetime(2026, 12, 12, 1, 59, tzinfo=UTC))  # Saturday, still Friday's shift
    assert not night.is_open(datetime(2026, 12, 12, 2, 0, tzinfo=UTC))
    assert not night.is_open(datetime(2026, 12, 11, 21, 59, tzinfo=UTC))
    assert not night.is_open(datetime(2026, 12, 11, 1, 0, tzinfo=UTC)), "Thursday had no night shift"


# ---- business hours -----------------------------------------------------------------------------

OFFICE = Hours(
    timezone="Europe/Berlin",
    weekly={d: [["09:00", "17:00"]] for d in DAYS[:5]},
    holidays=[date(2026, 12, 25)],
)


def test_business_hours_are_read_in_their_time_zone() -> None:
    # Monday 7 December 2026 (CET, UTC+1).
    assert not OFFICE.is_open(datetime(2026, 12, 7, 7, 59, tzinfo=UTC))  # 08:59 local
    assert OFFICE.is_open(datetime(2026, 12, 7, 8, 0, tzinfo=UTC))  # 09:00 local
    assert OFFICE.is_open(datetime(2026, 12, 7, 15, 59, tzinfo=UTC))
    assert not OFFICE.is_open(datetime(2026, 12, 7, 16, 0, tzinfo=UTC))  # 17:00 local: closed
    # Summer time (CEST, UTC+2): the same local hours are an hour earlier in UTC.
    assert OFFICE.is_open(datetime(2026, 7, 6, 7, 0, tzinfo=UTC))
    assert not OFFICE.is_open(datetime(2026, 7, 6, 15, 0, tzinfo=UTC))
    # Saturday, and a holiday on a Friday, are closed.
    assert not OFFICE.is_open(datetime(2026, 12, 12, 10, 0, tzinfo=UTC))
    assert not OFFICE.is_open(datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    # The holiday is the local date: 23:30 UTC on the 24th is already the 25th in Berlin.
    late = Hours(
        timezone="Europe/Berlin", weekly={"fri": [["00:00", "24:00"]]}, holidays=[date(2026, 12, 25)]
    )
    assert not late.is_open(datetime(2026, 12, 24, 23, 30, tzinfo=UTC))
    assert late.is_open(datetime(2026, 12, 24, 22, 30, tzinfo=UTC)) is False  # still Thursday locally


@settings(max_examples=200)
@given(
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]),
)
def test_always_open_is_open_unless_a_holiday_and_never_open_is_closed(at: datetime, zone: str) -> None:
    always = Hours(timezone=zone, weekly={d: [["00:00", "24:00"]] for d in DAYS})
    assert always.is_open(at)
    assert not Hours(timezone=zone).is_open(at)
    from zoneinfo import ZoneInfo

    local_day = at.astimezone(ZoneInfo(zone)).date()
    assert not Hours(timezone=zone, weekly=always.weekly, holidays=[local_day]).is_open(at)
    assert Hours(timezone=zone, weekly=always.weekly, holidays=[local_day + timedelta(days=2)]).is_open(at)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00"]]}}, "at least 2"),
        ({"timezone": "UTC", "holidays": ["2026-02-30"]}, "date"),
        ({"timezone": "UTC", "weekly": {"monday": [["09:00", "17:00"]]}}, "monday"),
        ({"timezone": "UTC", "weekly": {"mon": [["9:00", "17:00"]]}}, "pattern"),
    ],
)
def test_bad_business_hours_are_refused(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Hours.model_validate(values)
    assert fragment in str(exc.value)


# ---- the loop guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"sender": {"type": "bot", "id": "bot_1"}, "text": "Hi! I am a bot"},
        {"sender": {"type": "rule", "id": "rule:ar_1"}, "text": "We are closed"},
        {"sender": {"type": "contact"}, "text": "hi", "data": {"auto_submitted": "auto-replied"}},
        {"sender": {"type": "contact"}, "text": "hi", "data": {"bounce": True}},
        {"sender": {"type": "contact"}, "text": "hi", "data": {"precedence": "bulk"}},
        {"sender": {"type": "contact"}, "text": "Automatic reply: away until Monday"},
        {"sender": {"type": "contact"}, "subject": "Out of Office: back soon", "text": "..."},
        {"sender": {"type": "contact"}, "text": "Undeliverable: your message"},
    ],
)
def test_the_guard_knows_machine_messages(message: dict[str, Any]) -> None:
    assert automatic_reason(message)


@given(
    text=st.text(max_size=80).filter(
        lambda t: not re.match(r"\s*\[?(auto|out of|undeliv|deliv|mail|abwes|r[ée]p)", t, re.I)
    )
)
def test_the_guard_lets_people_through(text: str) -> None:
    assert (
        automatic_reason({"sender": {"type": "contact"}, "text": text, "data": {"auto_submitted": "no"}})
        is None
    )


# ---- plugins ------------------------------------------------------------------------------------


def test_the_documented_automation_plugin_adds_an_action_and_a_condition() -> None:
    from hub.actions import PLUGIN_ACTIONS
    from hub.automations.definition import PLUGIN_FIELDS
    from hub.plugins import load_automation_hooks, load_plugins

    blocks = re.findall(r"^```python\n(.*?)^```", DOC, flags=re.S | re.M)
    source = next(b for b in blocks if "def hub_register_automation_actions(register" in b and "import" in b)
    module = types.ModuleType("hub_crm")
    exec(compile(source, "docs/plugins.md", "exec", dont_inherit=True), module.__dict__)
    pm, _, report = load_plugins(extra=[("crm", module)], disabled=[])
    try:
        load_automation_hooks(pm, report)
        assert "crm.create_ticket" in PLUGIN_ACTIONS and "crm.tier" in PLUGIN_FIELDS
        rule = RuleDefinition.model_validate(
            {
                "name": "vip",
                "trigger": {"type": "message_created"},
                "conditions": {"all": [{"field": "crm.tier", "op": "eq", "value": "gold"}]},
                "actions": [{"type": "plugin", "name": "crm.create_ticket", "settings": {"queue": "vip"}}],
            }
        )
        facts = _facts(text="hi")
        assert facts.conversation is not None
        facts.conversation["contact"]["email"] = "ann@vip.example"
        log: list[dict[str, Any]] = []
        assert asyncio.run(evaluate(rule.conditions, facts, log)) is True and log[0]["seen"] == "gold"
        kind = PLUGIN_ACTIONS["crm.create_ticket"]
        with pytest.raises(ValidationError):
            kind.settings.model_validate({"queue": 1, "other": 2})
    finally:
        from hub.automations.plugins import clear

        clear()
    with pytest.raises(ValidationError, match="unknown condition field"):
        _rule({"all": [{"field": "crm.tier", "op": "eq", "value": "gold"}]})
