"""Assignment policies and availability: round-robin skips agents who do not receive and honours
capacity, balanced picks the least loaded, a reopened conversation goes back to its last agent,
taking is not assigning, and concurrent new conversations never push an agent over capacity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.appkeys import STORE
from hub.models import ContactRef
from hub.records import ensure_contact, ensure_conversation
from hub.routing import route
from hub.users import create_token
from tests.conftest import Hub, eventually, fake_message


async def agents(hub: Hub, n: int, channel: str = "fk") -> list[tuple[str, dict[str, str]]]:
    out = []
    for i in range(n):
        resp = await hub.client.post(
            "/api/v1/admin/users", json={"email": f"a{i}@example.com", "role": "agent"}, headers=hub.admin
        )
        assert resp.status == 201, await resp.text()
        uid = (await resp.json())["user"]["id"]
        out.append((uid, {"Authorization": f"Bearer {await create_token(hub.store.db, uid)}"}))
    await hub.serve(channel, *[u for u, _ in out])
    return out


async def policy(hub: Hub, body: dict[str, Any], scope: str = "channel/fk") -> None:
    resp = await hub.client.put(f"/api/v1/admin/assignment-policies/{scope}", json=body, headers=hub.admin)
    assert resp.status == 200, await resp.text()


async def new_conversations(hub: Hub, *who: str) -> list[dict[str, Any]]:
    """One new conversation per contact, in order; their conversation.created events."""
    created = []
    for w in who:
        assert (await hub.webhook(fake_message(f"m-{w}", w))).status == 200

        async def seen(w: str = w) -> dict[str, Any] | None:
            for e in await hub.events(headers=hub.admin):
                if e["type"] == "conversation.created" and e["data"]["contact"]["name"] == w.title():
                    return e
            return None

        created.append(await eventually(seen))
    return created


async def test_round_robin_skips_the_busy_agent_and_honours_capacity(lite_hub: Hub) -> None:
    hub = lite_hub
    team = await agents(hub, 3)
    ids = sorted(u for u, _ in team)
    busy = ids[1]
    resp = await hub.client.put("/api/v1/me/availability", json={"status": "busy"}, headers=dict(team)[busy])
    assert resp.status == 200 and (await resp.json())["shows_as"] == "away"
    await policy(hub, {"policy": "round_robin", "capacity": 2})
    created = await new_conversations(hub, "c1", "c2", "c3", "c4", "c5")
    # Assigned in the transaction that created them: the very first event says who has it.
    got = [e["data"]["assignee_id"] for e in created]
    assert got == [ids[0], ids[2], ids[0], ids[2], None], got
    presence = [e for e in await hub.events(headers=hub.agent) if e["type"] == "presence.updated"]
    assert presence and presence[-1]["data"]["user_id"] == busy and presence[-1]["data"]["status"] == "busy"
    # Back online, the busy agent receives the next one.
    await hub.client.put("/api/v1/me/availability", json={"status": "online"}, headers=dict(team)[busy])
    (sixth,) = await new_conversations(hub, "c6")
    assert sixth["data"]["assignee_id"] == busy


async def test_balanced_gives_the_least_loaded_agent_and_custom_statuses_decide_who_receives(
    lite_hub: Hub,
) -> None:
    hub = lite_hub
    team = await agents(hub, 2)
    ids = sorted(u for u, _ in team)
    await policy(hub, {"policy": "manual"})
    (first,) = await new_conversations(hub, "d1")
    assert first["data"]["assignee_id"] is None
    await hub.client.patch(
        f"/api/v1/conversations/{first['conversation_id']}", json={"assignee_id": ids[0]}, headers=hub.admin
    )
    resp = await hub.client.post(
        "/api/v1/admin/availability-statuses",
        json={"id": "lunch", "name": "At lunch", "receives": False, "push": False, "shows_as": "away"},
        headers=hub.admin,
    )
    assert resp.status == 201, await resp.text()
    statuses = (await (await hub.client.get("/api/v1/availability-statuses", headers=hub.agent)).json())[
        "statuses"
    ]
    assert {s["id"] for s in statuses} == {"online", "busy", "offline", "lunch"}
    await policy(hub, {"policy": "balanced"})
    second, third = await new_conversations(hub, "d2", "d3")
    assert second["data"]["assignee_id"] == ids[1]  # ids[0] already has one
    assert third["data"]["assignee_id"] in ids
    await hub.client.put("/api/v1/me/availability", json={"status": "lunch"}, headers=dict(team)[ids[1]])
    (fourth,) = await new_conversations(hub, "d4")
    assert fourth["data"]["assignee_id"] == ids[0]
    bad = await hub.client.put("/api/v1/me/availability", json={"status": "napping"}, headers=hub.agent)
    assert bad.status == 422


async def test_a_reopened_conversation_goes_back_to_its_last_agent_when_available(lite_hub: Hub) -> None:
    hub = lite_hub
    team = await agents(hub, 2)
    ids = sorted(u for u, _ in team)
    await policy(hub, {"policy": "round_robin"})
    (first,) = await new_conversations(hub, "e1")
    conv = first["conversation_id"]
    owner = first["data"]["assignee_id"]
    other = next(u for u in ids if u != owner)
    resp = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"status": "resolved", "assignee_id": None}, headers=hub.admin
    )
    assert resp.status == 200
    assert (await hub.webhook(fake_message("m-e1-again", "e1"))).status == 200

    async def reopened() -> dict[str, Any] | None:
        got = await (await hub.client.get(f"/api/v1/conversations/{conv}", headers=hub.admin)).json()
        return got if got["status"] == "open" else None

    assert (await eventually(reopened))["assignee_id"] == owner
    # Resolved again while its agent is offline: the policy chooses someone else.
    await hub.client.patch(f"/api/v1/conversations/{conv}", json={"status": "resolved"}, headers=hub.admin)
    await hub.client.put("/api/v1/me/availability", json={"status": "offline"}, headers=dict(team)[owner])
    assert (await hub.webhook(fake_message("m-e1-third", "e1"))).status == 200
    assert (await eventually(reopened))["assignee_id"] == other


async def test_taking_a_conversation_needs_no_assign_permission_but_assigning_others_does(
    lite_hub: Hub,
) -> None:
    hub = lite_hub
    resp = await hub.client.post(
        "/api/v1/admin/roles",
        json={"name": "taker", "permissions": ["conversations.read.all", "conversations.update"]},
        headers=hub.admin,
    )
    assert resp.status == 201
    made = await hub.client.post(
        "/api/v1/admin/users", json={"email": "t@example.com", "role": "taker"}, headers=hub.admin
    )
    taker = (await made.json())["user"]["id"]
    taker_h = {"Authorization": f"Bearer {await create_token(hub.store.db, taker)}"}
    await hub.serve("fk", hub.agent_id, taker)
    (created,) = await new_conversations(hub, "f1")
    conv = created["conversation_id"]
    other = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"assignee_id": hub.agent_id}, headers=taker_h
    )
    assert other.status == 403
    took = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"assignee_id": taker}, headers=taker_h
    )
    assert took.status == 200 and (await took.json())["assignee_id"] == taker
    team = await hub.client.patch(f"/api/v1/conversations/{conv}", json={"team": None}, headers=taker_h)
    assert team.status == 403
    prio = await hub.client.patch(f"/api/v1/conversations/{conv}", json={"priority": "high"}, headers=taker_h)
    assert prio.status == 200 and (await prio.json())["priority"] == "high"
    updates = [e for e in await hub.events(headers=hub.admin) if e["type"] == "conversation.updated"]
    took_event = next(e for e in updates if e["data"].get("changed") == ["assignee_id"])
    assert took_event["data"]["by"] == {"type": "user", "id": taker, "name": None}
    # An agent with the assign permission hands it to someone serving the channel, not to a stranger.
    given = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"assignee_id": hub.agent_id}, headers=hub.agent
    )
    assert given.status == 200
    outsider = await hub.client.post(
        "/api/v1/admin/users", json={"email": "o@example.com", "role": "agent"}, headers=hub.admin
    )
    stranger = (await outsider.json())["user"]["id"]
    refused = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"assignee_id": stranger}, headers=hub.admin
    )
    assert refused.status == 422
    snooze_past = await hub.client.patch(
        f"/api/v1/conversations/{conv}",
        json={"status": "snoozed", "snoozed_until": "2000-01-01T00:00:00+00:00"},
        headers=hub.agent,
    )
    assert snooze_past.status == 422


@pytest.mark.parametrize("capacity", [3])
async def test_concurrent_new_conversations_never_overfill_an_agent(hub: Hub, capacity: int) -> None:
    """50 transactions that each create a conversation and route it, all at once (truly
    concurrent on PostgreSQL): no agent over capacity, and none left unassigned while one has room."""
    team = await agents(hub, 3)
    await policy(hub, {"policy": "balanced", "capacity": capacity})
    store = hub.client.app[STORE]
    store.check = None  # a bare conversation.created: the routing under test, not the catalogue

    async def one(i: int) -> str:
        async with store.tx() as tx:
            contact = await ensure_contact(tx, "fk", ContactRef(ids=[f"cc-{i}"]))
            conv, _ = await ensure_conversation(tx, "fk", contact)
            await route(tx, [conv])
            await tx.emit(
                "conversation.created", {"id": conv["id"]}, channel_id="fk", conversation_id=conv["id"]
            )
            return str(conv["id"])

    ids = await asyncio.gather(*(one(i) for i in range(50)))
    assert len(set(ids)) == 50
    convs = []
    cursor = ""
    while True:
        page = await (
            await hub.client.get(f"/api/v1/conversations?limit=200{cursor}", headers=hub.admin)
        ).json()
        convs += page["conversations"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    loads: dict[str | None, int] = {}
    for c in convs:
        loads[c["assignee_id"]] = loads.get(c["assignee_id"], 0) + 1
    assert all(loads.get(u, 0) == capacity for u, _ in team), loads
    assert loads.get(None) == 50 - 3 * capacity, loads


async def test_a_snooze_runs_out_and_an_agent_long_gone_goes_offline(lite_hub: Hub) -> None:
    from datetime import timedelta

    from hub.appkeys import CONNECTIONS
    from hub.models import utcnow
    from hub.timers import TimedWork

    hub = lite_hub
    team = await agents(hub, 1)
    (uid, headers) = team[0]
    await policy(hub, {"policy": "round_robin"})
    (created,) = await new_conversations(hub, "g1")
    conv = created["conversation_id"]
    until = utcnow() + timedelta(minutes=30)
    resp = await hub.client.patch(
        f"/api/v1/conversations/{conv}",
        json={"status": "snoozed", "snoozed_until": until.isoformat()},
        headers=headers,
    )
    assert resp.status == 200 and (await resp.json())["status"] == "snoozed"
    timed = TimedWork(hub.store, hub.client.app[CONNECTIONS], auto_offline_minutes=10)
    assert await timed.wake_snoozed(utcnow()) == 0
    assert await timed.wake_snoozed(until + timedelta(seconds=1)) == 1
    fresh = await (await hub.client.get(f"/api/v1/conversations/{conv}", headers=headers)).json()
    assert (fresh["status"], fresh["snoozed_until"], fresh["assignee_id"]) == ("open", None, uid)
    woke = [e for e in await hub.events(headers=headers) if e["type"] == "conversation.updated"]
    assert woke[-1]["data"]["by"]["type"] == "system" and woke[-1]["data"]["status"] == "open"
    # Auto-offline: nobody goes offline while connected, nor before N minutes have passed.
    async with hub.client.ws_connect("/api/v1/stream?after=0", headers=headers) as ws:
        while (await ws.receive_json(timeout=5))["type"] != "live":
            pass
        assert await timed.set_away_offline(utcnow() + timedelta(hours=1)) == 0
    await eventually(lambda: _no_stream(hub, uid))
    assert await timed.set_away_offline(utcnow() + timedelta(minutes=5)) == 0
    assert await timed.set_away_offline(utcnow() + timedelta(minutes=11)) == 1
    me = await (await hub.client.get("/api/v1/me", headers=headers)).json()
    assert me["availability"] == "offline"
    presence = [e for e in await hub.events(headers=hub.agent) if e["type"] == "presence.updated"]
    assert presence[-1]["data"] == {
        **presence[-1]["data"],
        "user_id": uid,
        "status": "offline",
        "shows_as": "offline",
    }


async def test_auto_offline_sees_streams_held_by_another_process_and_a_crashed_ones_end(
    lite_hub: Hub,
) -> None:
    """Two ``Connections`` on one database stand for two hub processes. A user whose stream on B is
    open is never offlined by A, even after a stream of theirs on A closed long ago; once B stops
    its heartbeat (a crash), the user goes offline N minutes after the last one."""
    from datetime import timedelta

    from hub.models import utcnow
    from hub.timers import Connections, TimedWork

    hub = lite_hub
    ((uid, headers),) = await agents(hub, 1)
    on_a, on_b = Connections(hub.store), Connections(hub.store)
    timed_a = TimedWork(hub.store, on_a, auto_offline_minutes=1)
    await on_b.opened(uid)
    await on_a.opened(uid)
    await on_a.closed(uid)  # A has no stream of theirs any more; B still has one
    later = utcnow()
    for _ in range(5):  # five minutes of B's heartbeats, with A checking after each
        later += timedelta(minutes=1)
        await on_b.heartbeat(later)
        assert await timed_a.set_away_offline(later + timedelta(seconds=5)) == 0
    # B crashed: no heartbeat, and its stream never closed.
    assert await timed_a.set_away_offline(later + timedelta(seconds=50)) == 0
    assert await timed_a.set_away_offline(later + timedelta(seconds=61)) == 1
    me = await (await hub.client.get("/api/v1/me", headers=headers)).json()
    assert me["availability"] == "offline"


async def _no_stream(hub: Hub, user_id: str) -> bool:
    from hub.appkeys import CONNECTIONS

    return user_id not in hub.client.app[CONNECTIONS].open


async def test_handing_a_conversation_to_a_team_lets_the_teams_policy_choose(lite_hub: Hub) -> None:
    hub = lite_hub
    team = await agents(hub, 2)
    ids = sorted(u for u, _ in team)
    resp = await hub.client.post(
        "/api/v1/admin/teams", json={"name": "Billing", "member_ids": [ids[1]]}, headers=hub.admin
    )
    billing = (await resp.json())["id"]
    await policy(hub, {"policy": "round_robin"}, scope=f"team/{billing}")
    (created,) = await new_conversations(hub, "h1")
    assert created["data"]["assignee_id"] is None  # the channel itself is manual
    conv = created["conversation_id"]
    handed = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"team": billing}, headers=hub.admin
    )
    assert handed.status == 200, await handed.text()
    body = await handed.json()
    assert (body["team"], body["assignee_id"]) == (billing, ids[1])
    update = [e for e in await hub.events(headers=hub.admin) if e["type"] == "conversation.updated"][-1]
    assert update["data"]["changed"] == ["assignee_id", "team"]
