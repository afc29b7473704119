"""A status never moves backwards, even when receipts for one message are applied at once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema
from hub.appkeys import CHANNELS
from hub.inbound import apply_events
from hub.models import STATUS_RANK, MessageStatus, StatusUpdate, utcnow
from hub.records import apply_status
from tests.conftest import Hub, eventually
from tests.test_pipeline import _conversation_with_sent_message, msg

M = schema.messages


async def _row(hub: Hub, mid: str) -> dict[str, Any]:
    async with hub.store.db.read() as conn:
        return dict((await conn.execute(sa.select(M).where(M.c.id == mid))).mappings().one())


async def test_a_stale_read_cannot_move_a_status_back(hub: Hub) -> None:
    """Two writers read the message as ``sent``; the one that commits last must not undo ``read``."""
    mid, _ = await _conversation_with_sent_message(hub)
    stale = await _row(hub, mid)
    assert stale["status"] == "sent"
    at = stale["updated_at"]
    async with hub.store.tx() as tx:
        assert await apply_status(tx, stale, MessageStatus.READ, at) is not None
    async with hub.store.tx() as tx:
        assert await apply_status(tx, stale, MessageStatus.DELIVERED, at) is None
    row = await _row(hub, mid)
    assert row["status"] == "read"
    assert set(row["status_at"]) >= {"sent", "delivered", "read"}


async def _sent_messages(hub: Hub, n: int) -> list[tuple[str, str]]:
    """``n`` outbound messages the fake provider accepted: (hub id, provider id) each."""
    await hub.webhook(msg("in-1"))
    conv = (await eventually(hub.conversations))[0]
    ids = []
    for i in range(n):
        resp = await hub.client.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": f"reply {i}"},
            headers={**hub.agent, "Idempotency-Key": f"race-{i}"},
        )
        assert resp.status == 202, await resp.text()
        ids.append((await resp.json())["id"])

    async def all_sent() -> list[tuple[str, str]] | None:
        rows = [await _row(hub, mid) for mid in ids]
        return (
            [(r["id"], r["external_id"]) for r in rows] if all(r["status"] == "sent" for r in rows) else None
        )

    found: list[tuple[str, str]] = await eventually(all_sent, within=30)
    return found


async def test_concurrent_receipts_on_postgresql_never_go_backwards(hub: Hub) -> None:
    if hub.store.db.is_sqlite:
        pytest.skip("SQLite has one writer at a time; the race needs PostgreSQL's concurrent writers")
    fake = hub.client.app[CHANNELS].get("fk")
    assert fake is not None
    messages = await _sent_messages(hub, 6)
    rng = random.Random(7)
    start = asyncio.Event()
    at = utcnow()

    async def one(ext: str, status: MessageStatus) -> None:
        update = StatusUpdate(external_id=ext, status=status, timestamp=at)
        await start.wait()
        async with hub.store.tx() as tx:
            await apply_events(tx, fake, [update])

    tasks = []
    for _, ext in messages:
        receipts = [MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED] * 5
        rng.shuffle(receipts)
        tasks += [asyncio.create_task(one(ext, s)) for s in receipts]
    await asyncio.sleep(0.05)
    start.set()  # 90 receipts, 15 per message, on as many connections at once
    await asyncio.gather(*tasks)
    events = await hub.events()
    for mid, _ in messages:
        row = await _row(hub, mid)
        assert row["status"] == "played", f"{mid} ended {row['status']}"
        seen = [
            e["data"]["status"] for e in events if e["type"] == "message.updated" and e["data"]["id"] == mid
        ]
        ranks = [STATUS_RANK[MessageStatus(s)] for s in seen]
        assert ranks == sorted(ranks), f"the app saw {mid} go {seen}"
