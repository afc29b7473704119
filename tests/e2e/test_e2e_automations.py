"""Issue 19 (rules) through a real ``hub serve``: rules run in their order and "stop processing"
holds; the out-of-office reply goes out only outside business hours, once per conversation, never
to an auto-reply or to another automatic message; a self-triggering rule stops at the depth limit
with the reason in the run log; a backtest reports matches and changes nothing; the run log shows
each condition's seen value and result.

The module runs its own hub: rules apply to every conversation of a hub, so they must not meet
the shared hub's other tests. Each test's rules name its own channel in a condition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from e2e_support import (
    PG_HELP,
    Api,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    create_wa_channel,
    deliver_text,
    e2e_database,
    phone,
    postgres_problem,
    postgres_url,
    reset_postgres,
    unique,
    wait_message_event,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RULES = "/api/v1/admin/automations/rules"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HubProcess]:
    """One hub per backend: on PostgreSQL the cursor, the timers' SKIP LOCKED claims and the loop
    guard's JSON queries run as they do behind a load balancer."""
    database_url = None
    if request.param == "postgresql":
        server = postgres_url()
        problem = await postgres_problem(server)
        if problem is not None:
            pytest.skip(PG_HELP.format(url=server, error=problem))
        database_url = await e2e_database(server)
        await reset_postgres(database_url)
    process = HubProcess(Path(tmp_path_factory.mktemp("automations")), database_url=database_url)
    try:
        await process.bootstrap()
        yield process
    finally:
        await process.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(http: aiohttp.ClientSession, hub: HubProcess) -> Api:
    return Api(http, hub.base_url, hub.token)


async def label(api: Api, name: str) -> str:
    await api.ok("POST", "/api/v1/admin/labels", expect=201, json_body={"name": name})
    return name


def on_channel(ch: WaChannel, *more: dict[str, Any]) -> dict[str, Any]:
    return {"all": [{"field": "channel.id", "op": "eq", "value": ch.id}, *more]}


async def rule(api: Api, **body: Any) -> dict[str, Any]:
    out: dict[str, Any] = await api.ok("POST", RULES, expect=201, json_body=body)
    return out


async def runs(api: Api, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    page = await api.ok("GET", f"/api/v1/admin/automations/runs?limit=200&{qs}")
    return list(page["runs"])


async def inbound(api: Api, ch: WaChannel, wa_id: str, text: str) -> dict[str, Any]:
    after = await api.last_seq()
    msg_id = await deliver_text(api, ch, wa_id, text)
    return await wait_message_event(api, after, msg_id)


async def test_rules_apply_in_order_and_stop_processing_holds(admin: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Rules order")
    first = await label(admin, unique("first-"))
    second = await label(admin, unique("second-"))
    third = await label(admin, unique("third-"))
    word = unique("order")
    cond = on_channel(ch, {"field": "message.text", "op": "contains", "value": word})
    trig = {"type": "message_created", "direction": "inbound"}
    # Created in the wrong order on purpose; the order is then set explicitly.
    c = await rule(
        admin, name="third", trigger=trig, conditions=cond, actions=[{"type": "add_label", "label": third}]
    )
    b = await rule(
        admin,
        name="second (stops)",
        trigger=trig,
        conditions=cond,
        actions=[{"type": "add_label", "label": second}],
        stop_processing=True,
    )
    a = await rule(
        admin, name="first", trigger=trig, conditions=cond, actions=[{"type": "add_label", "label": first}]
    )
    listed = [r["id"] for r in (await admin.ok("GET", RULES))["rules"]]
    assert listed[-3:] == [c["id"], b["id"], a["id"]], "a new rule runs after the others"
    others = [r for r in listed if r not in (a["id"], b["id"], c["id"])]
    ordered = await admin.ok(
        "PUT", "/api/v1/admin/automations/order", json_body={"rule_ids": [a["id"], b["id"]]}
    )
    # The rules named first, the others after them in the order they had.
    assert [r["id"] for r in ordered["rules"]] == [a["id"], b["id"], *others, c["id"]]
    twice = await admin.request(
        "PUT", "/api/v1/admin/automations/order", json_body={"rule_ids": [a["id"], a["id"]]}
    )
    assert twice.status == 422, twice
    unknown = await admin.request(
        "PUT", "/api/v1/admin/automations/order", json_body={"rule_ids": ["ar_nope"]}
    )
    assert unknown.status == 404, unknown

    text = f"please {word} now"
    ev = await inbound(admin, ch, phone(), text)
    conv_id = ev["conversation_id"]

    async def logged() -> list[dict[str, Any]] | None:
        found = [r for r in await runs(admin, conversation_id=conv_id) if r["rule_id"] in (a["id"], b["id"])]
        return found if len(found) == 2 else None

    done = sorted(await wait_until(logged, within=20, what="the two rules' runs"), key=lambda r: r["id"])
    assert [r["rule_id"] for r in done] == [a["id"], b["id"]], "rules ran out of their order"
    assert all(r["outcome"] == "applied" and r["rule_version"] == 1 for r in done), done
    conv = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
    assert first in conv["labels"] and second in conv["labels"]
    assert third not in conv["labels"], "a rule after one that stops processing still ran"
    assert not [r for r in await runs(admin, rule_id=c["id"]) if r["conversation_id"] == conv_id]

    # The run log shows each condition's seen value and result.
    conditions = {x["field"]: x for x in done[0]["conditions"] if "field" in x}
    assert conditions["message.text"]["seen"] == text and conditions["message.text"]["result"] is True
    assert conditions["channel.id"] == {
        "path": "0",
        "field": "channel.id",
        "op": "eq",
        "value": ch.id,
        "seen": ch.id,
        "result": True,
    }
    assert done[0]["actions"][0]["status"] == "done"

    # The app sees the change as an event that names the rule.
    events = [
        e
        for e in await admin.events(ev["seq"])
        if e["type"] == "conversation.updated" and e["conversation_id"] == conv_id
    ]
    assert {e["data"]["by"]["id"] for e in events} >= {f"rule:{a['id']}", f"rule:{b['id']}"}
    assert {e["data"]["by"]["type"] for e in events} == {"rule"}

    # An edit makes a new version; the next run names it. A message that does not match is logged
    # with the value its condition saw.
    edited = await admin.ok("PATCH", f"{RULES}/{a['id']}", json_body={"name": "first, renamed"})
    assert edited["version"] == 2
    versions = await admin.ok("GET", f"{RULES}/{a['id']}/versions")
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    await inbound(admin, ch, phone(), "nothing to see")

    async def miss() -> dict[str, Any] | None:
        found = [r for r in await runs(admin, rule_id=a["id"]) if r["outcome"] == "not_matched"]
        return found[0] if found else None

    missed = await wait_until(miss, within=20, what="a not_matched run")
    assert missed["rule_version"] == 2
    seen = {x["field"]: x for x in missed["conditions"] if "field" in x}
    assert seen["message.text"] | {} == {**seen["message.text"], "seen": "nothing to see", "result": False}


async def test_out_of_office_only_outside_hours_once_and_never_to_machines(
    admin: Api, graph: ThreadedFakeGraph
) -> None:
    closed = await create_wa_channel(admin, graph.base_url, name="Closed")
    opened = await create_wa_channel(admin, graph.base_url, name="Open")
    reply = "We are closed " + unique()
    every_day = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours_closed = await admin.ok(
        "POST",
        "/api/v1/admin/business-hours",
        expect=201,
        json_body={
            "name": "closed",
            "scope_type": "channel",
            "scope_id": closed.id,
            "timezone": "Europe/Berlin",
            # Open every day, but today and the days around it are holidays (any time zone).
            "weekly": every_day,
            "holidays": [_day(-1), _day(0), _day(1)],
            "autoresponder": {"enabled": True, "text": reply},
        },
    )
    hours_open = await admin.ok(
        "POST",
        "/api/v1/admin/business-hours",
        expect=201,
        json_body={
            "name": "always",
            "scope_type": "channel",
            "scope_id": opened.id,
            "timezone": "America/New_York",
            "weekly": every_day,
            "autoresponder": {"enabled": True, "text": reply},
        },
    )
    bad = await admin.request(
        "POST",
        "/api/v1/admin/business-hours",
        json_body={"name": "x", "scope_type": "channel", "scope_id": closed.id, "timezone": "Mars/Olympus"},
    )
    assert bad.status == 422, bad
    # An automatic message must never answer another: this rule would echo every outbound message.
    echo = await rule(
        admin,
        name="echo outbound",
        trigger={"type": "message_created", "direction": "outbound"},
        conditions=on_channel(closed),
        actions=[{"type": "send_text", "text": "echo"}],
    )

    # Within business hours: no reply.
    ev = await inbound(admin, opened, phone(), "hello there")
    ooo_open = f"ooo:{hours_open['id']}"

    async def open_logged() -> list[dict[str, Any]]:
        return [
            r for r in await runs(admin, rule_id=ooo_open) if r["conversation_id"] == ev["conversation_id"]
        ]

    logged = await wait_until(open_logged, within=20, what="the open channel's evaluation")
    assert logged[0]["outcome"] == "not_matched" and logged[0]["conditions"][0]["seen"] is True

    # Outside: one reply, once per conversation.
    customer = phone()
    ev = await inbound(admin, closed, customer, "anyone there?")
    conv_id = ev["conversation_id"]
    sends = await wait_until(lambda: graph.sends(closed.phone_number_id), within=20, what="the OOO reply")
    assert [s.json["text"]["body"] for s in sends] == [reply]
    await inbound(admin, closed, customer, "hello??")
    ooo = f"ooo:{hours_closed['id']}"

    async def twice() -> list[dict[str, Any]] | None:
        found = [r for r in await runs(admin, rule_id=ooo) if r["conversation_id"] == conv_id]
        return found if len(found) >= 2 else None

    both = sorted(await wait_until(twice, within=20, what="two OOO evaluations"), key=lambda r: r["id"])
    assert [r["outcome"] for r in both] == ["applied", "skipped"], both

    # The echo rule matched the OOO reply, and the loop guard kept it from answering.
    async def echoed() -> dict[str, Any] | None:
        found = [r for r in await runs(admin, rule_id=echo["id"]) if r["conversation_id"] == conv_id]
        return found[0] if found else None

    echo_run = await wait_until(echoed, within=20, what="the echo rule's run")
    assert echo_run["outcome"] == "blocked", echo_run
    assert "loop guard" in echo_run["actions"][0]["detail"] and "rule" in echo_run["actions"][0]["detail"]

    # An auto-reply from a customer is never answered.
    other = await inbound(admin, closed, phone(), "Automatic reply: I am out of office until Monday")

    async def guarded() -> dict[str, Any] | None:
        found = [
            r for r in await runs(admin, rule_id=ooo) if r["conversation_id"] == other["conversation_id"]
        ]
        return found[0] if found else None

    blocked = await wait_until(guarded, within=20, what="the auto-reply's evaluation")
    assert blocked["outcome"] == "blocked" and "auto-reply" in blocked["reason"], blocked
    messages = await admin.messages(other["conversation_id"])
    assert [m["direction"] for m in messages] == ["inbound"]
    assert len(graph.sends(closed.phone_number_id)) == 1, "an automatic message answered a machine"
    # The OOO reply shows its sender as the automation.
    sent = [m for m in await admin.messages(conv_id) if m["direction"] == "outbound"]
    assert [m["sender"]["type"] for m in sent] == ["rule"] and sent[0]["sender"]["id"] == f"rule:{ooo}"
    assert (await admin.request("DELETE", f"{RULES}/{echo['id']}")).status == 204


def _day(offset: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


async def test_a_self_triggering_rule_stops_at_the_depth_limit(admin: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Loop")
    loop = await rule(
        admin,
        name="snooze on every change",
        trigger={"type": "conversation_updated"},
        conditions=on_channel(ch),
        actions=[{"type": "snooze", "minutes": 60}],
    )
    ev = await inbound(admin, ch, phone(), "start")
    conv_id = ev["conversation_id"]
    await admin.ok("PATCH", f"/api/v1/conversations/{conv_id}", json_body={"priority": "high"})

    async def stopped() -> list[dict[str, Any]] | None:
        found = await runs(admin, rule_id=loop["id"], conversation_id=conv_id)
        return found if any(r["outcome"] == "stopped" for r in found) else None

    found = await wait_until(stopped, within=30, what="the depth limit")
    stop = next(r for r in found if r["outcome"] == "stopped")
    assert stop["depth"] == 3 and "depth limit" in stop["reason"], stop
    assert max(r["depth"] for r in found) == 3
    applied = [r for r in found if r["outcome"] == "applied"]
    assert sorted(r["depth"] for r in applied)[:3] == [0, 1, 2]
    # It stays stopped: nothing more happens to the conversation.
    seq = await admin.last_seq()
    assert (await admin.request("DELETE", f"{RULES}/{loop['id']}")).status == 204
    assert not [e for e in await admin.events(seq) if e["conversation_id"] == conv_id]


async def test_a_backtest_reports_matches_and_changes_nothing(admin: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Backtest")
    tag = await label(admin, unique("refund-"))
    customer = phone()
    first = await inbound(admin, ch, customer, "I want a refund")
    await inbound(admin, ch, customer, "hello")
    await inbound(admin, ch, customer, "REFUND please")
    conv_id = first["conversation_id"]
    draft = {
        "name": "refunds",
        "trigger": {"type": "message_created"},
        "conditions": on_channel(ch, {"field": "message.text", "op": "regex", "value": "(?i)refund"}),
        "actions": [{"type": "add_label", "label": tag}],
    }
    before = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
    seq = await admin.last_seq()
    report = await admin.ok(
        "POST", "/api/v1/admin/automations/backtest", json_body={"rule": draft, "days": 1}
    )
    assert report["match_count"] == 2 and report["conversations"] == [conv_id], report
    assert all(m["would_do"][0]["type"] == "add_label" for m in report["matches"])
    texts = [
        next(c["seen"] for c in m["conditions"] if c.get("field") == "message.text")
        for m in report["matches"]
    ]
    assert texts == ["I want a refund", "REFUND please"]
    # One event, dry: the same answer, and nothing done either.
    dry = await admin.ok(
        "POST", "/api/v1/admin/automations/dry-run", json_body={"rule": draft, "event_seq": first["seq"]}
    )
    assert dry["matched"] is True and dry["would_do"][0]["type"] == "add_label"
    after = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
    assert after["labels"] == before["labels"] and tag not in after["labels"]
    assert [e for e in await admin.events(seq) if e["conversation_id"] == conv_id] == []
    assert await admin.ok("GET", f"{RULES}") and not [
        r
        for r in await runs(admin, conversation_id=conv_id)
        if r["rule_id"] not in ("-",) and r["mode"] != "live"
    ]

    # A rule in shadow mode only logs.
    shadow = await rule(admin, **{**draft, "mode": "shadow"})
    await inbound(admin, ch, customer, "refund again")

    async def logged() -> dict[str, Any] | None:
        found = await runs(admin, rule_id=shadow["id"])
        return found[0] if found else None

    run = await wait_until(logged, within=20, what="the shadow run")
    assert run["outcome"] == "shadow" and run["actions"][0]["status"] == "would_run"
    assert tag not in (await admin.ok("GET", f"/api/v1/conversations/{conv_id}"))["labels"]
    assert (await admin.request("DELETE", f"{RULES}/{shadow['id']}")).status == 204


async def test_no_reply_timer_fires_once_nobody_answered(admin: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Timers")
    timer = await rule(
        admin,
        name="no reply for 3 s",
        trigger={"type": "no_reply", "minutes": 0.05},
        conditions=on_channel(ch),
        actions=[{"type": "set_priority", "priority": "urgent"}],
    )
    ev = await inbound(admin, ch, phone(), "is anyone there?")
    conv_id = ev["conversation_id"]

    async def urgent() -> dict[str, Any] | None:
        conv = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
        return conv if conv["priority"] == "urgent" else None

    await wait_until(urgent, within=25, what="the no-reply rule")
    found = await runs(admin, rule_id=timer["id"], conversation_id=conv_id)
    assert [r["trigger"] for r in found] == ["no_reply"] and found[0]["outcome"] == "applied"
    assert (await admin.request("DELETE", f"{RULES}/{timer['id']}")).status == 204


async def test_automations_need_their_permission(admin: Api) -> None:
    email = unique("agent-") + "@example.com"
    made = await admin.ok(
        "POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": "agent"}
    )
    password = "pw-" + unique()
    await admin.ok(
        "POST",
        "/api/v1/auth/set-password",
        json_body={"token": made["invitation"]["token"], "password": password},
        auth=False,
    )
    login = await admin.ok(
        "POST", "/api/v1/auth/login", json_body={"email": email, "password": password}, auth=False
    )
    agent = Api(admin.session, admin.base_url, login["token"])
    for method, path in (
        ("GET", RULES),
        ("GET", "/api/v1/admin/automations/runs"),
        ("GET", "/api/v1/admin/business-hours"),
    ):
        resp = await agent.request(method, path)
        assert resp.status == 403, (path, resp)
    bad = await admin.request(
        "POST",
        RULES,
        json_body={
            "name": "bad",
            "trigger": {"type": "message_created"},
            "conditions": {"all": [{"field": "nope", "op": "eq", "value": 1}]},
            "actions": [{"type": "add_label", "label": "x"}],
        },
    )
    assert bad.status == 422 and "unknown condition field" in str(bad.json), bad


class Receiver:
    """A webhook receiver on loopback that keeps only POSTs whose signature verifies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = request.headers.get("X-Hub-Timestamp", "").encode() + b"." + body
        expected = "sha256=" + hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            self.refused += 1
            return web.Response(status=401)
        self.accepted.append(json.loads(body))
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_a_signed_webhook_and_an_in_app_notification_name_the_rule(
    admin: Api, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Webhooks")
    me = await admin.ok("GET", "/api/v1/me")
    secret = "whsec-" + unique()
    async with Receiver(secret) as receiver:
        hook = await rule(
            admin,
            name="tell the CRM",
            trigger={"type": "message_created"},
            conditions=on_channel(ch),
            actions=[
                {"type": "call_webhook", "url": receiver.url, "secret": secret},
                {
                    "type": "notify_users",
                    "user_ids": [me["id"]],
                    "title": "VIP",
                },
            ],
        )
        assert hook["definition"]["actions"][0]["secret"] == "*" * 16, "a read shows the secret"
        ev = await inbound(admin, ch, phone(), "hello crm")
        got = await wait_until(lambda: receiver.accepted, within=20, what="the signed webhook")
        assert got[0]["conversation"]["id"] == ev["conversation_id"]
        assert got[0]["by"] == {"type": "rule", "id": f"rule:{hook['id']}", "name": "tell the CRM"}
        assert receiver.refused == 0
        # Sending the masked secret back keeps the secret: the next call still verifies.
        edited = await admin.ok(
            "PATCH",
            f"{RULES}/{hook['id']}",
            json_body={"name": "tell the CRM (v2)", **{"actions": hook["definition"]["actions"]}},
        )
        assert edited["version"] == 2
        await inbound(admin, ch, phone(), "hello again")
        await wait_until(lambda: len(receiver.accepted) >= 2, within=20, what="the second webhook")
        assert receiver.refused == 0
    notes = await admin.ok("GET", "/api/v1/notifications")
    mine = [n for n in notes["notifications"] if n["conversation_id"] == ev["conversation_id"]]
    assert mine and mine[0]["title"] == "VIP" and mine[0]["event"] == "automation"
    assert (await admin.request("DELETE", f"{RULES}/{hook['id']}")).status == 204


async def test_a_rule_assigns_through_the_assignment_policy(admin: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(admin, graph.base_url, name="Assign")
    email = unique("seller-") + "@example.com"
    made = await admin.ok(
        "POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": "agent"}
    )
    seller = made["user"]["id"]
    await admin.ok("PUT", f"/api/v1/admin/channels/{ch.id}/members", json_body={"user_ids": [seller]})
    customer = phone()
    first = await inbound(admin, ch, customer, "hello")
    conv_id = first["conversation_id"]
    assert (await admin.ok("GET", f"/api/v1/conversations/{conv_id}"))["assignee_id"] is None
    await admin.ok(
        "PUT", f"/api/v1/admin/assignment-policies/channel/{ch.id}", json_body={"policy": "round_robin"}
    )
    assign = await rule(
        admin,
        name="sales to the policy",
        trigger={"type": "message_created"},
        conditions=on_channel(ch, {"field": "conversation.assignee_id", "op": "is_not_set"}),
        actions=[{"type": "assign_by_policy"}],
    )
    second = await inbound(admin, ch, customer, "I want to buy")

    async def assigned() -> dict[str, Any] | None:
        conv = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
        return conv if conv["assignee_id"] else None

    conv = await wait_until(assigned, within=20, what="the policy's choice")
    assert conv["assignee_id"] == seller
    updates = [
        e
        for e in await admin.events(second["seq"])
        if e["type"] == "conversation.updated" and e["conversation_id"] == conv_id
    ]
    assert any(
        (e["data"].get("by") or {}).get("id") == f"rule:{assign['id']}"
        and "assignee_id" in e["data"]["changed"]
        for e in updates
    )
    assert (await admin.request("DELETE", f"{RULES}/{assign['id']}")).status == 204


async def test_snooze_ended_fires_when_the_hub_wakes_a_conversation(
    admin: Api, graph: ThreadedFakeGraph
) -> None:
    from datetime import UTC, datetime, timedelta

    ch = await create_wa_channel(admin, graph.base_url, name="Snooze")
    woke = await label(admin, unique("woke-"))
    back = await rule(
        admin,
        name="mark woken conversations",
        trigger={"type": "snooze_ended"},
        conditions=on_channel(ch),
        actions=[{"type": "add_label", "label": woke}],
    )
    ev = await inbound(admin, ch, phone(), "later please")
    conv_id = ev["conversation_id"]
    until = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await admin.ok(
        "PATCH", f"/api/v1/conversations/{conv_id}", json_body={"status": "snoozed", "snoozed_until": until}
    )
    # Snoozing is a conversation update, not the end of a snooze: nothing yet.
    assert woke not in (await admin.ok("GET", f"/api/v1/conversations/{conv_id}"))["labels"]

    async def labelled() -> dict[str, Any] | None:
        conv = await admin.ok("GET", f"/api/v1/conversations/{conv_id}")
        return conv if woke in conv["labels"] else None

    conv = await wait_until(labelled, within=30, what="the snooze_ended rule")
    assert conv["status"] == "open"
    found = await runs(admin, rule_id=back["id"], conversation_id=conv_id)
    assert [r["trigger"] for r in found] == ["snooze_ended"] and found[0]["outcome"] == "applied"
    assert (await admin.request("DELETE", f"{RULES}/{back['id']}")).status == 204
