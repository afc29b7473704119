"""A named position in the event log, kept in ``cursors``, for a consumer that reads the log in
order across restarts and processes (notifications, bots, automations).

Each batch moves the cursor with a compare-and-set (``move``) inside the transaction that does the
batch's work: if another process moved it first, the move fails, the transaction's work is not
wanted, and that batch is that process's.

A batch (``next_batch``) never reaches past the store's horizon: on PostgreSQL, an event whose
transaction is still open may have a lower seq than one already visible, and a cursor moved past
it would never see it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import jsontext, schema
from hub.events import LOG_COLUMNS, Frame, Store
from hub.models import utcnow
from hub.worker import Worker

__all__ = ["LogBatch", "LogConsumer", "LogCursor", "LoggedEvent"]

E = schema.events
K = schema.cursors

# Built once: building a statement costs more than running it on SQLite (profiled: ~100 µs of
# ~175 µs per statement), and these run for every batch of every consumer.
_GET = sa.select(K.c.value).where(K.c.channel_id == sa.bindparam("b_ns"), K.c.name == sa.bindparam("b_name"))
_BATCH = (
    sa.select(*LOG_COLUMNS)
    .where(
        E.c.seq > sa.bindparam("b_start"),
        E.c.seq <= sa.bindparam("b_top"),
        E.c.type.in_(sa.bindparam("b_types", expanding=True)),
    )
    .order_by(E.c.seq)
    .limit(sa.bindparam("b_limit"))
)
_MOVE = (
    K.update()
    .where(
        K.c.channel_id == sa.bindparam("b_ns"),
        K.c.name == sa.bindparam("b_name"),
        K.c.value == sa.bindparam("b_start"),
    )
    .values(value=sa.bindparam("b_to"), updated_at=sa.bindparam("b_at", type_=schema.TS))
)


class LoggedEvent(NamedTuple):
    """An event as a consumer reads it: ``hub.models.Event``'s fields, built for a tenth of what
    ``Event.model_construct`` cost (profiled: a fifth of the notification consumer's time)."""

    seq: int
    type: str
    channel_id: str | None
    conversation_id: str | None
    data: dict[str, Any]
    created_at: datetime


@dataclass
class LogBatch:
    """What a consumer handles next: the events after ``start`` of the types it asked for, in seq
    order, and ``last``, where the cursor moves once they are handled (past the events of other
    types too)."""

    start: int
    last: int
    rows: Sequence[Any]  # (seq, type, channel_id, conversation_id, data as JSON text, created_at)

    def events(self) -> list[LoggedEvent]:
        """The rows with their data decoded."""
        return [
            LoggedEvent(seq, type_, channel_id, conversation_id, jsontext.loads(text), at)
            for seq, type_, channel_id, conversation_id, text, at in self.rows
        ]


class LogCursor:
    def __init__(self, name: str) -> None:
        self.key = ("_hub", name)

    async def get(self, conn: AsyncConnection) -> int | None:
        """The last event seq consumed; None before ``start_at_end``."""
        value = await conn.scalar(_GET, {"b_ns": self.key[0], "b_name": self.key[1]})
        return None if value is None else int(value)

    async def next_batch(
        self, store: Store, limit: int, types: Sequence[str], start: int | None = None
    ) -> LogBatch | None:
        """The next events of ``types``, at most ``limit``; None when there is nothing new (or the
        cursor does not exist yet). A full batch ends at its last event; a short one covers every
        event up to the horizon, so events of other types are passed over without being read.

        ``start``: where the caller believes the cursor is (saving its read); a wrong belief costs
        one batch, whose ``move`` then fails."""
        async with store.db.read() as conn:
            if start is None:
                start = await self.get(conn)
            if start is None:
                return None
            top = await store.horizon(conn)
            if top <= start:
                return None
            params = {"b_start": start, "b_top": top, "b_types": list(types), "b_limit": limit}
            rows = (await conn.execute(_BATCH, params)).all()
        return LogBatch(start, rows[-1].seq if len(rows) == limit else top, rows)

    async def start_at_end(self, store: Store) -> None:
        """A consumer that never ran starts at the end of the log: it acts on what happens from
        now on, not on the past (a no-op once the cursor exists)."""
        async with store.tx() as tx:
            if await self.get(tx.conn) is None:
                last = int(await tx.conn.scalar(sa.select(sa.func.max(E.c.seq))) or 0)
                await tx.conn.execute(
                    store.db.insert(K)
                    .values(channel_id=self.key[0], name=self.key[1], value=str(last), updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["channel_id", "name"])
                )

    async def move(self, conn: AsyncConnection, start: int, to: int) -> bool:
        """From ``start`` to ``to``; False when it was no longer at ``start`` (another process)."""
        params = {"b_ns": self.key[0], "b_name": self.key[1], "b_start": str(start), "b_to": str(to)}
        moved = await conn.execute(_MOVE, {**params, "b_at": utcnow()})
        return bool(moved.rowcount)


class LogConsumer(Worker):
    """A worker that follows the event log with its own cursor: woken by the events it watches
    (``observe``), and every ``interval`` for those of other processes; ``step`` handles one batch
    and says how many events it read (a full batch: read on at once)."""

    cursor: ClassVar[LogCursor]
    watched: ClassVar[tuple[str, ...]]
    log: ClassVar[logging.Logger]

    def __init__(self, store: Store, *, batch_size: int, interval: float, gather: float = 0.05) -> None:
        super().__init__()
        self.store = store
        self.batch_size = batch_size
        self.interval = interval
        # After a short batch, events gather this long before the next: at a hundred messages a
        # second, one batch per message cost each consumer four statements a message (profiled),
        # for a delay no bot or rule needs to avoid (notifications do not gather: see there).
        self.gather = gather
        # Where this consumer's cursor is, as of its last move (SQLite only: there one process
        # moves it). Saves reading it per batch; a wrong value (a move rolled back) costs one
        # batch whose move then fails, and is forgotten.
        self._at: int | None = None
        self._lost = False  # a move found the cursor moved by another process

    def observe(self, event: Any) -> None:
        if event.type in self.watched:
            self.notify()

    def observe_remote(self, frames: Sequence[Frame]) -> None:
        if any(frame.type in self.watched for frame in frames):
            self.notify()

    def attach(self) -> None:
        """Wake on the watched events of this process and (PostgreSQL) of the others: one
        process at a time follows the log (see ``run``), whichever process committed them."""
        self.store.bus.observers.append(self.observe)
        if self.store.feed is not None:
            self.store.feed.on_remote.append(self.observe_remote)

    def detach(self) -> None:
        self.store.bus.observers.remove(self.observe)
        if self.store.feed is not None and self.observe_remote in self.store.feed.on_remote:
            self.store.feed.on_remote.remove(self.observe_remote)

    async def start(self) -> None:
        await self.init_cursor()
        await super().start()

    async def init_cursor(self) -> None:
        """A consumer that never ran starts at the end of the log: it acts on what happens from
        now on, not on the past."""
        await self.cursor.start_at_end(self.store)

    async def next_batch(self) -> LogBatch | None:
        """The next batch of the watched events (``LogCursor.next_batch``)."""
        return await self.cursor.next_batch(self.store, self.batch_size, self.watched, self._at)

    async def move(self, conn: AsyncConnection, start: int, to: int) -> bool:
        """Move the cursor in the caller's transaction (``LogCursor.move``)."""
        moved = await self.cursor.move(conn, start, to)
        self._at = to if moved and self.store.db.is_sqlite else None
        self._lost = self._lost or not moved
        return moved

    async def run(self) -> None:
        while True:
            try:
                done = await self.step()
            except Exception:
                self.log.exception("%s: a batch failed; trying again in %s s", self.task_name, self.interval)
                self._at = None
                done = 0
            if self._lost:
                # Another process follows this log: leave it to that one, and look again in a
                # while (the one that lost did every batch a second time, profiled with two
                # processes). If that process stops, this one takes over within ``interval``.
                self._lost = False
                await asyncio.sleep(self.interval)
                self._wake.clear()
            elif done < self.batch_size:
                await self.idle(self.interval)
                await asyncio.sleep(self.gather)

    async def step(self) -> int:
        raise NotImplementedError
