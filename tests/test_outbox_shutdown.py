"""A normal stop lets sends in flight finish instead of cutting them off mid-call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hub.appkeys import OUTBOX
from tests.conftest import Hub, eventually


async def test_stop_waits_for_sends_in_flight(
    make_hub: Callable[..., Awaitable[Hub]], sqlite_url: str
) -> None:
    hub: Hub = await make_hub(sqlite_url)
    await hub.create_channel(latency=0.4)
    await hub.webhook({"type": "message", "id": "in-s", "from": "eve", "text": "hi", "ts": 1_700_000_000})
    conv = (await eventually(hub.conversations))[0]
    resp = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": "bye"},
        headers={**hub.agent, "Idempotency-Key": "s1"},
    )
    mid = (await resp.json())["id"]
    await eventually(lambda: _sending(hub))
    await hub.client.app[OUTBOX].stop()
    data = await (await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)).json()
    assert data["status"] == "sent"
    assert len(hub.fake.sent) == 1


async def _sending(hub: Hub) -> bool:
    await asyncio.sleep(0)
    return len(hub.fake.sent) == 1
