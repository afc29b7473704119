"""The WhatsApp channel inside a whole in-process hub (the kit's ``make_hub_client``), against
FakeGraph: inbound media is fetched, verified, stored and downloadable; an agent's read is sent."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from wa_support import ACCESS_TOKEN, APP_SECRET, PNID, VERIFY_TOKEN, WA, sign

from hub.testing.fake_graph import FakeGraph
from hub.testing.pytest_plugin import HubTestApp


def image_webhook(media_id: str, data: bytes, message_id: str = "wamid.HUBIMG1") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": WA}],
        "messages": [
            {
                "from": WA,
                "id": message_id,
                "timestamp": str(int(time.time())),
                "type": "image",
                "image": {
                    "caption": "the part",
                    "mime_type": "image/png",
                    "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                    "id": media_id,
                },
            }
        ],
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(doc).encode()


async def setup(make_hub_client: Any, graph: FakeGraph) -> HubTestApp:
    hub: HubTestApp = await make_hub_client()
    await hub.create_channel(
        "whatsapp",
        {
            "phone_number_id": PNID,
            "access_token": ACCESS_TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": graph.base_url,
        },
        "wa",
    )
    return hub


async def test_inbound_image_is_fetched_verified_and_downloadable(make_hub_client: Any) -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    async with FakeGraph(access_token=ACCESS_TOKEN) as graph:
        media_id = graph.add_media(data, "image/png")
        hub = await setup(make_hub_client, graph)
        body = image_webhook(media_id, data)
        resp = await hub.post_webhook("wa", body, {"X-Hub-Signature-256": sign(body)})
        assert resp.status == 200
        created = await hub.wait_for_event("message.created")
        att = created["data"]["attachments"][0]
        assert att["state"] == "pending" and att["external_id"] == media_id
        assert att["caption"] == "the part"

        def ready(ev: dict[str, Any]) -> bool:
            return ev["data"]["attachments"][0]["state"] == "ready"

        updated = await hub.wait_for_event("message.updated", ready, within=10)
        url = updated["data"]["attachments"][0]["url"]
        assert url == f"http://hub.test/api/v1/attachments/{created['data']['id']}/0"
        # Both steps of Meta's download carry the bearer token and a User-Agent.
        steps = [r for r in graph.requests if r.method == "GET"]
        assert len(steps) >= 2
        for r in steps[:2]:
            assert r.header("Authorization") == f"Bearer {ACCESS_TOKEN}"
            assert r.header("User-Agent")
        path = url.removeprefix("http://hub.test")
        anonymous = await hub.client.get(path)
        assert anonymous.status == 401
        download = await hub.client.get(path, headers=hub.admin_headers)
        assert download.status == 200
        assert await download.read() == data


async def test_a_corrupt_download_never_marks_the_attachment_ready(make_hub_client: Any) -> None:
    data = b"real bytes" * 100
    async with FakeGraph(access_token=ACCESS_TOKEN) as graph:
        media_id = graph.add_media(b"tampered" * 100, "image/png", sha256=hashlib.sha256(data).hexdigest())
        hub = await setup(make_hub_client, graph)
        body = image_webhook(media_id, data, "wamid.HUBIMG2")
        assert (await hub.post_webhook("wa", body, {"X-Hub-Signature-256": sign(body)})).status == 200
        created = await hub.wait_for_event("message.created")
        for _ in range(100):
            if len([r for r in graph.requests if r.method == "GET"]) >= 2:
                break
            import asyncio

            await asyncio.sleep(0.02)
        msg = await (
            await hub.client.get(f"/api/v1/messages/{created['data']['id']}", headers=hub.admin_headers)
        ).json()
        assert msg["attachments"][0]["state"] == "pending"  # kept for a retry, message intact
        assert msg["text"] is None and msg["kind"] == "image"


async def test_agent_read_marks_the_last_inbound_message_read(make_hub_client: Any) -> None:
    async with FakeGraph(access_token=ACCESS_TOKEN) as graph:
        hub = await setup(make_hub_client, graph)
        data = b"x" * 10
        body = image_webhook(graph.add_media(data, "image/png"), data, "wamid.TOREAD")
        await hub.post_webhook("wa", body, {"X-Hub-Signature-256": sign(body)})
        created = await hub.wait_for_event("message.created")
        resp = await hub.client.post(
            f"/api/v1/conversations/{created['conversation_id']}/read", headers=hub.admin_headers
        )
        assert resp.status == 200
        assert (await resp.json())["unread_count"] == 0
        reads = [
            r for r in graph.requests_to(f"{PNID}/messages", "POST") if (r.json or {}).get("status") == "read"
        ]
        assert len(reads) == 1
        assert reads[0].json["message_id"] == "wamid.TOREAD"
        assert reads[0].json["messaging_product"] == "whatsapp"
