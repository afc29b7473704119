"""The event log: every change the app cares about, with a sequence number that only grows.

Events are appended in the transaction of the change they record (``Tx.emit``); once it commits
they are handed to the in-process ``EventBus`` (live WebSocket streams) and to ``hub_on_event``
hook implementations. An app that was offline replays from the table with ``after=seq``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.db import Database
from hub.models import Event, utcnow

__all__ = ["EventBus", "EventCheck", "Frame", "Store", "Subscription", "Tx"]

log = logging.getLogger("hub.events")
PRUNE_CURSOR = ("_hub", "events_pruned_through")
# PostgreSQL: sequence values are taken in one order and committed in another; this lock makes
# event-writing transactions commit in seq order so `after=N` never skips a late commit.
_PG_EVENTS_LOCK = 0x6875625F657674  # "hub_evt"


class Frame(NamedTuple):
    """One event as JSON text, with what a reader filters on (without decoding the text)."""

    seq: int
    text: str
    type: str
    channel_id: str | None
    conversation_id: str | None


# Raises when an event's type or data is not what the app is told to expect (the web layer's
# event catalogue); set by the app factory when ``check_events`` is on.
EventCheck = Callable[[str, Any], None]


@dataclass
class Tx:
    """One write transaction; ``emit`` appends to the event log inside it."""

    conn: AsyncConnection
    db: Database
    check: EventCheck | None = None
    events: list[Event] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    _locked: bool = False

    async def emit(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        channel_id: str | None = None,
        conversation_id: str | None = None,
    ) -> Event:
        return (await self.emit_many([(type_, data, channel_id, conversation_id)]))[0]

    async def serialize(self) -> None:
        """Take, now rather than at the first ``emit``, the lock that orders event-writing
        transactions (PostgreSQL; SQLite's single writer is one already): a read-decide-write
        (assignment under capacity) made under it cannot interleave with another."""
        if not self.db.is_sqlite and not self._locked:
            await self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_EVENTS_LOCK)))
            self._locked = True

    async def emit_many(self, items: list[tuple[str, dict[str, Any], str | None, str | None]]) -> list[Event]:
        """Append several events (type, data, channel_id, conversation_id) in one statement, in order."""
        if not items:
            return []
        if self.check is not None:
            for type_, data, _, _ in items:
                self.check(type_, data)
        await self.serialize()
        now = utcnow()
        # Serialized once here: the log row, the live frames and every replay reuse this text.
        texts = [dump(data) for _, data, _, _ in items]
        rows = [
            {"type": t, "channel_id": ch, "conversation_id": cv, "data": text, "created_at": now}
            for (t, _, ch, cv), text in zip(items, texts, strict=True)
        ]
        seqs = await self._insert(rows)
        out = []
        for seq, (t, data, ch, cv), text in zip(seqs, items, texts, strict=True):
            ev = Event.model_construct(
                seq=seq, type=t, channel_id=ch, conversation_id=cv, data=data, created_at=now
            )
            out.append(ev)
            self.frames.append(Frame(seq, envelope(seq, t, ch, cv, text, now), t, ch, cv))
        self.events.extend(out)
        return out

    async def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert the rows in order; their sequence numbers, in the same order."""
        E = schema.events
        if not self.db.is_sqlite:
            returning = E.insert().returning(E.c.seq, sort_by_parameter_order=True)
            result = await self.conn.execute(returning, rows)
            return [int(s) for s in result.scalars()]
        # SQLite cannot promise the order of a multi-row RETURNING, so SQLAlchemy would insert row
        # by row (one statement per event, profiled at a third of a batch's cost). This transaction
        # holds the database's write lock (BEGIN IMMEDIATE) and ``seq`` is AUTOINCREMENT, so the
        # rows of one executemany take consecutive numbers ending at last_insert_rowid().
        await self.conn.execute(E.insert(), rows)
        last = int(await self.conn.scalar(sa.text("SELECT last_insert_rowid()")) or 0)
        return list(range(last - len(rows) + 1, last + 1))


def dump(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def envelope(
    seq: int, type_: str, channel_id: str | None, conversation_id: str | None, data_text: str, at: datetime
) -> str:
    """One event as the app receives it (the ``Event`` model's JSON), built around stored text."""
    return (
        f'{{"seq":{seq},"type":{dump(type_)},"channel_id":{dump(channel_id)},'
        f'"conversation_id":{dump(conversation_id)},"data":{data_text},"created_at":"{at.isoformat()}"}}'
    )


class Subscription:
    """A live feed of events for one stream client, bounded in frames and bytes: overflow marks it
    lagging, and the stream then drops the client, who resumes from its cursor."""

    def __init__(self, maxsize: int, max_bytes: int) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        self.lagging = False

    def offer(self, frame: Frame) -> None:
        if self.lagging:
            return
        size = len(frame[1])
        if self.pending_bytes + size > self.max_bytes:
            self.lagging = True
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.lagging = True
            return
        self.pending_bytes += size

    async def next_frames(self) -> list[Frame]:
        """Every frame waiting (at least one): one wake-up per batch, not per frame."""
        frames = [await self.queue.get()]
        while not self.queue.empty():
            frames.append(self.queue.get_nowait())
        self.pending_bytes -= sum(len(f[1]) for f in frames)
        return frames


class EventBus:
    """Fans committed events out to this process's subscribers."""

    def __init__(self, maxsize: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._subs: set[Subscription] = set()
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self.last_seq = 0
        self.observers: list[Callable[[Event], None]] = []

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription(self._maxsize, self._max_bytes)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def publish(self, events: Iterable[Event], frames: Iterable[Frame] = ()) -> None:
        """Hand committed events to live subscribers (as JSON frames) and to observers (as models)."""
        for frame in frames:
            for sub in self._subs:
                sub.offer(frame)
        for ev in events:
            self.last_seq = max(self.last_seq, ev.seq)
            for observe in self.observers:
                try:
                    observe(ev)
                except Exception:
                    log.exception("event observer failed on %s #%s", ev.type, ev.seq)


class Store:
    """The database plus the event bus: write transactions publish their events after commit."""

    def __init__(self, db: Database, bus: EventBus, check: EventCheck | None = None) -> None:
        self.db = db
        self.bus = bus
        self.check = check
        self._publish_order = None if db.is_sqlite else asyncio.Lock()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        ordered = False
        try:
            async with self.db.write() as conn:
                tx = Tx(conn, self.db, self.check)
                yield tx
                if tx.events and self._publish_order is not None:
                    # Taken before the commit, while this transaction holds the events lock: the
                    # next event-writing transaction cannot commit until this one has published,
                    # so observers see events in seq order. (SQLite's write lock already does it.)
                    await self._publish_order.acquire()
                    ordered = True
            # Committed: only now may anyone outside see the events.
            if tx.events:
                self.bus.publish(tx.events, tx.frames)
        finally:
            if ordered and self._publish_order is not None:
                self._publish_order.release()

    async def events_after(self, after: int, limit: int) -> list[Frame]:
        """The events after ``after``, oldest first, as frames: no model, no re-encoding."""
        E = schema.events
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(E.c.seq, E.c.type, E.c.channel_id, E.c.conversation_id, E.c.data, E.c.created_at)
                .where(E.c.seq > after)
                .order_by(E.c.seq)
                .limit(limit)
            )
            return [
                Frame(seq, envelope(seq, t, ch, cv, data, at), t, ch, cv) for seq, t, ch, cv, data, at in rows
            ]

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

    async def prune_events(self, keep: int, *, chunk: int = 1000, pause: float = 0.01) -> int:
        """Delete all but the newest ``keep`` events; remember the boundary for resync answers.

        In transactions of at most ``chunk`` events, with a ``pause`` between them: one DELETE of a
        million rows would hold SQLite's write lock (and every webhook waiting on it) for seconds.
        The boundary moves with each chunk, so a stop halfway leaves a log that answers right.
        """
        through = await self.last_seq() - keep
        done = await self.pruned_through()
        deleted = 0
        E = schema.events
        while done < through:
            upto = min(done + chunk, through)
            async with self.db.write() as conn:
                res = await conn.execute(E.delete().where(E.c.seq > done, E.c.seq <= upto))
                await conn.execute(
                    self.db.insert(schema.cursors)
                    .values(
                        channel_id=PRUNE_CURSOR[0], name=PRUNE_CURSOR[1], value=str(upto), updated_at=utcnow()
                    )
                    .on_conflict_do_update(
                        index_elements=["channel_id", "name"],
                        set_={"value": str(upto), "updated_at": utcnow()},
                    )
                )
            deleted += int(res.rowcount or 0)
            done = upto
            if done < through:
                await asyncio.sleep(pause)
        return deleted

    async def log_horizon(self) -> datetime | None:
        """When the oldest event still in the log was written; None while nothing was pruned
        (everything the log ever referred to is still referred to)."""
        if await self.pruned_through() == 0:
            return None
        E = schema.events
        async with self.db.read() as conn:
            return await conn.scalar(sa.select(E.c.created_at).order_by(E.c.seq).limit(1))
