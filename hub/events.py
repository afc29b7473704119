"""The event log: every change the app cares about, with a sequence number that only grows.

Events are appended in the transaction of the change they record (``Tx.emit``); once it commits
they are handed to the in-process ``EventBus`` (live WebSocket streams) and to ``hub_on_event``
hook implementations. An app that was offline replays from the table with ``after=seq``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.db import Database
from hub.models import Event, utcnow

__all__ = ["EventBus", "Store", "Subscription", "Tx"]

log = logging.getLogger("hub.events")
PRUNE_CURSOR = ("_hub", "events_pruned_through")
# PostgreSQL: sequence values are taken in one order and committed in another; this lock makes
# event-writing transactions commit in seq order so `after=N` never skips a late commit.
_PG_EVENTS_LOCK = 0x6875625F657674  # "hub_evt"


@dataclass
class Tx:
    """One write transaction; ``emit`` appends to the event log inside it."""

    conn: AsyncConnection
    db: Database
    events: list[Event] = field(default_factory=list)
    _locked: bool = False

    async def emit(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        channel_id: str | None = None,
        conversation_id: str | None = None,
    ) -> Event:
        if not self.db.is_sqlite and not self._locked:
            await self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_EVENTS_LOCK)))
            self._locked = True
        now = utcnow()
        result = await self.conn.execute(
            schema.events.insert()
            .values(
                type=type_,
                channel_id=channel_id,
                conversation_id=conversation_id,
                data=data,
                created_at=now,
            )
            .returning(schema.events.c.seq)
        )
        seq = int(result.scalar_one())
        ev = Event(
            seq=seq,
            type=type_,
            channel_id=channel_id,
            conversation_id=conversation_id,
            data=data,
            created_at=now,
        )
        self.events.append(ev)
        return ev


class Subscription:
    """A live feed of events for one stream client; overflow marks it lagging (it re-reads the log)."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.lagging = False

    def offer(self, ev: Event) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.lagging = True


class EventBus:
    """Fans committed events out to this process's subscribers."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._subs: set[Subscription] = set()
        self._maxsize = maxsize
        self.last_seq = 0
        self.observers: list[Callable[[Event], None]] = []

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription(self._maxsize)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def publish(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.last_seq = max(self.last_seq, ev.seq)
            for sub in self._subs:
                sub.offer(ev)
            for observe in self.observers:
                try:
                    observe(ev)
                except Exception:
                    log.exception("event observer failed on %s #%s", ev.type, ev.seq)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


class Store:
    """The database plus the event bus: write transactions publish their events after commit."""

    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus
        self._publish_order = None if db.is_sqlite else asyncio.Lock()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        ordered = False
        try:
            async with self.db.write() as conn:
                tx = Tx(conn, self.db)
                yield tx
                if tx.events and self._publish_order is not None:
                    # Taken before the commit, while this transaction holds the events lock: the
                    # next event-writing transaction cannot commit until this one has published,
                    # so observers see events in seq order. (SQLite's write lock already does it.)
                    await self._publish_order.acquire()
                    ordered = True
            # Committed: only now may anyone outside see the events.
            if tx.events:
                self.bus.publish(tx.events)
        finally:
            if ordered and self._publish_order is not None:
                self._publish_order.release()

    async def events_after(self, after: int, limit: int) -> list[Event]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(schema.events)
                .where(schema.events.c.seq > after)
                .order_by(schema.events.c.seq)
                .limit(limit)
            )
            return [Event.model_validate(dict(r._mapping)) for r in rows]

    async def pruned_through(self) -> int:
        async with self.db.read() as conn:
            value = await conn.scalar(
                sa.select(schema.cursors.c.value).where(
                    schema.cursors.c.channel_id == PRUNE_CURSOR[0],
                    schema.cursors.c.name == PRUNE_CURSOR[1],
                )
            )
        return int(value) if value else 0

    async def last_seq(self) -> int:
        async with self.db.read() as conn:
            value = await conn.scalar(sa.select(sa.func.max(schema.events.c.seq)))
        return int(value or 0)

    async def prune_events(self, keep: int) -> int:
        """Delete all but the newest ``keep`` events; remember the boundary for resync answers."""
        last = await self.last_seq()
        through = last - keep
        if through <= await self.pruned_through():
            return 0
        async with self.db.write() as conn:
            res = await conn.execute(schema.events.delete().where(schema.events.c.seq <= through))
            await conn.execute(
                self.db.insert(schema.cursors)
                .values(
                    channel_id=PRUNE_CURSOR[0],
                    name=PRUNE_CURSOR[1],
                    value=str(through),
                    updated_at=utcnow(),
                )
                .on_conflict_do_update(
                    index_elements=["channel_id", "name"],
                    set_={"value": str(through), "updated_at": utcnow()},
                )
            )
        return int(res.rowcount or 0)
