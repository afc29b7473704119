"""Outbound sends end to end against FakeGraph: idempotency, receipts out of order, throttling,
a revoked token and the 24-hour reply window (scenarios 8, 9, 10 and 12)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    assert_error,
    create_wa_channel,
    inbound_conversation,
    phone,
    settle,
    unique,
    wa_status,
    wa_status_webhook,
    wait_status,
    wait_until,
    wamid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# Longer than the outbox's idle poll (1 s): a call that was going to happen has happened by then.
QUIET = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(http: aiohttp.ClientSession, shared_hub: HubProcess) -> Api:
    """The app's client, logged in with email and password as the mobile app does."""
    anon = Api(http, shared_hub.base_url)
    login = await anon.ok(
        "POST", "/api/v1/auth/login", json_body={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert login["token_type"] == "bearer" and login["token"], login
    assert login["token"] != shared_hub.token
    me = await Api(http, shared_hub.base_url, login["token"]).ok("GET", "/api/v1/me")
    assert me["email"] == ADMIN_EMAIL
    return Api(http, shared_hub.base_url, login["token"])


async def _channel(api: Api, graph: ThreadedFakeGraph, name: str) -> WaChannel:
    return await create_wa_channel(api, graph.base_url, name=name)


async def test_send_is_idempotent_and_receipts_only_move_forward(
    api: Api, agent: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await _channel(api, graph, "Outbound")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)
    key = unique("idem-")
    path = f"/api/v1/conversations/{conv_id}/messages"
    start = await api.last_seq()

    assert shared_hub.token
    async with EventStream(http, shared_hub.base_url, shared_hub.token, start) as stream:
        resp = await agent.post(path, {"text": "Your order ships today"}, headers={"Idempotency-Key": key})
        assert resp.status == 202, resp
        queued = resp.json
        assert queued["status"] == "queued"
        assert queued["direction"] == "outbound"
        assert queued["kind"] == "text" and queued["text"] == "Your order ships today"
        assert queued["conversation_id"] == conv_id and queued["channel_id"] == ch.id
        mid = queued["id"]

        created = await stream.wait_event("message.created", id=mid)
        assert created["data"]["status"] == "queued"
        sent_ev = await stream.wait_event("message.updated", id=mid, status="sent")
        external_id = sent_ev["data"]["external_id"]
        assert external_id and external_id.startswith("wamid."), sent_ev

        calls = graph.sends(ch.phone_number_id)
        assert len(calls) == 1, calls
        call = calls[0]
        assert call.path == f"/{graph.version}/{ch.phone_number_id}/messages"
        assert call.header("authorization") == f"Bearer {ch.access_token}"
        assert call.json["messaging_product"] == "whatsapp"
        assert call.json["to"] == wa_id
        assert call.json["type"] == "text"
        assert call.json["text"]["body"] == "Your order ships today"

        # The same key again (an app retry): the same message, no second provider call.
        again = await agent.post(path, {"text": "Your order ships today"}, headers={"Idempotency-Key": key})
        assert again.status in (200, 202), again
        assert again.json["id"] == mid
        # The same key with another body: refused.
        other = await agent.post(path, {"text": "Something else"}, headers={"Idempotency-Key": key})
        assert_error(other, 422)
        await asyncio.sleep(QUIET)
        assert len(graph.sends(ch.phone_number_id)) == 1
        assert [m["id"] for m in await api.messages(conv_id) if m["direction"] == "outbound"] == [mid]

        # Receipts out of order and duplicated: read (twice) before delivered (twice), then a late sent.
        now = int(time.time())
        for st in ("read", "read", "delivered", "delivered", "sent"):
            body = wa_status_webhook(ch.phone_number_id, wa_status(external_id, st, wa_id, ts=now))
            assert (await api.webhook(ch.id, body, ch.app_secret)).status == 200
        await settle(api, ch, start)
        await stream.wait_event("message.updated", id=mid, status="read")
        await asyncio.sleep(0.3)
        updates = [e["data"]["status"] for e in stream.find("message.updated", id=mid)]

    final = await api.message(mid)
    assert final["status"] == "read", final
    assert {"queued", "sent", "delivered", "read"} <= set(final["status_at"]), final["status_at"]
    assert final["external_id"] == external_id
    # The app saw the status move forward only: sent, then read, and nothing after read.
    assert updates == ["sent", "read"], updates


async def test_throttled_send_is_retried_until_sent(api: Api, agent: Api, graph: ThreadedFakeGraph) -> None:
    ch = await _channel(api, graph, "Throttled")
    conv_id = await inbound_conversation(api, ch, phone())
    graph.fail(
        f"{ch.phone_number_id}/messages",
        400,
        code=130429,
        message="(#130429) Rate limit hit",
        details="Cloud API message throughput has been reached.",
        times=2,
    )
    msg = await agent.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "throttled twice"},
        headers={"Idempotency-Key": unique()},
    )
    sent = await wait_status(api, msg["id"], "sent", within=30)
    calls = graph.sends(ch.phone_number_id)
    assert len(calls) == 3, calls
    assert all(c.json["text"]["body"] == "throttled twice" for c in calls)
    assert sent["error"] is None
    await asyncio.sleep(1.0)
    assert len(graph.sends(ch.phone_number_id)) == 3
    health = {c["id"]: c for c in await api.channels()}[ch.id]["health"]
    assert health["state"] == "ok", health


async def test_revoked_token_pauses_sending_until_an_admin_fixes_it(
    api: Api, agent: Api, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await _channel(api, graph, "Revoked")
    conv_id = await inbound_conversation(api, ch, phone())
    graph.fail(
        f"{ch.phone_number_id}/messages",
        401,
        code=190,
        subcode=463,
        # Graph sometimes echoes what it was sent; the hub must not pass the token on.
        message=f"Error validating access token: Session has expired. Token: {ch.access_token}",
    )
    msg = await agent.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "held until the token is fixed"},
        headers={"Idempotency-Key": unique()},
    )

    async def auth_failed() -> dict[str, object] | None:
        mine = {c["id"]: c for c in await api.channels()}[ch.id]
        return mine if mine["health"]["state"] == "auth_failed" else None

    listed = await wait_until(auth_failed, within=15, what="health auth_failed")
    assert listed["health"]["action"], listed
    assert listed["sending_paused"] is True, listed
    # Sent while paused: accepted and queued, not attempted.
    second = await agent.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "queued while paused"},
        headers={"Idempotency-Key": unique()},
    )
    await asyncio.sleep(QUIET)
    assert len(graph.sends(ch.phone_number_id)) == 1, "the hub called again with a revoked token"
    assert (await api.message(msg["id"]))["status"] == "queued"
    assert (await api.message(second["id"]))["status"] == "queued"

    new_token = "EAAGnew" + unique() + "PLANTEDTOKEN"
    patched = await api.ok(
        "PATCH", f"/api/v1/admin/channels/{ch.id}", json_body={"settings": {"access_token": new_token}}
    )
    assert patched["settings"]["access_token"] == "********"
    sent = await wait_status(api, msg["id"], "sent", within=20)
    await wait_status(api, second["id"], "sent", within=20)
    calls = graph.sends(ch.phone_number_id)
    assert len(calls) == 3, calls
    assert all(c.header("authorization") == f"Bearer {new_token}" for c in calls[1:])
    assert sorted(c.json["text"]["body"] for c in calls[1:]) == [
        "held until the token is fixed",
        "queued while paused",
    ]
    assert sent["external_id"]

    async def healthy() -> bool:
        mine = {c["id"]: c for c in await api.channels()}[ch.id]
        return bool(mine["health"]["state"] == "ok")

    await wait_until(healthy, within=10, what="health back to ok")
    await api.get("/api/v1/events?after=0&limit=500")
    await api.get(f"/api/v1/admin/channels/{ch.id}")
    for secret in (ch.access_token, new_token, ch.app_secret):
        assert not [b for b in api.bodies + agent.bodies if secret in b], "secret in an API response"
        assert secret not in shared_hub.log_text(), "secret in the hub's log"


async def test_closed_reply_window_needs_a_template(api: Api, agent: Api, graph: ThreadedFakeGraph) -> None:
    ch = await _channel(api, graph, "Window")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id, ts=int(time.time()) - 25 * 3600)
    conv = await api.ok("GET", f"/api/v1/conversations/{conv_id}")
    assert conv["reply_window"]["open"] is False, conv
    assert conv["reply_window"]["outside"] == "template"
    path = f"/api/v1/conversations/{conv_id}/messages"

    text = await agent.ok(
        "POST",
        path,
        expect=202,
        json_body={"text": "free text, too late"},
        headers={"Idempotency-Key": unique()},
    )
    failed = await wait_status(api, text["id"], "failed", within=15)
    assert failed["error"]["class"] == "needs_template", failed
    assert graph.sends(ch.phone_number_id) == []

    template = {"name": "order_update", "language": "en_US", "components": []}
    tpl = await agent.ok(
        "POST", path, expect=202, json_body={"template": template}, headers={"Idempotency-Key": unique()}
    )
    await wait_status(api, tpl["id"], "sent", within=15)
    calls = graph.sends(ch.phone_number_id)
    assert len(calls) == 1, calls
    assert calls[0].json["to"] == wa_id
    assert calls[0].json["type"] == "template"
    assert calls[0].json["template"]["name"] == "order_update"
    assert calls[0].json["template"]["language"] == {"code": "en_US"}
    assert (await api.message(text["id"]))["status"] == "failed"


async def test_a_receipt_that_beats_the_send_answer_is_kept_and_applied(
    api: Api, agent: Api, graph: ThreadedFakeGraph
) -> None:
    """Meta's ``delivered`` webhook can arrive before its answer to the send call: the hub keeps it
    and applies it once it learns the provider id."""
    ch = await _channel(api, graph, "Early receipt")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)
    external_id = wamid()
    answer = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": wa_id, "wa_id": wa_id}],
        "messages": [{"id": external_id}],
    }
    graph.call(graph.graph.script, f"{ch.phone_number_id}/messages", 200, answer, delay=2.5)
    msg = await agent.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "slow answer"},
        headers={"Idempotency-Key": unique()},
    )
    await wait_until(lambda: graph.sends(ch.phone_number_id), within=10, what="the send call")
    body = wa_status_webhook(ch.phone_number_id, wa_status(external_id, "delivered", wa_id))
    assert (await api.webhook(ch.id, body, ch.app_secret)).status == 200
    await settle(api, ch)
    assert (await api.message(msg["id"]))["status"] == "queued"  # the send has not answered yet
    done = await wait_status(api, msg["id"], "delivered", within=15)
    assert done["external_id"] == external_id
    assert {"sent", "delivered"} <= set(done["status_at"])
    assert len(graph.sends(ch.phone_number_id)) == 1


async def test_a_failed_status_is_terminal_and_classified(
    api: Api, agent: Api, graph: ThreadedFakeGraph
) -> None:
    """A ``failed`` status (131047: the 24-hour window closed) fails the message with the class the
    app shows; a late ``delivered`` or ``read`` does not bring it back."""
    ch = await _channel(api, graph, "Failed status")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)
    msg = await agent.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "will fail later"},
        headers={"Idempotency-Key": unique()},
    )
    external_id = (await wait_status(api, msg["id"], "sent"))["external_id"]
    failed = wa_status(external_id, "failed", wa_id)
    failed["errors"] = [
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
        }
    ]
    for st in (failed, wa_status(external_id, "delivered", wa_id), wa_status(external_id, "read", wa_id)):
        body = wa_status_webhook(ch.phone_number_id, st)
        assert (await api.webhook(ch.id, body, ch.app_secret)).status == 200
    await settle(api, ch)
    final = await api.message(msg["id"])
    assert final["status"] == "failed", final
    assert final["error"]["class"] == "needs_template", final["error"]
    assert final["error"]["provider_code"] in ("131047", 131047), final["error"]


async def _queue_texts(agent: Api, conv_id: str, texts: list[str]) -> list[str]:
    ids = []
    for text in texts:
        msg = await agent.ok(
            "POST",
            f"/api/v1/conversations/{conv_id}/messages",
            expect=202,
            json_body={"text": text},
            headers={"Idempotency-Key": unique()},
        )
        ids.append(msg["id"])
    return ids


async def test_a_conversations_sends_reach_the_provider_in_order(
    api: Api, agent: Api, graph: ThreadedFakeGraph
) -> None:
    """The provider fails the first reply for a while (its quick retries too, so it is retried
    later): the replies queued after it wait for it instead of overtaking it, so the customer
    reads them in the order the agent wrote them."""
    ch = await _channel(api, graph, "Ordered")
    conv_id = await inbound_conversation(api, ch, phone())
    graph.fail(
        f"{ch.phone_number_id}/messages", 500, code=2, message="Service temporarily unavailable", times=3
    )
    texts = [f"part {i} of 4" for i in range(4)]
    ids = await _queue_texts(agent, conv_id, texts)
    for mid in ids:
        await wait_status(api, mid, "sent", within=30)
    calls = [texts.index(c.json["text"]["body"]) for c in graph.sends(ch.phone_number_id)]
    assert len(calls) >= 4 + 3 and calls[:4] == [0, 0, 0, 0], calls
    assert calls == sorted(calls), f"a later reply overtook an earlier one: {calls}"


async def test_one_send_in_flight_per_conversation_and_other_conversations_go_on(
    api: Api, agent: Api, graph: ThreadedFakeGraph
) -> None:
    """While a reply's send call is in flight (the provider answers slowly), the next reply of
    that conversation waits for its answer; a reply in another conversation does not wait."""
    ch = await _channel(api, graph, "One at a time")
    slow_conv = await inbound_conversation(api, ch, phone())
    other_conv = await inbound_conversation(api, ch, phone())
    slow = 1.5
    graph.call(
        graph.graph.script,
        f"{ch.phone_number_id}/messages",
        200,
        {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": wamid()}]},
        method="POST",
        delay=slow,
    )
    first, second = await _queue_texts(agent, slow_conv, ["slow first", "then second"])
    await wait_until(lambda: len(graph.sends(ch.phone_number_id)) >= 1, within=10, what="first send")
    [other] = await _queue_texts(agent, other_conv, ["meanwhile elsewhere"])
    for mid in (first, second, other):
        await wait_status(api, mid, "sent", within=30)
    calls = {c.json["text"]["body"]: c.at for c in graph.sends(ch.phone_number_id)}
    assert list(calls) == ["slow first", "meanwhile elsewhere", "then second"], calls
    assert calls["then second"] - calls["slow first"] >= slow - 0.1, (
        "the second reply was sent while the first one's call was still in flight"
    )
