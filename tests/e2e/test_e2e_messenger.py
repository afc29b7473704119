"""Facebook Messenger end to end: a real ``hub serve`` with the ``messenger`` channel, driven over
HTTP and WebSocket as the app and Meta would, against FakeGraph. A customer's message reaches the
app once (duplicates and batches included), the agent's reply goes out as a ``RESPONSE`` carrying
the hub's id, its echo is not a second message, the read watermark moves it to ``read``, and the
customer's name arrives from the profile API."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import aiohttp
import pytest
from e2e_support import Api, EventStream, HubProcess, ThreadedFakeGraph, unique, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def _webhook(page_id: str, *events: dict[str, Any]) -> bytes:
    doc = {
        "object": "page",
        "entry": [{"id": page_id, "time": int(time.time() * 1000), "messaging": list(events)}],
    }
    # As Meta sends it: "/" escaped, non-ASCII as \\u escapes; the signature covers these bytes.
    return json.dumps(doc).replace("/", "\\/").encode()


def _from(psid: str, page_id: str, key: str, body: dict[str, Any], ms: int) -> dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ms, key: body}


async def test_messenger_conversation_end_to_end(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    page_id, psid = unique("9"), str(6_000_000_000_000_000 + secrets.randbelow(10**15))
    app_secret, verify = secrets.token_hex(16) + "planted", unique("verify-")
    token = "EAAPage" + secrets.token_hex(12) + "PLANTED"
    graph.call(graph.graph.respond, "GET", psid, 200, {"first_name": "Ana", "last_name": "Sousa", "id": psid})
    created = await api.ok(
        "POST",
        "/api/v1/admin/channels",
        expect=201,
        json_body={
            "type": "messenger",
            "name": "Page e2e",
            "settings": {
                "page_id": page_id,
                "page_access_token": token,
                "app_secret": app_secret,
                "verify_token": verify,
                "api_base_url": graph.base_url,
            },
        },
    )
    cid = created["id"]
    challenge = await api.get(
        f"/webhooks/{cid}",
        params={"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "0987654321"},
        auth=False,
    )
    assert (challenge.status, challenge.text) == (200, "0987654321")

    after = await api.last_seq()
    assert shared_hub.token
    async with EventStream(http, shared_hub.base_url, shared_hub.token, after) as stream:
        await stream.wait_live()
        t0 = int(time.time() * 1000) - 5_000
        first = _webhook(
            page_id, _from(psid, page_id, "message", {"mid": f"m_{cid}_1", "text": "Olá 👋"}, t0)
        )
        for _ in range(2):  # Meta redelivers: one message
            assert (await api.webhook(cid, first, app_secret)).status == 200
        batch = _webhook(
            page_id,
            _from(psid, page_id, "message", {"mid": f"m_{cid}_2", "text": "second"}, t0 + 1),
            _from(
                psid, page_id, "postback", {"mid": f"m_{cid}_3", "title": "Help", "payload": "HELP"}, t0 + 2
            ),
        )
        assert (await api.webhook(cid, batch, app_secret)).status == 200
        unsigned = await api.webhook(cid, first, None)
        assert unsigned.status == 401

        msg = await stream.wait_event("message.created", external_id=f"m_{cid}_1")
        assert msg["channel_id"] == cid
        data = msg["data"]
        assert (data["direction"], data["kind"], data["text"]) == ("inbound", "text", "Olá 👋")
        assert data["created_at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(t0 / 1000)))
        postback = await stream.wait_event("message.created", external_id=f"m_{cid}_3")
        assert postback["data"]["kind"] == "interactive_reply"
        assert postback["data"]["interactive"] == {"id": "HELP", "title": "Help", "description": None}
        conv = msg["conversation_id"]
        named = await stream.wait(
            lambda s: [
                e for e in s.find("conversation.updated") if e["data"]["contact"].get("name") == "Ana Sousa"
            ],
            what="the profile name",
        )
        assert named[0]["conversation_id"] == conv

        sent = await api.ok(
            "POST",
            f"/api/v1/conversations/{conv}/messages",
            expect=202,
            json_body={"text": "Olá Ana, how can we help?"},
            headers={"Idempotency-Key": unique("k-")},
        )
        done = await stream.wait_event("message.updated", id=sent["id"], status="sent")
        mid = done["data"]["external_id"]
        [request] = graph.call(graph.graph.requests_to, "me/messages", "POST")
        assert request.json["recipient"] == {"id": psid}
        assert request.json["messaging_type"] == "RESPONSE"
        assert request.json["message"]["metadata"] == f"hub:{sent['id']}"
        assert request.header("authorization") == f"Bearer {token}"

        now = int(time.time() * 1000)
        echo = {"mid": mid, "is_echo": True, "app_id": 1, "metadata": f"hub:{sent['id']}", "text": "x"}
        echo_event = {"sender": {"id": page_id}, "recipient": {"id": psid}, "timestamp": now, "message": echo}
        assert (await api.webhook(cid, _webhook(page_id, echo_event), app_secret)).status == 200
        read = _from(psid, page_id, "read", {"watermark": now + 10}, now + 20)
        assert (await api.webhook(cid, _webhook(page_id, read), app_secret)).status == 200
        await stream.wait_event("message.updated", id=sent["id"], status="read")

        async def all_in() -> bool:
            return len(await api.messages(conv)) >= 4

        await wait_until(all_in)
        messages = await api.messages(conv)
        assert sorted(m["external_id"] for m in messages) == sorted(
            [f"m_{cid}_1", f"m_{cid}_2", f"m_{cid}_3", mid]
        )
        created_events = [e for e in stream.find("message.created") if e["conversation_id"] == conv]
        assert len(created_events) == 4  # each message once: no duplicate, no echo copy
