"""Per-conversation order of inbound deliveries, whichever processes apply them.

Every process applies deliveries, each pass claiming its own, and a delivery can wait for its
retry. Neither may let a later message of a conversation be applied before an earlier one: the
processor holds a delivery back while an earlier delivery of one of its contacts is held by
another pass or waiting for its retry, and applies everything else meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import hub.inbound as inbound
from hub import schema
from hub.appkeys import CHANNELS, PROCESSOR
from hub.db import Database
from hub.events import EventBus, Store
from hub.inbound import InboundProcessor, conversation_keys, in_order
from hub.models import ContactRef, InboundMessage, StatusUpdate, utcnow
from tests.conftest import Hub
from tests.test_pipeline import msg

R = schema.raw_events
E = schema.events


@pytest.fixture
async def pg_hub(make_hub: Callable[..., Awaitable[Hub]], pg_session_url: str | None) -> AsyncIterator[Hub]:
    if pg_session_url is None:
        pytest.skip("PostgreSQL not reachable (set HUB_TEST_POSTGRES_URL): this is about PostgreSQL")
    from tests.conftest import _reset_postgres

    await _reset_postgres(pg_session_url)
    h = await make_hub(pg_session_url)
    await h.create_channel()
    yield h


async def _stored(hub: Hub, *deliveries: dict[str, Any]) -> list[int]:
    """Post each delivery as its own webhook, one after the other (so arrival order is known)."""
    for d in deliveries:
        assert (await hub.webhook(d)).status == 200
    async with hub.store.db.read() as conn:
        return list(await conn.scalars(sa.select(R.c.id).where(R.c.state == "pending").order_by(R.c.id)))


async def _created(store: Store) -> list[str]:
    """The external ids of message.created events, in sequence order."""
    async with store.db.read() as conn:
        rows = await conn.scalars(sa.select(E.c.data).where(E.c.type == "message.created").order_by(E.c.seq))
        return [json.loads(data)["external_id"] for data in rows]


def test_in_order_holds_back_a_conversation_behind_a_delivery_held_elsewhere() -> None:
    a, b, c = {("fk", "a")}, {("fk", "b")}, {("fk", "c")}
    rows = [(1, a), (2, b), (3, a | c), (4, c), (5, b), (6, set())]
    # 1 is held by another transaction: 3 waits for it, and 4 for 3 (it shares contact c).
    assert in_order(rows, {2, 3, 4, 5, 6}, set()) == {2, 5, 6}
    # Nothing held elsewhere, but b waits for a retry of an earlier delivery.
    assert in_order(rows, {1, 2, 3, 4, 5, 6}, b) == {1, 3, 4, 6}


def test_conversation_keys_are_the_contacts_a_delivery_names() -> None:
    who = ContactRef(ids=["wa:1", "bsuid:X"])
    message = InboundMessage(
        external_id="m", contact=who, kind="text", text="hi", timestamp="2026-12-07T00:00:00Z"
    )
    status = StatusUpdate(external_id="m", status="read", timestamp="2026-12-07T00:00:00Z")
    assert conversation_keys("ch", [message, status]) == {("ch", "wa:1"), ("ch", "bsuid:X")}
    assert conversation_keys("ch", [status]) == set()


async def test_a_delivery_waits_while_an_earlier_one_of_its_conversation_is_applied_elsewhere(
    pg_hub: Hub,
) -> None:
    hub = pg_hub
    await hub.client.app[PROCESSOR].stop()
    ids = await _stored(
        hub,
        msg("a1", who="alice"),
        msg("b1", who="bob"),
        msg("a2", who="alice"),
        msg("b2", who="bob"),
    )
    assert len(ids) == 4
    proc = InboundProcessor(hub.store, hub.client.app[CHANNELS])
    # Another process is applying alice's first delivery: its transaction holds the row.
    other = Database(hub.store.db.url)
    try:
        async with other.write() as conn:
            await conn.execute(sa.select(R.c.id).where(R.c.id == ids[0]).with_for_update())
            dealt = await proc.process_pending()
            assert await _created(hub.store) == ["b1", "b2"], "alice's second message overtook her first"
            assert dealt == 2
            async with hub.store.db.read() as read:
                pending = set(await read.scalars(sa.select(R.c.id).where(R.c.state == "pending")))
            assert pending == {ids[0], ids[2]}
            # The other process gives up (rolls back) and this one takes over.
            await conn.rollback()
        assert await proc.process_pending() == 2
        assert await _created(hub.store) == ["b1", "b2", "a1", "a2"]
    finally:
        await other.dispose()


async def test_a_delivery_waits_for_the_retry_of_an_earlier_one_of_its_conversation(
    hub: Hub, monkeypatch: Any
) -> None:
    await hub.client.app[PROCESSOR].stop()
    real = inbound.apply_messages
    broken = {"a1"}

    async def flaky(tx: Any, items: Any) -> None:
        if any(ev.external_id in broken for _, ev in items):
            raise RuntimeError("the database refused it this time")
        await real(tx, items)

    monkeypatch.setattr(inbound, "apply_messages", flaky)
    await _stored(hub, msg("a1", who="alice"), msg("b1", who="bob"), msg("a2", who="alice"))
    proc = InboundProcessor(hub.store, hub.client.app[CHANNELS], max_attempts=5)
    assert await proc.process_pending() == 2  # a1 scheduled for its retry, b1 applied, a2 held
    assert await _created(hub.store) == ["b1"]
    async with hub.store.db.write() as conn:  # its retry is not due for a while (a slow machine)
        later = utcnow() + timedelta(minutes=5)
        assert (
            await conn.execute(R.update().where(R.c.due_at.is_not(None)).values(due_at=later))
        ).rowcount == 1
    assert await proc.process_pending() == 0, "a2 waits while a1 waits for its retry"
    assert await _created(hub.store) == ["b1"]
    broken.clear()
    async with hub.store.db.write() as conn:
        await conn.execute(R.update().where(R.c.state == "pending").values(due_at=None))
    assert await proc.process_pending() == 2
    assert await _created(hub.store) == ["b1", "a1", "a2"]


async def test_two_processors_at_once_keep_every_conversations_order(pg_hub: Hub) -> None:
    """Two processors (each with a database pool of its own, as two processes) apply one backlog
    at the same time, in small and different batch sizes: every message is applied once, and the
    messages of each contact in the order they arrived."""
    hub = pg_hub
    await hub.client.app[PROCESSOR].stop()
    rng = random.Random(20)
    people = [f"p{i}" for i in range(5)]
    sent: dict[str, list[str]] = {p: [] for p in people}
    deliveries = []
    for i in range(120):
        who = rng.choice(people)
        sent[who].append(f"{who}-{i}")
        deliveries.append(msg(f"{who}-{i}", who=who))
    await _stored(hub, *deliveries)
    channels = hub.client.app[CHANNELS]
    second = Store(Database(hub.store.db.url), EventBus())
    procs = [(InboundProcessor(hub.store, channels), 5), (InboundProcessor(second, channels), 3)]

    async def drain(proc: InboundProcessor, limit: int) -> None:
        idle = 0
        while idle < 3:
            idle = idle + 1 if await proc.process_pending(limit) == 0 else 0
            await asyncio.sleep(0)
            async with hub.store.db.read() as conn:
                if not await conn.scalar(sa.select(sa.func.count()).where(R.c.state == "pending")):
                    return

    try:
        await asyncio.wait_for(asyncio.gather(*(drain(p, n) for p, n in procs)), 60)
    finally:
        await second.db.dispose()
    created = await _created(hub.store)
    assert sorted(created) == sorted(m for ms in sent.values() for m in ms), "each message once"
    for who in people:
        assert [m for m in created if m.startswith(who + "-")] == sent[who], who
    # Each delivery was applied by exactly one of them (which one is up to the scheduler; the
    # forced contention is the test above).
    assert sum(p.processed for p, _ in procs) == len(deliveries)
