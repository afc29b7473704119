"""Through a real ``hub serve``: a WhatsApp edit and revoke reach the app as ``message.updated``
with the edit history and the tombstone, a message the business sent from the WhatsApp Business
app appears as outbound, and a delivery with one message the database cannot hold keeps the other."""

from __future__ import annotations

import time
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
    create_wa_channel,
    phone,
    wa_contact,
    wa_text,
    wa_value,
    wa_webhook,
    wait_message_event,
    wamid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(api: Api, graph: ThreadedFakeGraph) -> WaChannel:
    return await create_wa_channel(api, graph.base_url, name="Changes")


def _stream(http: aiohttp.ClientSession, hub: HubProcess, after: int) -> EventStream:
    assert hub.token
    return EventStream(http, hub.base_url, hub.token, after)


def _customer(ch: WaChannel, wa_id: str, *messages: dict[str, Any]) -> dict[str, Any]:
    return wa_webhook([wa_value(ch.phone_number_id, contacts=[wa_contact(wa_id)], messages=messages)])


def _echoes(ch: WaChannel, *echoes: dict[str, Any]) -> dict[str, Any]:
    value = wa_value(ch.phone_number_id)
    value["message_echoes"] = list(echoes)
    payload = wa_webhook([value])
    payload["entry"][0]["changes"][0]["field"] = "smb_message_echoes"
    return payload


async def test_an_edit_and_a_revoke_reach_the_app_as_message_updated(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, channel: WaChannel
) -> None:
    wa_id, ts = phone(), int(time.time()) - 60
    original = wa_text(wa_id, "I'd like 2 pizzas", ts=ts)
    edit_id, revoke_id = wamid(), wamid()
    edit = {
        "from": wa_id,
        "id": edit_id,
        "timestamp": str(ts + 10),
        "type": "edit",
        "edit": {
            "original_message_id": original["id"],
            "message": {"type": "text", "text": {"body": "I'd like 3 pizzas"}},
        },
    }
    revoke = {
        "from": wa_id,
        "id": revoke_id,
        "timestamp": str(ts + 20),
        "type": "revoke",
        "revoke": {"original_message_id": original["id"]},
    }
    async with _stream(http, shared_hub, await api.last_seq()) as stream:
        await stream.wait_live()
        assert (
            await api.webhook(channel.id, _customer(channel, wa_id, original), channel.app_secret)
        ).status == 200
        created = await stream.wait_event("message.created", external_id=original["id"])
        for _ in range(2):  # Meta retries: the copy changes nothing
            assert (
                await api.webhook(channel.id, _customer(channel, wa_id, edit), channel.app_secret)
            ).status == 200
        edited = await stream.wait_event("message.updated", external_id=original["id"])
        assert (
            await api.webhook(channel.id, _customer(channel, wa_id, revoke), channel.app_secret)
        ).status == 200
        deleted = await stream.wait(
            lambda s: [
                e for e in s.find("message.updated", external_id=original["id"]) if e["data"]["deleted_at"]
            ],
            what="the tombstone",
        )
    message_id = created["data"]["id"]
    assert edited["data"]["id"] == message_id
    assert edited["data"]["text"] == "I'd like 3 pizzas"
    assert [r["text"] for r in edited["data"]["edits"]] == ["I'd like 2 pizzas"]
    assert edited["data"]["edited_at"] is not None
    tomb = deleted[0]["data"]
    assert tomb["id"] == message_id and tomb["text"] is None and tomb["edits"] == []
    stored = await api.message(message_id)
    assert stored["deleted_at"] == tomb["deleted_at"] and stored["text"] is None
    updates = [e for e in await api.events(created["seq"]) if e["data"].get("external_id") == original["id"]]
    assert [e["type"] for e in updates] == ["message.updated", "message.updated"], "one update per change"


async def test_a_message_sent_from_the_business_app_is_outbound(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, channel: WaChannel
) -> None:
    wa_id, ts = phone(), int(time.time()) - 30
    question = wa_text(wa_id, "Are you open on Sunday?", ts=ts)
    echo = {
        "from": "15550001111",
        "to": "+" + wa_id,
        "id": wamid(),
        "timestamp": str(ts + 5),
        "type": "text",
        "text": {"body": "Yes, 10 to 4."},
    }
    async with _stream(http, shared_hub, await api.last_seq()) as stream:
        await stream.wait_live()
        assert (
            await api.webhook(channel.id, _customer(channel, wa_id, question), channel.app_secret)
        ).status == 200
        asked = await stream.wait_event("message.created", external_id=question["id"])
        assert (await api.webhook(channel.id, _echoes(channel, echo), channel.app_secret)).status == 200
        answered = await stream.wait_event("message.created", external_id=echo["id"])
    reply = answered["data"]
    assert reply["direction"] == "outbound"
    assert reply["status"] == "sent"
    assert reply["sender"]["type"] == "channel", "never shown as the customer's message"
    assert reply["text"] == "Yes, 10 to 4."
    assert answered["conversation_id"] == asked["conversation_id"], "the customer's own conversation"
    conversation = await api.ok("GET", f"/api/v1/conversations/{asked['conversation_id']}")
    assert conversation["unread_count"] == 1, "the business's own message is not unread"
    assert conversation["last_inbound_at"] == asked["data"]["created_at"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_delivery_with_one_bad_message_keeps_the_good_one(
    hub_factory: Any, http: aiohttp.ClientSession, graph: ThreadedFakeGraph, backend: str
) -> None:
    hub = await hub_factory(backend)
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Poison")
    wa_id = phone()
    bad = wa_text(wa_id, "bad \ud83d emoji")  # a lone surrogate: valid JSON, no valid UTF-8
    good = wa_text(wa_id, "good one 😀")
    resp = await api.webhook(ch.id, _customer(ch, wa_id, bad, good), ch.app_secret)
    assert resp.status == 200, resp
    kept = await wait_message_event(api, 0, good["id"], within=30)
    repaired = await wait_message_event(api, 0, bad["id"], within=30)
    assert kept["data"]["text"] == "good one 😀"
    assert repaired["data"]["text"] == "bad \ufffd emoji"
    assert "Traceback" not in hub.log_text()
