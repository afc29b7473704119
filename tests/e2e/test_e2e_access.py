"""People and access end to end, against a real ``hub serve``: users made through the admin API,
deactivation, channel scopes on every read path (the stream included), custom roles, snooze."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    assert_error,
    create_wa_channel,
    deliver_text,
    inbound_conversation,
    phone,
    unique,
    wait_message_event,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(api: Api, graph: ThreadedFakeGraph) -> WaChannel:
    return await create_wa_channel(api, graph.base_url, name="Served")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def unserved(api: Api, graph: ThreadedFakeGraph) -> WaChannel:
    return await create_wa_channel(api, graph.base_url, name="Not served")


async def agent(api: Api, shared_hub: HubProcess, *, role: str = "agent") -> tuple[str, str, Api]:
    """An agent created through the admin API who set their password from the invitation and
    logged in: (user id, email, their Api)."""
    email = unique("agent-") + "@example.com"
    made = await api.ok("POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": role})
    password = "pw-" + unique()
    await api.ok(
        "POST",
        "/api/v1/auth/set-password",
        json_body={"token": made["invitation"]["token"], "password": password},
        auth=False,
    )
    login = await api.ok(
        "POST", "/api/v1/auth/login", json_body={"email": email, "password": password}, auth=False
    )
    return made["user"]["id"], email, Api(api.session, api.base_url, login["token"])


async def serve(api: Api, channel: WaChannel, *user_ids: str) -> None:
    await api.ok(
        "PUT", f"/api/v1/admin/channels/{channel.id}/members", json_body={"user_ids": list(user_ids)}
    )


async def test_an_agent_created_through_the_api_logs_in_and_deactivation_refuses_them_at_once(
    api: Api, shared_hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    user_id, email, mine = await agent(api, shared_hub)
    me = await mine.ok("GET", "/api/v1/me")
    assert me["email"] == email and me["role"] == "agent" and "messages.send" in me["permissions"]
    assert mine.token
    async with EventStream(http, shared_hub.base_url, mine.token, await api.last_seq()) as stream:
        await stream.wait_live()
        await api.ok("PATCH", f"/api/v1/admin/users/{user_id}", json_body={"active": False})
        await wait_until(stream.closed.is_set, within=10, what="the deactivated user's stream to close")
        assert stream.ws is not None and stream.ws.close_code == 4401
    assert_error(await mine.get("/api/v1/me"), 401)
    # Another attempt to log in is refused too (the password is right).
    resp = await api.post("/api/v1/auth/login", {"email": email, "password": "whatever"}, auth=False)
    assert_error(resp, 401)


async def test_a_non_member_agent_sees_nothing_of_a_channel_by_any_path(
    api: Api,
    shared_hub: HubProcess,
    http: aiohttp.ClientSession,
    served: WaChannel,
    unserved: WaChannel,
) -> None:
    user_id, _, mine = await agent(api, shared_hub)
    await serve(api, served, user_id)
    await serve(api, unserved)
    assert mine.token
    start = await api.last_seq()
    async with EventStream(http, shared_hub.base_url, mine.token, start) as stream:
        await stream.wait_live()
        hidden_conv = await inbound_conversation(api, unserved, phone())
        hidden_msgs = await api.messages(hidden_conv)
        hidden_msg = hidden_msgs[0]["id"]
        visible_id = await deliver_text(api, served, phone(), "visible " + unique())
        await stream.wait_event("message.created", external_id=visible_id)
        # The served channel's event came after the other's: had the other been sent, it would be here.
        assert not [e for e in stream.events if e["channel_id"] == unserved.id]
    # Replaying from the same cursor shows the same.
    async with EventStream(http, shared_hub.base_url, mine.token, start) as replay:
        await replay.wait_live()
        assert replay.find("message.created", external_id=visible_id)
        assert not [e for e in replay.events if e["channel_id"] == unserved.id]
    events = await mine.events(start)
    assert any(e["data"].get("external_id") == visible_id for e in events)
    assert not [e for e in events if e["channel_id"] == unserved.id]
    channels = await mine.channels()
    assert [c["id"] for c in channels] == [served.id]
    listed = await mine.ok("GET", "/api/v1/conversations?limit=200")
    assert hidden_conv not in {c["id"] for c in listed["conversations"]}
    assert all(c["channel_id"] == served.id for c in listed["conversations"])
    for path in (
        f"/api/v1/conversations/{hidden_conv}",
        f"/api/v1/conversations/{hidden_conv}/messages",
        f"/api/v1/messages/{hidden_msg}",
        f"/api/v1/attachments/{hidden_msg}/0",
    ):
        assert_error(await mine.get(path), 404, "not_found")
    send = await mine.post(f"/api/v1/conversations/{hidden_conv}/messages", {"text": "hi"})
    assert_error(send, 404, "not_found")


async def test_a_membership_change_applies_to_an_open_stream(
    api: Api, shared_hub: HubProcess, http: aiohttp.ClientSession, unserved: WaChannel
) -> None:
    user_id, _, mine = await agent(api, shared_hub)
    await serve(api, unserved)
    assert mine.token
    async with EventStream(http, shared_hub.base_url, mine.token, await api.last_seq()) as stream:
        await stream.wait_live()
        before = await deliver_text(api, unserved, phone(), "before " + unique())
        await wait_message_event(api, 0, before)
        await serve(api, unserved, user_id)
        after = await deliver_text(api, unserved, phone(), "after " + unique())
        await stream.wait_event("message.created", external_id=after)
        assert not stream.find("message.created", external_id=before)
    await serve(api, unserved)


async def test_a_custom_role_without_send_gets_403_on_a_send(
    api: Api, shared_hub: HubProcess, served: WaChannel
) -> None:
    name = "reader-" + unique()
    await api.ok(
        "POST",
        "/api/v1/admin/roles",
        expect=201,
        json_body={"name": name, "permissions": ["conversations.read.all", "conversations.update"]},
    )
    user_id, _, mine = await agent(api, shared_hub, role=name)
    await serve(api, served, user_id)
    conv = await inbound_conversation(api, served, phone())
    assert (await mine.ok("GET", f"/api/v1/conversations/{conv}"))["id"] == conv
    me = await mine.ok("GET", "/api/v1/me")
    assert "messages.send" not in me["permissions"] and me["channel_ids"] == [served.id]
    resp = await mine.post(
        f"/api/v1/conversations/{conv}/messages", {"text": "no"}, headers={"Idempotency-Key": unique()}
    )
    assert_error(resp, 403, "forbidden")
    # Nothing was stored for it.
    assert all(m["direction"] == "inbound" for m in await api.messages(conv))


async def test_a_snoozed_conversation_reopens_when_its_customer_writes(api: Api, served: WaChannel) -> None:
    wa_id = phone()
    conv = await inbound_conversation(api, served, wa_id)
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    snoozed: dict[str, Any] = await api.ok(
        "PATCH", f"/api/v1/conversations/{conv}", json_body={"status": "snoozed", "snoozed_until": until}
    )
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_until"] is not None
    after = await api.last_seq()
    msg_id = await deliver_text(api, served, wa_id, "are you there?")
    await wait_message_event(api, after, msg_id)
    fresh = await api.ok("GET", f"/api/v1/conversations/{conv}")
    assert fresh["status"] == "open" and fresh["snoozed_until"] is None
    updates = [
        e
        for e in await api.events(after)
        if e["type"] == "conversation.updated" and e["conversation_id"] == conv
    ]
    assert updates and updates[-1]["data"]["status"] == "open"


async def _assignee_of(api: Api, conversation_id: str) -> str | None:
    conv = await api.ok("GET", f"/api/v1/conversations/{conversation_id}")
    return conv["assignee_id"]


async def test_round_robin_over_three_agents_skips_the_busy_one_and_honours_capacity(
    api: Api, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    channel = await create_wa_channel(api, graph.base_url, name="Round robin")
    team = [await agent(api, shared_hub) for _ in range(3)]
    await serve(api, channel, *[uid for uid, _, _ in team])
    ordered = sorted(team)
    busy_id, _, busy_api = ordered[1]
    presence = await busy_api.ok("PUT", "/api/v1/me/availability", json_body={"status": "busy"})
    assert presence["shows_as"] == "away"
    await api.ok(
        "PUT",
        f"/api/v1/admin/assignment-policies/channel/{channel.id}",
        json_body={"policy": "round_robin", "capacity": 2},
    )
    got = []
    for _ in range(5):
        conv = await inbound_conversation(api, channel, phone())
        # The conversation.created event already carries the assignee: no unassigned gap.
        created = [
            e
            for e in await api.events(0)
            if e["type"] == "conversation.created" and e["conversation_id"] == conv
        ]
        assert created[0]["data"]["assignee_id"] == await _assignee_of(api, conv)
        got.append(created[0]["data"]["assignee_id"])
    first, third = ordered[0][0], ordered[2][0]
    assert got == [first, third, first, third, None], got
    assert busy_id not in got


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_fifty_concurrent_new_conversations_respect_capacity(
    backend: str, hub_factory: Any, graph: ThreadedFakeGraph, http: aiohttp.ClientSession
) -> None:
    hub = await hub_factory(backend)
    admin = Api(http, hub.base_url, hub.token)
    channel = await create_wa_channel(admin, graph.base_url, name="Rush")
    team = [await agent(admin, hub) for _ in range(3)]
    await serve(admin, channel, *[uid for uid, _, _ in team])
    capacity = 7
    await admin.ok(
        "PUT",
        f"/api/v1/admin/assignment-policies/channel/{channel.id}",
        json_body={"policy": "balanced", "capacity": capacity},
    )
    import asyncio

    from e2e_support import wa_text_webhook

    payloads = [wa_text_webhook(channel.phone_number_id, phone(), f"rush {i}")[0] for i in range(50)]
    answers = await asyncio.gather(*(admin.webhook(channel.id, p, channel.app_secret) for p in payloads))
    assert [a.status for a in answers] == [200] * 50

    async def all_there() -> list[dict[str, Any]] | None:
        page = await admin.ok("GET", f"/api/v1/conversations?channel_id={channel.id}&limit=200")
        return page["conversations"] if len(page["conversations"]) == 50 else None

    convs = await wait_until(all_there, within=60, what="50 conversations")
    loads: dict[str | None, int] = {}
    for c in convs:
        loads[c["assignee_id"]] = loads.get(c["assignee_id"], 0) + 1
    assert all(loads.get(uid, 0) == capacity for uid, _, _ in team), loads
    assert loads.get(None) == 50 - 3 * capacity, loads
