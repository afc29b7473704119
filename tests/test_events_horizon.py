"""Gap-safe reads on PostgreSQL: sequence numbers drawn by concurrent transactions commit out of
order, and no reader of the hub ever moves past an event that is still in flight.

The scenario is forced, not hoped for: transaction A draws its seq and stays open while B draws a
later seq and commits. A naive reader (``seq > cursor``) sees B's event first, advances its
cursor past A's, and never sees A's. The hub's readers (``Store.events_after``, the feed that
fans events out to streams) wait for A instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import sqlalchemy as sa

from hub import schema
from hub.db import Database
from hub.events import EventBus, Store
from hub.fanout import Feed
from hub.logcursor import LogConsumer
from hub.migrate import upgrade


@pytest.fixture
async def pg_store(pg_session_url: str | None) -> AsyncIterator[Store]:
    if pg_session_url is None:
        pytest.skip("PostgreSQL not reachable (set HUB_TEST_POSTGRES_URL): this is about PostgreSQL")
    from tests.conftest import _reset_postgres

    await _reset_postgres(pg_session_url)
    db = Database(pg_session_url)
    await upgrade(db)
    yield Store(db, EventBus())
    await db.dispose()


class _OpenTx:
    """A transaction that emits one event and stays open until ``finish`` is called."""

    def __init__(self, store: Store, type_: str) -> None:
        self.store, self.type = store, type_
        self.seq = asyncio.get_running_loop().create_future()
        self.release = asyncio.Event()
        self.rollback = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self.store.tx() as tx:
                ev = await tx.emit(self.type, {"n": self.type})
                self.seq.set_result(ev.seq)
                await self.release.wait()
                if self.rollback:
                    raise _RolledBack
        except _RolledBack:
            pass

    async def finish(self, *, rollback: bool = False) -> None:
        self.rollback = rollback
        self.release.set()
        await self.task


class _RolledBack(Exception):
    pass


async def _naive(store: Store, after: int) -> list[int]:
    async with store.db.read() as conn:
        E = schema.events
        return list(await conn.scalars(sa.select(E.c.seq).where(E.c.seq > after).order_by(E.c.seq)))


async def test_a_reader_never_skips_an_event_that_commits_after_a_later_one(pg_store: Store) -> None:
    store = pg_store
    base = await store.last_seq()
    a = _OpenTx(store, "a")
    seq_a = await a.seq
    async with store.tx() as tx:
        seq_b = (await tx.emit("b", {"n": "b"})).seq
    assert seq_a < seq_b

    # The scenario is real: B's event is visible while A's, with a lower seq, is not.
    naive_cursor_seen = await _naive(store, base)
    assert naive_cursor_seen == [seq_b]
    # The hub's reader does not answer with B's event alone: it waits for A to end.
    read = asyncio.create_task(store.events_after(base, 100))
    await asyncio.sleep(0.3)
    assert not read.done(), f"the reader answered while seq {seq_a} was in flight: {read.result()}"
    await a.finish()
    frames = await asyncio.wait_for(read, 5)
    assert [f.seq for f in frames] == [seq_a, seq_b]
    # The naive reader, having moved its cursor to B's seq, never sees A's event.
    assert await _naive(store, max(naive_cursor_seen)) == []
    # The API's page goes no further than the horizon either.
    assert await store.horizon() == seq_b


async def test_a_rolled_back_seq_holds_nothing_up(pg_store: Store) -> None:
    store = pg_store
    base = await store.last_seq()
    a = _OpenTx(store, "a")
    await a.seq
    async with store.tx() as tx:
        seq_b = (await tx.emit("b", {})).seq
    await a.finish(rollback=True)
    frames = await asyncio.wait_for(store.events_after(base, 100), 5)
    assert [f.seq for f in frames] == [seq_b]


async def test_the_feed_publishes_out_of_order_commits_in_seq_order(pg_store: Store) -> None:
    """Two stores on one database stand for two processes: events committed on either, out of
    order, reach the other's subscribers in seq order, each once."""
    store = pg_store
    other = Store(Database(str(store.db.engine.url.render_as_string(hide_password=False))), EventBus())
    feed = Feed(store, poll_interval=5.0)  # NOTIFY must wake it: the poll would be too late
    other_feed = Feed(other, poll_interval=5.0)
    await feed.start()
    await other_feed.start()
    local_seen: list[int] = []
    store.bus.observers.append(lambda ev: local_seen.append(ev.seq))
    try:
        async with store.bus.subscribe() as sub:
            a = _OpenTx(other, "a")  # on the other process, held open
            seq_a = await a.seq
            async with store.tx() as tx:  # on this one, committed first
                seq_b = (await tx.emit("b", {})).seq
            await asyncio.sleep(0.3)
            assert sub.queue.empty(), f"seq {seq_b} was published while {seq_a} was in flight"
            await a.finish()
            got: list[int] = []
            while len(got) < 2:
                frames = await asyncio.wait_for(sub.next_frames(), 3)
                got.extend(f.seq for f in frames)
            assert got == [seq_a, seq_b]
            await asyncio.sleep(0.1)
            assert sub.queue.empty()
        # In-process observers (hub_on_event, workers) see this process's events only.
        assert local_seen == [seq_b]
    finally:
        await feed.stop()
        await other_feed.stop()
        await other.db.dispose()


def _log_consumer(name: str, store: Store) -> LogConsumer:
    from hub.automations.engine import AutomationEngine
    from hub.bots.consumer import BotConsumer
    from hub.notify.consumer import NotificationConsumer

    if name == "notifications":
        return NotificationConsumer(store, {})
    if name == "bots":
        return BotConsumer(store)
    # With no rule, the engine moves past events without its executor or channels.
    return AutomationEngine(store, cast(Any, None), cast(Any, None))


@pytest.mark.parametrize("name", ["notifications", "bots", "automations"])
async def test_no_log_consumer_moves_its_cursor_past_an_event_in_flight(pg_store: Store, name: str) -> None:
    """The consumers that act on the log (notifications, bots, rules) read it with a cursor of
    their own: one moved past A's event while A was open would never notify, feed or run rules on
    it."""
    store = pg_store
    consumer = _log_consumer(name, store)
    await consumer.init_cursor()
    a = _OpenTx(store, "message.created")
    seq_a = await a.seq
    async with store.tx() as tx:
        seq_b = (await tx.emit("message.created", {"n": "b"})).seq
    step = asyncio.create_task(consumer.step())
    await asyncio.sleep(0.3)
    async with store.db.read() as conn:
        during = await consumer.cursor.get(conn)
    assert during is not None and during < seq_a, f"{name} moved its cursor to {during}, past {seq_a}"
    assert not step.done(), f"{name} finished its batch while seq {seq_a} was in flight"
    await a.finish()
    await asyncio.wait_for(step, 5)
    async with store.db.read() as conn:
        assert await consumer.cursor.get(conn) == seq_b
