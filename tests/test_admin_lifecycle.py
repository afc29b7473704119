"""Admin actions that touch work in progress: assignments and deleting a channel with a queue."""

from __future__ import annotations

from typing import Any

from hub.appkeys import OUTBOX
from tests.conftest import Hub, eventually


async def _conversation(hub: Hub) -> dict[str, Any]:
    await hub.webhook({"type": "message", "id": "a1", "from": "fred", "text": "hi", "ts": 1_700_000_000})
    convs: list[dict[str, Any]] = await eventually(hub.conversations)
    return convs[0]


async def test_assignee_must_be_a_user(lite_hub: Hub) -> None:
    conv = await _conversation(lite_hub)
    url = f"/api/v1/conversations/{conv['id']}"
    bad = await lite_hub.client.patch(url, json={"assignee_id": "usr_nobody"}, headers=lite_hub.agent)
    assert bad.status == 422
    assert (await bad.json())["error"]["details"] == [{"field": "assignee_id", "message": "no such user"}]
    me = await (await lite_hub.client.get("/api/v1/me", headers=lite_hub.agent)).json()
    ok = await lite_hub.client.patch(url, json={"assignee_id": me["id"]}, headers=lite_hub.agent)
    assert ok.status == 200
    assert (await ok.json())["assignee_id"] == me["id"]
    cleared = await lite_hub.client.patch(url, json={"assignee_id": None}, headers=lite_hub.agent)
    assert (await cleared.json())["assignee_id"] is None


async def test_deleting_a_channel_fails_its_queue_with_a_reason(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await _conversation(hub)
    await hub.client.app[OUTBOX].stop()
    resp = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": "later"},
        headers={**hub.agent, "Idempotency-Key": "d1"},
    )
    mid = (await resp.json())["id"]
    assert (await hub.client.delete("/api/v1/admin/channels/fk", headers=hub.admin)).status == 204
    # Nobody serves a deleted channel any more: an administrator reads what became of its queue.
    msg = await (await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.admin)).json()
    assert msg["status"] == "failed"
    assert msg["error"]["class"] == "cancelled"
    assert msg["error"]["message"] == "the channel was deleted"
    events = await hub.events(headers=hub.admin)
    updates = [e for e in events if e["type"] == "message.updated" and e["data"]["id"] == mid]
    assert updates[-1]["data"]["status"] == "failed"
    assert hub.fake.sent == []
