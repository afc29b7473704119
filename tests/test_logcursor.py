"""How a consumer of the event log shares it with other processes and remembers its position.

* A consumer whose cursor another process moved first leaves the log to that process for a while
  (it used to read every batch a second time, woken by each event, and lose it again).
* It is woken by the watched events of other processes too, so the one that follows the log
  acts on them without waiting for its poll.
* On SQLite it keeps its position from its last move instead of reading it per batch; a position
  that is wrong (a move rolled back) costs one batch, and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from hub.db import Database
from hub.events import EventBus, Frame, Store
from hub.logcursor import LogConsumer, LogCursor
from hub.migrate import upgrade


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    await upgrade(db)
    yield Store(db, EventBus())
    await db.dispose()


class _Counting(LogConsumer):
    """Takes each batch and moves the cursor past it; counts the batches it read and handled."""

    task_name = "test-consumer"
    cursor = LogCursor("test")
    watched: ClassVar[tuple[str, ...]] = ("message.created",)
    log = logging.getLogger("test.consumer")

    def __init__(self, store: Store, *, interval: float = 1.0) -> None:
        super().__init__(store, batch_size=100, interval=interval, gather=0.0)
        self.read = 0
        self.handled: list[int] = []

    async def step(self) -> int:
        batch = await self.next_batch()
        if batch is None:
            return 0
        self.read += 1
        async with self.store.tx() as tx:
            if not await self.move(tx.conn, batch.start, batch.last):
                return 0
        self.handled.extend(row.seq for row in batch.rows)
        return len(batch.rows)


async def _emit(store: Store, n: int = 1) -> list[int]:
    seqs = []
    for i in range(n):
        async with store.tx() as tx:
            seqs.append((await tx.emit("message.created", {"n": i})).seq)
    return seqs


async def _move_elsewhere(store: Store, to: int) -> None:
    """Another process moves the cursor: its value changes under this one."""
    async with store.db.write() as conn:
        current = await _Counting.cursor.get(conn)
        assert current is not None
        assert await _Counting.cursor.move(conn, current, to)


async def test_a_consumer_that_lost_its_cursor_to_another_process_waits_before_reading_again(
    store: Store,
) -> None:
    consumer = _Counting(store, interval=1.0)
    await consumer.init_cursor()
    (s0,) = await _emit(store)
    await consumer.step()  # on SQLite it now remembers where its cursor is
    assert consumer.read == 1
    s1, s2, s3 = await _emit(store, 3)
    await _move_elsewhere(store, s1)  # another process handled the first of them
    await consumer.start()
    try:
        for _ in range(20):  # events keep coming, each waking it
            await asyncio.sleep(0.02)
            consumer.notify()
        # One batch read (from its old position), whose move failed; then it stayed away.
        assert consumer.read == 2, f"read {consumer.read} batches within 0.4 s of losing its cursor"
        assert consumer.handled == [s0]
        await asyncio.sleep(1.0)  # its interval: it looks again, from where the cursor really is
        assert consumer.handled == [s0, s2, s3], "it skipped or repeated an event"
    finally:
        await consumer.stop()


async def test_a_consumer_is_woken_by_the_watched_events_of_other_processes(store: Store) -> None:
    consumer = _Counting(store)
    consumer.observe_remote([Frame(1, "{}", "conversation.created", None, None)])
    assert not consumer._wake.is_set(), "woken by an event it does not watch"
    consumer.observe_remote(
        [Frame(1, "{}", "conversation.created", None, None), Frame(2, "{}", "message.created", "c", "v")]
    )
    assert consumer._wake.is_set()


async def test_a_remembered_position_that_is_wrong_costs_one_batch_and_skips_nothing(store: Store) -> None:
    consumer = _Counting(store)
    await consumer.init_cursor()
    first = await _emit(store, 2)
    assert await consumer.step() == 2
    assert consumer._at == first[-1], "SQLite: the position is kept from the move"
    # A move that was rolled back: the remembered position is ahead of the stored one.
    async with store.db.write() as conn:
        assert await _Counting.cursor.move(conn, first[-1], first[0])
    more = await _emit(store, 2)
    assert await consumer.step() == 0, "the batch read from the wrong position is not handled"
    assert consumer._at is None
    assert await consumer.step() == 3
    assert consumer.handled == [*first, first[-1], *more]
