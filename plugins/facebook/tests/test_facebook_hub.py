"""The Messenger channel inside a whole in-process hub (the kit's ``make_hub_client``) against
FakeGraph: replies go out with the right ``messaging_type``; echoes never duplicate a reply, even
when they beat the Send API's answer; watermarks move every outbound message up to them; the
profile name is fetched once and never holds a message back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fb_hooks import echo, envelope, from_customer, now_ms, signed
from fb_support import APP_SECRET, IG_ID, IGSID, PAGE_ID, PAGE_TOKEN, PSID, VERIFY_TOKEN

from hub.testing.fake_graph import FakeGraph
from hub.testing.pytest_plugin import HubTestApp

DAY_MS = 24 * 3600 * 1000


async def setup(make_hub_client: Any, graph: FakeGraph) -> HubTestApp:
    hub: HubTestApp = await make_hub_client()
    await hub.create_channel(
        "messenger",
        {
            "page_id": PAGE_ID,
            "page_access_token": PAGE_TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": graph.base_url,
            "request_timeout": 10,
        },
        "fb",
    )
    return hub


async def inbound(hub: HubTestApp, mid: str, text: str, ms: int | None = None, psid: str = PSID) -> dict:
    body = envelope(from_customer("message", {"mid": mid, "text": text}, ms, psid))
    assert (await hub.post_webhook("fb", body, signed(body))).status == 200
    return await hub.wait_for_event("message.created", lambda e: e["data"]["external_id"] == mid)


async def post(hub: HubTestApp, *events: dict[str, Any]) -> None:
    body = envelope(*events)
    resp = await hub.post_webhook("fb", body, signed(body))
    assert resp.status == 200, await resp.text()


async def reply(hub: HubTestApp, conversation_id: str, text: str, key: str) -> dict[str, Any]:
    resp = await hub.client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": text},
        headers={**hub.admin_headers, "Idempotency-Key": key},
    )
    assert resp.status == 202, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def message(hub: HubTestApp, message_id: str) -> dict[str, Any]:
    resp = await hub.client.get(f"/api/v1/messages/{message_id}", headers=hub.admin_headers)
    data: dict[str, Any] = await resp.json()
    return data


async def history(hub: HubTestApp, conversation_id: str) -> list[dict[str, Any]]:
    resp = await hub.client.get(
        f"/api/v1/conversations/{conversation_id}/messages", headers=hub.admin_headers
    )
    data = await resp.json()
    items: list[dict[str, Any]] = data["messages"]
    return items


async def until(predicate: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_reply_echo_after_the_answer_is_one_message(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        created = await inbound(hub, "m_IN1", "Hello?")
        conv = created["conversation_id"]
        sent = await reply(hub, conv, "Hi, how can we help?", "k1")
        done = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == sent["id"] and e["data"]["status"] == "sent"
        )
        mid = done["data"]["external_id"]
        [request] = graph.requests_to("me/messages", "POST")
        assert request.json["messaging_type"] == "RESPONSE"
        assert request.json["message"] == {"text": "Hi, how can we help?", "metadata": f"hub:{sent['id']}"}
        await post(hub, echo(mid, "Hi, how can we help?", now_ms(), f"hub:{sent['id']}"))
        await post(hub, echo(mid, "Hi, how can we help?", now_ms(), f"hub:{sent['id']}"))  # redelivered
        await post(hub, from_customer("message", {"mid": "m_IN2", "text": "thanks"}))
        await hub.wait_for_event("message.created", lambda e: e["data"]["external_id"] == "m_IN2")
        texts = [(m["direction"], m["text"]) for m in await history(hub, conv)]
        assert sorted(texts) == sorted(
            [("inbound", "Hello?"), ("outbound", "Hi, how can we help?"), ("inbound", "thanks")]
        )


async def test_an_echo_that_beats_the_answer_is_matched_and_receipts_are_kept(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        conv = (await inbound(hub, "m_IN1", "Hello?"))["conversation_id"]
        # Meta answers the send late; meanwhile its echo and a delivery naming the mid arrive.
        graph.script("me/messages", 200, {"recipient_id": PSID, "message_id": "m_EARLY"}, delay=1.5)
        sent = await reply(hub, conv, "On our way", "k1")
        await until(lambda: _has_request(graph))
        await post(hub, from_customer("delivery", {"mids": ["m_EARLY"], "watermark": now_ms()}))
        await post(hub, echo("m_EARLY", "On our way", now_ms(), f"hub:{sent['id']}"))
        matched = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == sent["id"] and e["data"]["status"] == "delivered"
        )
        assert matched["data"]["external_id"] == "m_EARLY"
        await asyncio.sleep(2.0)  # the Send API answers now; the outbox records it
        final = await message(hub, sent["id"])
        assert final["status"] == "delivered"  # never set back to "sent"
        assert final["external_id"] == "m_EARLY"
        outbound = [m for m in await history(hub, conv) if m["direction"] == "outbound"]
        assert [m["id"] for m in outbound] == [sent["id"]]
        assert len(graph.requests_to("me/messages", "POST")) == 1


async def test_a_delivery_that_beats_the_answer_is_applied_when_it_comes(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        conv = (await inbound(hub, "m_IN1", "Hello?"))["conversation_id"]
        graph.script("me/messages", 200, {"recipient_id": PSID, "message_id": "m_LATE"}, delay=1.0)
        sent = await reply(hub, conv, "Checking", "k1")
        await until(lambda: _has_request(graph))
        await post(hub, from_customer("delivery", {"mids": ["m_LATE"], "watermark": now_ms()}))
        done = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == sent["id"] and e["data"]["status"] == "delivered"
        )
        assert done["data"]["external_id"] == "m_LATE"


async def _has_request(graph: FakeGraph) -> bool:
    return bool(graph.requests_to("me/messages", "POST"))


async def test_echo_from_another_tool_is_outbound_and_never_customer_text(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        conv = (await inbound(hub, "m_IN1", "Hello?"))["conversation_id"]
        await post(hub, echo("m_INBOX1", "Answered from the Page inbox", now_ms()))
        created = await hub.wait_for_event(
            "message.created", lambda e: e["data"]["external_id"] == "m_INBOX1"
        )
        assert created["conversation_id"] == conv
        assert created["data"]["direction"] == "outbound"
        assert created["data"]["sender"]["type"] == "channel"
        assert created["data"]["status"] == "sent"


async def test_watermarks_move_every_outbound_message_up_to_them(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        t0 = now_ms() - 60_000
        await inbound(hub, "m_IN1", "Hello?", t0)
        await inbound(hub, "m_OTHER_IN", "Me too", t0, psid="7126554378991234")
        await post(
            hub,
            echo("m_A", "one", t0 + 1000),
            echo("m_B", "two", t0 + 2000),
            echo("m_C", "three", t0 + 3000),
            echo("m_X", "to someone else", t0 + 1500, psid="7126554378991234"),
        )
        for mid in ("m_A", "m_B", "m_C", "m_X"):
            await hub.wait_for_event("message.created", lambda e, m=mid: e["data"]["external_id"] == m)
        await post(hub, from_customer("delivery", {"watermark": t0 + 2000}, t0 + 2500))
        await post(hub, from_customer("read", {"watermark": t0 + 1000}, t0 + 2600))

        async def statuses() -> dict[str, str]:
            events = await hub.events()
            last: dict[str, str] = {}
            for ev in events:
                if ev["type"].startswith("message.") and ev["data"].get("external_id"):
                    last[ev["data"]["external_id"]] = ev["data"]["status"]
            return last

        async def settled() -> bool:
            got = await statuses()
            return got.get("m_A") == "read" and got.get("m_B") == "delivered"

        await until(settled)
        got = await statuses()
        assert got["m_C"] == "sent"  # after the watermark
        assert got["m_X"] == "sent"  # another customer's message


async def test_profile_name_fetched_once_and_a_failure_blocks_nothing(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        graph.respond("GET", PSID, 200, {"first_name": "Kerry", "last_name": "Fisher", "id": PSID})
        graph.fail("7126554378991234", 400, code=100, message="Unsupported get request", times=5)
        hub = await setup(make_hub_client, graph)
        first = await inbound(hub, "m_IN1", "Hello?")
        named = await hub.wait_for_event(
            "conversation.updated", lambda e: e["data"]["contact"]["name"] == "Kerry Fisher"
        )
        assert named["conversation_id"] == first["conversation_id"]
        await inbound(hub, "m_IN2", "Still there?")
        other = await inbound(hub, "m_OTHER1", "Hi", psid="7126554378991234")
        assert other["data"]["text"] == "Hi"
        await asyncio.sleep(0.3)
        assert len(graph.requests_to(PSID, "GET")) == 1
        assert len(graph.requests_to("7126554378991234", "GET")) == 1


async def test_reply_window_chooses_the_tag_then_refuses(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        two_days = await inbound(hub, "m_OLD2", "hello from Tuesday", now_ms() - 2 * DAY_MS)
        sent = await reply(hub, two_days["conversation_id"], "Sorry for the wait", "k2")
        await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == sent["id"] and e["data"]["status"] == "sent"
        )
        [request] = graph.requests_to("me/messages", "POST")
        assert (request.json["messaging_type"], request.json["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
        old = await inbound(hub, "m_OLD8", "hello from last month", now_ms() - 8 * DAY_MS, psid="555")
        refused = await reply(hub, old["conversation_id"], "Anyone?", "k8")
        failed = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == refused["id"] and e["data"]["status"] == "failed"
        )
        assert failed["data"]["error"]["class"] == "needs_template"
        assert failed["data"]["error"]["title"] == "Reply window closed"
        assert len(graph.requests_to("me/messages", "POST")) == 1


async def test_an_edit_and_an_unsend_update_the_message_once(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        created = await inbound(hub, "m_EDITME", "Is the shop open?")
        edit = {"mid": "m_EDITME", "text": "Is the shop open today?", "num_edit": 1}
        for _ in range(2):  # a redelivered edit has one effect
            await post(hub, from_customer("message_edit", edit))
        edited = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == created["data"]["id"] and bool(e["data"]["edits"])
        )
        assert edited["data"]["text"] == "Is the shop open today?"
        assert [e.get("text") for e in edited["data"]["edits"]] == ["Is the shop open?"]
        await post(hub, from_customer("message", {"mid": "m_EDITME", "is_deleted": True}))
        gone = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == created["data"]["id"] and e["data"]["deleted_at"]
        )
        assert gone["conversation_id"] == created["conversation_id"]
        final = await message(hub, created["data"]["id"])
        assert final["deleted_at"] and final["text"] is None and final["edits"] == []  # a tombstone
        conv = await history(hub, created["conversation_id"])
        assert [m["id"] for m in conv] == [created["data"]["id"]]  # neither became a new message


def _ig(*events: dict[str, Any]) -> bytes:
    doc = {"object": "instagram", "entry": [{"id": IG_ID, "time": now_ms(), "messaging": list(events)}]}
    return json.dumps(doc).encode()


async def test_instagram_echo_without_client_id_matches_the_send_in_flight(make_hub_client: Any) -> None:
    """Instagram carries no metadata back: the echo is matched to the one text being sent to that
    customer, so it is not a second message, even when it beats the Send API's answer."""
    async with FakeGraph(access_token=PAGE_TOKEN) as graph:
        hub: HubTestApp = await make_hub_client()
        settings = {
            "page_id": PAGE_ID,
            "instagram_account_id": IG_ID,
            "page_access_token": PAGE_TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": graph.base_url,
        }
        await hub.create_channel("instagram", settings, "ig")
        customer = {"sender": {"id": IGSID}, "recipient": {"id": IG_ID}, "timestamp": now_ms()}
        body = _ig({**customer, "message": {"mid": "aWdf_IN1", "text": "hi"}})
        assert (await hub.post_webhook("ig", body, signed(body))).status == 200
        created = await hub.wait_for_event(
            "message.created", lambda e: e["data"]["external_id"] == "aWdf_IN1"
        )
        conv = created["conversation_id"]
        graph.script("me/messages", 200, {"recipient_id": IGSID, "message_id": "aWdf_EARLY"}, delay=1.5)
        sent = await reply(hub, conv, "Hello from the shop", "k1")
        await until(lambda: _has_request(graph))
        echo_event = {
            "sender": {"id": IG_ID},
            "recipient": {"id": IGSID},
            "timestamp": now_ms(),
            "message": {"mid": "aWdf_EARLY", "text": "Hello from the shop", "is_echo": True},
        }
        body = _ig(echo_event)
        assert (await hub.post_webhook("ig", body, signed(body))).status == 200
        matched = await hub.wait_for_event(
            "message.updated", lambda e: e["data"]["id"] == sent["id"] and e["data"]["status"] == "sent"
        )
        assert matched["data"]["external_id"] == "aWdf_EARLY"
        await asyncio.sleep(2.0)  # the answer comes and is recorded
        outbound = [m for m in await history(hub, conv) if m["direction"] == "outbound"]
        assert [(m["id"], m["external_id"]) for m in outbound] == [(sent["id"], "aWdf_EARLY")]
