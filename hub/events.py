"""The event log: every change the app cares about, with a sequence number that only grows.

Events are appended in the transaction of the change they record (``Tx.emit``); once it commits
they are handed to the in-process ``EventBus`` (live WebSocket streams) and to ``hub_on_event``
hook implementations. An app that was offline replays from the table with ``after=seq``.

On PostgreSQL several processes write the log at once, and sequence numbers drawn by concurrent
transactions commit out of order: seq 11 can be visible while seq 10 is still in flight. A reader
that took 11 and moved its cursor there would never see 10. So readers never look past the
*horizon* (``Store.horizon``): the highest seq below which every event-writing transaction has
ended. Each such transaction holds a shared advisory lock (``EVENTS_MARK``) from before it draws
its first seq until it ends; a reader reads the newest visible seq, then waits for the
transactions that held the mark at that moment (``pg_locks``), and only then treats that seq as
final. Writers never wait for one another. ``hub.fanout`` runs this per process and wakes the
other processes with ``NOTIFY``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import jsontext, schema
from hub.db import Database
from hub.models import Event, utcnow

if TYPE_CHECKING:
    from hub.fanout import Feed

__all__ = ["EventBus", "EventCheck", "Frame", "Store", "Subscription", "Tx"]

log = logging.getLogger("hub.events")
PRUNE_CURSOR = ("_hub", "events_pruned_through")
# PostgreSQL: held *shared* by every transaction that appends events, from before its first seq is
# drawn until it ends; readers find the transactions still in flight through it (see above).
EVENTS_MARK = 0x6875625F657674  # "hub_evt"
# PostgreSQL: held exclusively by a read-decide-write (assignment under capacity), so two such
# decisions never interleave; nothing else waits on it.
DECISIONS_LOCK = 0x6875625F647363  # "hub_dsc"


# The newest visible seq, and the transactions that hold the events mark at the moment it was read
# (the statement's snapshot comes first, pg_locks is read after it). An advisory lock on a bigint
# key shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
_MARK_PARAMS = {"hi": EVENTS_MARK >> 32, "lo": EVENTS_MARK & 0xFFFFFFFF}
_MARKED = """
    locktype = 'advisory' AND objsubid = 1
    AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND pid <> pg_backend_pid()
"""
_HORIZON = sa.text(
    f"SELECT (SELECT max(seq) FROM events), ARRAY(SELECT virtualtransaction FROM pg_locks WHERE {_MARKED})"
)
_STILL_WRITING = sa.text(
    f"SELECT virtualtransaction FROM pg_locks WHERE {_MARKED} AND virtualtransaction = ANY(:writers)"
)


# What a reader of the log reads of each event (``events_after``, ``hub.logcursor``).
_E = schema.events
LOG_COLUMNS = (_E.c.seq, _E.c.type, _E.c.channel_id, _E.c.conversation_id, _E.c.data, _E.c.created_at)
# Built once: they run for every batch of events written or read (building one cost more than
# running it on SQLite, profiled).
_NEWEST = sa.select(sa.func.max(_E.c.seq))
_MARK_STMT = sa.select(sa.func.pg_advisory_xact_lock_shared(EVENTS_MARK))
_LAST_ROWID = sa.text("SELECT last_insert_rowid()")


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
    _marked: bool = False

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
        """Take the lock of read-decide-write decisions (PostgreSQL; SQLite's single writer is one
        already): a decision made under it (assignment under capacity) cannot interleave with
        another. Only such decisions wait on it; appending events does not."""
        if not self.db.is_sqlite and not self._locked:
            await self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(DECISIONS_LOCK)))
            self._locked = True

    async def _mark(self) -> None:
        """PostgreSQL: before the first seq is drawn, show readers that this transaction may
        append events (a shared lock: writers do not wait for one another)."""
        if not self.db.is_sqlite and not self._marked:
            await self.conn.execute(_MARK_STMT)
            self._marked = True

    async def emit_many(self, items: list[tuple[str, dict[str, Any], str | None, str | None]]) -> list[Event]:
        """Append several events (type, data, channel_id, conversation_id) in one statement, in order."""
        if not items:
            return []
        if self.check is not None:
            for type_, data, _, _ in items:
                self.check(type_, data)
        await self._mark()
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
        last = int(await self.conn.scalar(_LAST_ROWID) or 0)
        return list(range(last - len(rows) + 1, last + 1))


def dump(data: Any) -> str:
    return jsontext.dumps(data)


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
        self._first_at: float | None = None
        # When the oldest frame of the last ``next_frames`` batch was offered (time.monotonic).
        self.batch_since: float | None = None

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
        if self._first_at is None:
            self._first_at = time.monotonic()

    async def next_frames(self) -> list[Frame]:
        """Every frame waiting (at least one): one wake-up per batch, not per frame."""
        frames = [await self.queue.get()]
        while not self.queue.empty():
            frames.append(self.queue.get_nowait())
        self.pending_bytes -= sum(len(f[1]) for f in frames)
        self.batch_since, self._first_at = self._first_at, None
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
    """The database plus the event bus: write transactions publish their events after commit.

    With a ``feed`` attached (``hub.fanout``, PostgreSQL in a serving hub), committed events go to
    the feed, which publishes every process's events in seq order up to the horizon; without one
    (SQLite, whose single writer commits in seq order, the CLI, unit tests) they are published
    here directly.
    """

    def __init__(self, db: Database, bus: EventBus, check: EventCheck | None = None) -> None:
        self.db = db
        self.bus = bus
        self.check = check
        self.feed: Feed | None = None  # set by Feed.start
        self.horizon_timeout = 30.0

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        feed = self.feed
        tx: Tx | None = None
        committed = False
        try:
            async with self.db.write() as conn:
                tx = Tx(conn, self.db, self.check)
                yield tx
                if tx.events and feed is not None:
                    # Before the commit: once the events are visible, the feed may read them, and
                    # it must know they are this process's (its observers run for these alone).
                    feed.expect(tx.events, tx.frames)
            committed = True
            if tx.events:
                if feed is not None:
                    feed.wake(local=True)
                else:
                    self.bus.publish(tx.events, tx.frames)
        finally:
            if not committed and feed is not None and tx is not None and tx.events:
                feed.forget(tx.events)

    def live_from(self) -> int | None:
        """For a live subscriber that has just subscribed: the seq up to which it must replay from
        the log, every later event reaching it live (None: replay up to the horizon and skip what
        arrives twice)."""
        return self.feed.published if self.feed is not None else None

    async def horizon(self, conn: AsyncConnection | None = None) -> int:
        """The highest seq a reader may go up to: every event at or below it that will ever exist
        is visible now. On SQLite that is the newest seq; on PostgreSQL see the module's doc.

        Read on ``conn`` when given (a reading connection of the caller's, saving a checkout; on
        PostgreSQL its transaction may be ended while waiting, which READ COMMITTED reads do not
        notice), else on a connection of its own."""
        if conn is None:
            async with self.db.read() as own:
                return await self.horizon(own)
        if self.db.is_sqlite:
            return int(await conn.scalar(_NEWEST) or 0)
        row = (await conn.execute(_HORIZON, _MARK_PARAMS)).one()
        top, writers = int(row[0] or 0), list(row[1] or [])
        delay, deadline = 0.0005, time.monotonic() + self.horizon_timeout
        while writers:
            if time.monotonic() > deadline:
                # Never guess: a reader that went past ``top`` now could skip an event.
                raise TimeoutError(
                    f"event-writing transactions {writers} still open after {self.horizon_timeout:g} s"
                )
            # The transactions that held the mark when ``top`` was read may hold seqs below it:
            # wait until they end (each ends in a commit or a rollback, both final).
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
            writers = list(await conn.scalars(_STILL_WRITING, {**_MARK_PARAMS, "writers": writers}))
            await conn.rollback()  # a fresh snapshot and no transaction left open meanwhile
        return top

    async def events_after(self, after: int, limit: int, upto: int | None = None) -> list[Frame]:
        """The events after ``after`` (and at most ``upto``, by default the horizon), oldest
        first, as frames: no model, no re-encoding."""
        E = schema.events
        async with self.db.read() as conn:
            if upto is None:
                upto = await self.horizon(conn)
            if upto <= after:
                return []
            rows = await conn.execute(
                sa.select(*LOG_COLUMNS).where(E.c.seq > after, E.c.seq <= upto).order_by(E.c.seq).limit(limit)
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
        """The newest seq visible now. On PostgreSQL an earlier one may still be in flight: a
        reader's cursor goes up to ``horizon`` instead."""
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
