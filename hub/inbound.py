"""The durable inbound pipeline.

``RawInbox.store`` commits an authenticated delivery before the webhook answers 200; deliveries
that arrive together are committed together (group commit), and a provider's retry of the same
delivery (same ``delivery_key``) is recognised by a unique constraint, even when both copies
arrive at the same moment. ``InboundProcessor`` then parses each stored delivery and applies its
events in one transaction per delivery: contact, conversation, message, statuses and the event
log move together or not at all. When that fails, each event is applied on its own, so one that
cannot be stored holds back neither its siblings nor other deliveries; the delivery is retried
later (``due_at``), never by sleeping in the loop. Deliveries left pending by a crash are picked up
at start.

Several processes on one PostgreSQL database all store deliveries and all apply them. Each pass
claims the oldest due deliveries that no other pass holds (``FOR UPDATE SKIP LOCKED``) and marks
only pending ones done, so no delivery is applied twice, and a process that dies mid-pass leaves
its deliveries to the others the moment its transaction ends. Nor out of order: a claimed delivery
is applied only when no earlier delivery naming one of its contacts (``conversation_keys``) is
held by another pass or waiting for its retry (``in_order``); otherwise it waits for a later pass.
So two messages of one conversation are never applied out of order, whichever processes apply
them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import TypeAdapter

from hub import schema
from hub.backlog import Backlog
from hub.bulk import apply_messages
from hub.changes import apply_change
from hub.channel import Channel, RawEvent
from hub.channels import ChannelService
from hub.echoes import match_echoes
from hub.events import Store, Tx
from hub.metrics import Metrics
from hub.models import (
    InboundMessage,
    MessageDeletion,
    MessageEdit,
    MessageStatus,
    ParsedEvent,
    ReactionUpdate,
    StatusUpdate,
    WatermarkUpdate,
    utcnow,
)
from hub.records import apply_status, ensure_contact, message_dict
from hub.repair import repair_events
from hub.worker import Worker

__all__ = [
    "ChannelInbox",
    "InboundProcessor",
    "Overloaded",
    "RawInbox",
    "apply_events",
    "conversation_keys",
    "in_order",
]

log = logging.getLogger("hub.inbound")
R = schema.raw_events
M = schema.messages
_parsed_list: TypeAdapter[list[ParsedEvent]] = TypeAdapter(list[ParsedEvent])


class Overloaded(Exception):
    """The hub stores no more deliveries for now: answer 503 and let the provider retry."""


@dataclass
class _Pending:
    channel_id: str
    key: str
    body: bytes
    headers: dict[str, str]
    received_at: datetime
    cursor: tuple[str, str] | None
    future: asyncio.Future[int | None] = field(repr=False)


class RawInbox(Worker):
    """Stores raw deliveries durably, committing concurrent arrivals in one transaction."""

    task_name = "hub-raw-inbox"

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 500,
        max_queued: int = 10_000,
        max_pending: int = 100_000,
        recount_interval: float = 1.0,
    ) -> None:
        super().__init__()
        self.store = store
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.recount_interval = recount_interval
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.on_stored: list[Any] = []
        self.backlog = Backlog(store, max_pending, recount_interval)

    async def start(self) -> None:
        await self.backlog.start()
        await super().start()

    async def stop(self) -> None:
        await self.backlog.stop()
        await super().stop()

    def overloaded(self) -> str | None:
        """Why a new delivery should be refused for now (the provider retries), or None."""
        if self._queue.qsize() >= self.max_queued:
            return f"{self._queue.qsize()} deliveries are waiting to be stored"
        if self.backlog.full:
            return f"{self.backlog.pending} stored deliveries are waiting to be processed"
        return None

    async def store_raw(
        self,
        channel_id: str,
        key: str,
        body: bytes,
        headers: Mapping[str, str],
        cursor: tuple[str, str] | None = None,
        received_at: datetime | None = None,
        *,
        wait: bool = False,
    ) -> int | None:
        """Commit one delivery; the new row id, or None when this key was stored before.

        When the hub is overloaded (``overloaded``) this raises ``Overloaded`` before anything is
        stored, or with ``wait`` (pull channels, which can simply slow down) waits until it is not.
        """
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        item = _Pending(channel_id, key, body, dict(headers), received_at or utcnow(), cursor, future)
        if not self.running:  # not started (CLI, tests): write directly
            return (await self._write([item]))[0]
        while (reason := self.overloaded()) is not None:
            if not wait:
                raise Overloaded(reason)
            await asyncio.sleep(self.recount_interval)
        self._queue.put_nowait(item)
        return await item.future

    async def run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                try:
                    ids = await self._write(batch)
                except Exception as exc:
                    log.exception("storing %d raw deliveries failed", len(batch))
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                for item, rid in zip(batch, ids, strict=True):
                    if not item.future.done():
                        item.future.set_result(rid)
                new = [(item.channel_id, rid) for item, rid in zip(batch, ids, strict=True) if rid]
                self.backlog.stored(len(new))
                for callback in self.on_stored:
                    callback(new)
        finally:
            # Stopped: a webhook still waiting is told so (it answers 500 and the provider
            # redelivers) instead of waiting forever.
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the hub is stopping"))

    async def _write(self, batch: Sequence[_Pending]) -> list[int | None]:
        """One multi-row insert for the batch; a key already stored (or twice in the batch) is None."""
        rows = [
            {
                "channel_id": item.channel_id,
                "dedupe_key": item.key,
                "body": item.body,
                "headers": item.headers,
                "received_at": item.received_at,
                "state": "pending",
                "attempts": 0,
            }
            for item in batch
        ]
        db = self.store.db
        async with db.write() as conn:
            result = await conn.execute(
                db.insert(R)
                .on_conflict_do_nothing(index_elements=["channel_id", "dedupe_key"])
                .returning(R.c.id, R.c.channel_id, R.c.dedupe_key),
                rows,
            )
            stored = {(cid, key): int(rid) for rid, cid, key in result}
            for item in batch:
                if item.cursor is not None:
                    name, value = item.cursor
                    await conn.execute(
                        db.insert(schema.cursors)
                        .values(channel_id=item.channel_id, name=name, value=value, updated_at=utcnow())
                        .on_conflict_do_update(
                            index_elements=["channel_id", "name"],
                            set_={"value": value, "updated_at": utcnow()},
                        )
                    )
        # The first item with a key gets its row; any later copy in the same batch is a duplicate.
        return [stored.pop((item.channel_id, item.key), None) for item in batch]


class ChannelInbox:
    """The ``hub.channel.Inbox`` a pull channel's ingest loop writes to."""

    def __init__(self, raw: RawInbox, channel_id: str) -> None:
        self.raw = raw
        self.channel_id = channel_id

    async def put(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> bool:
        k = key or hashlib.sha256(body).hexdigest()
        stored = await self.raw.store_raw(self.channel_id, k, body, headers or {}, cursor, wait=True)
        return stored is not None

    async def get_cursor(self, name: str) -> str | None:
        async with self.raw.store.db.read() as conn:
            value = await conn.scalar(
                sa.select(schema.cursors.c.value).where(
                    schema.cursors.c.channel_id == self.channel_id, schema.cursors.c.name == name
                )
            )
        return str(value) if value is not None else None

    async def set_cursor(self, name: str, value: str) -> None:
        db = self.raw.store.db
        async with db.write() as conn:
            await conn.execute(
                db.insert(schema.cursors)
                .values(channel_id=self.channel_id, name=name, value=value, updated_at=utcnow())
                .on_conflict_do_update(
                    index_elements=["channel_id", "name"],
                    set_={"value": value, "updated_at": utcnow()},
                )
            )


class InboundProcessor(Worker):
    """Parses stored deliveries in arrival order and applies them, a batch per transaction."""

    task_name = "hub-inbound"

    def __init__(
        self, store: Store, channels: ChannelService, *, max_attempts: int = 5, metrics: Metrics | None = None
    ) -> None:
        super().__init__()
        self.metrics = metrics
        self.store = store
        self.channels = channels
        self.max_attempts = max_attempts
        self.processed = 0
        self._unusable: list[tuple[dict[str, Any], str, str]] = []
        self._parsed: dict[int, list[ParsedEvent]] = {}
        self._stored_at: dict[int, float] = {}  # when each offered delivery was stored (monotonic)
        self._keys: dict[int, frozenset[tuple[str, str]]] = {}  # of deliveries another pass holds
        self.poll_interval = 1.0
        self._more = False  # the last pass read a full page: more may be due
        self._next_due: datetime | None = None  # the first retry due, as of the last pass

    def offer(self, raw_id: int, parsed: list[ParsedEvent]) -> None:
        """Events the webhook handler already parsed from stored delivery ``raw_id``.

        Kept only while this processor runs and up to a bound; otherwise the delivery is simply
        parsed again when processed (parsing is pure, so the result is the same).
        """
        if not self.running:
            return
        if len(self._parsed) >= 10_000:
            # Deliveries another process applied are never taken from here: start over.
            self._parsed.clear()
            self._stored_at.clear()
        self._parsed[raw_id] = parsed
        self._stored_at[raw_id] = time.monotonic()

    async def run(self) -> None:
        try:
            await self._work()
        finally:
            self._parsed.clear()
            self._stored_at.clear()
            self._keys.clear()

    async def _work(self) -> None:
        while True:  # the first pass picks up what a previous run left pending
            try:
                # A short page was everything due: new deliveries notify (a notify that comes
                # while working counts), so no pass is spent reading nothing.
                while await self.process_pending() > 0 and self._more:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbound processing failed; retrying in 1 s")
                await asyncio.sleep(1)
                self.notify()
            # A delivery waiting for its retry wakes the loop when it is due; new ones notify
            # (stored by another process: through its NOTIFY, or this poll if that was lost).
            due = self._retry_in()
            if not self.store.db.is_sqlite:
                due = min(due, self.poll_interval) if due is not None else self.poll_interval
            await self.idle(due)

    def _retry_in(self) -> float | None:
        """Seconds until the first delivery waiting for its retry is due (as of the last pass)."""
        if self._next_due is None:
            return None
        return max(0.0, (self._next_due - utcnow()).total_seconds())

    def _retry_at(self, due: datetime) -> None:
        self._next_due = due if self._next_due is None else min(self._next_due, due)

    async def process_pending(self, limit: int = 64) -> int:
        """Claim up to ``limit`` due deliveries, oldest first, and apply them in one transaction;
        returns how many were dealt with (applied, retried later or finished as unusable).

        Every process runs this at once. On PostgreSQL the claim skips deliveries another process's
        pass holds (``FOR UPDATE SKIP LOCKED``), so each pass takes its own, none twice. Order per
        conversation holds all the same: a claimed delivery is held back, for a later pass, while
        an earlier delivery naming one of its contacts is not this pass's (held by another process,
        or committed by its webhook after the claim) or waits for its retry (``in_order``).
        """
        now = utcnow()
        rows: list[dict[str, Any]] = []
        ready: list[tuple[dict[str, Any], Channel, list[ParsedEvent]]] = []
        blocked: set[tuple[str, str]] = set()
        chosen: list[dict[str, Any]] | None = None
        try:
            async with self.store.tx() as tx:
                rows, others = await self._claim_due(tx, now, limit)
                top = rows[-1]["id"] if rows else 0
                self._more = len(rows) >= limit
                self._next_due = None
                earlier = []
                for other in others:
                    if other["due_at"] is not None and other["due_at"] > now:
                        self._retry_at(other["due_at"])
                    if other["id"] < top:
                        earlier.append(other)
                blocked = self._keys_of(earlier)
                ready = [p for p in (self._prepare(row) for row in rows) if p is not None]
                if ready:
                    take = in_order(
                        [
                            (row["id"], conversation_keys(row["channel_id"], parsed))
                            for row, _, parsed in ready
                        ],
                        {row["id"] for row, _, _ in ready},
                        blocked,
                    )
                    batch = [r for r in ready if r[0]["id"] in take]
                    await apply_deliveries(tx, [(channel, parsed) for _, channel, parsed in batch])
                    await tx.conn.execute(
                        _DONE, {"b_ids": [row["id"] for row, _, _ in batch], "b_at": utcnow()}
                    )
                    chosen = [row for row, _, _ in batch]
        except Exception as exc:
            if not ready:
                raise
            # All or nothing: the batch rolled back and published nothing. Each delivery is applied
            # on its own now, so a bad one only holds back itself (and its conversation).
            log.warning("a batch of %d deliveries failed (%s); applying them one by one", len(ready), exc)
        # What a held delivery was parsed into is kept for the pass that applies it.
        self._forget(row["id"] for row, _, _ in self._unusable)
        await self._finish_unusable()
        if chosen is not None:
            self._processed(chosen)
            self._forget(row["id"] for row in chosen)
            # Held back: behind an earlier delivery of their conversation; a later pass takes them.
            return len(rows) - (len(ready) - len(chosen))
        held = 0
        for row, channel, parsed in ready:
            keys = conversation_keys(row["channel_id"], parsed)
            if keys & blocked:
                blocked |= keys
                held += 1
                continue
            outcome = await self._apply_one(row, channel, parsed)
            if outcome == "done":
                self._forget([row["id"]])
            else:
                blocked |= keys
                held += outcome == "elsewhere"
        return len(rows) - held

    async def _claim_due(
        self, tx: Tx, now: datetime, limit: int
    ) -> tuple[list[dict[str, Any]], Sequence[Any]]:
        """This pass's deliveries (due, oldest first), and what else is pending that orders them or
        wakes the loop: earlier deliveries held by other passes, and those waiting for a retry."""
        params = {"b_now": now, "b_limit": limit}
        if self.store.db.is_sqlite:
            # One process, and this pass holds the write lock: nothing is held elsewhere or stored
            # meanwhile, so the due ones and those waiting for their retry come in one statement.
            found = (await tx.conn.execute(_PENDING, params)).mappings().all()
            due = sorted(
                (dict(r) for r in found if r["due_at"] is None or r["due_at"] <= now), key=lambda r: r["id"]
            )
            return due, [r for r in found if r["due_at"] is not None and r["due_at"] > now]
        rows = [dict(r) for r in (await tx.conn.execute(_CLAIM_DUE_LOCKED, params)).mappings()]
        # Read after the claim: a delivery committed meanwhile with a lower id counts as earlier.
        top = rows[-1]["id"] if rows else 0
        unclaimed = {"b_now": now, "b_top": top, "b_ids": [r["id"] for r in rows]}
        return rows, (await tx.conn.execute(_UNCLAIMED, unclaimed)).mappings().all()

    def _keys_of(self, rows: Sequence[Any]) -> set[tuple[str, str]]:
        """The conversation keys of deliveries this pass does not apply (parsed for their keys
        only, once: another process's claimed deliveries come up in every pass beside them)."""
        keys: set[tuple[str, str]] = set()
        for row in rows:
            known = self._keys.get(row["id"])
            if known is None:
                known = self._parse_keys(row)
                if len(self._keys) >= 10_000:
                    self._keys.clear()
                self._keys[row["id"]] = known
            keys |= known
        return keys

    def _parse_keys(self, row: Any) -> frozenset[tuple[str, str]]:
        parsed = self._parsed.get(row["id"])
        if parsed is None:
            channel = self.channels.get(row["channel_id"])
            if channel is None:
                return frozenset()
            raw = RawEvent(row["channel_id"], row["body"], row["headers"] or {}, row["received_at"])
            try:
                parsed = channel.parse(raw)
            except Exception:
                return frozenset()  # it fails again when its turn comes, and is finished as failed
        return frozenset(conversation_keys(row["channel_id"], parsed))

    def _forget(self, ids: Iterable[int]) -> None:
        """Drop what is kept of deliveries that are finished."""
        for rid in ids:
            self._keys.pop(rid, None)
            self._parsed.pop(rid, None)
            self._stored_at.pop(rid, None)

    async def process_one(self, row: dict[str, Any]) -> None:
        """Parse and apply one stored delivery (also used by ``hub replay``)."""
        prepared = self._prepare(row)
        await self._finish_unusable()
        if prepared is not None:
            await self._apply_one(*prepared, replay=True)

    async def _finish_unusable(self) -> None:
        for bad, state, error in self._unusable:
            await self._finish(bad["id"], state, error)
        self._unusable.clear()

    def _prepare(self, row: dict[str, Any]) -> tuple[dict[str, Any], Channel, list[ParsedEvent]] | None:
        row["stored_at"] = self._stored_at.get(row["id"])
        channel = self.channels.get(row["channel_id"])
        if channel is None:
            # Disabled or removed after the delivery was stored: keep it for a replay.
            self._unusable.append((row, "skipped", "channel not active"))
            return None
        raw = RawEvent(row["channel_id"], row["body"], row["headers"] or {}, row["received_at"])
        try:
            parsed = self._parsed.get(row["id"])
            if parsed is None:
                parsed = channel.parse(raw)
            # Re-validate what a plugin returned so a wrong shape fails here, not in storage.
            parsed = _parsed_list.validate_python(parsed)
            # Text no database holds (a lone surrogate, NUL) is repaired; the raw delivery is kept.
            parsed = repair_events(parsed)
        except Exception as exc:
            log.exception("channel %s could not parse raw event %s", row["channel_id"], row["id"])
            self._unusable.append((row, "failed", f"parse: {type(exc).__name__}: {exc}"))
            return None
        return row, channel, parsed

    async def _apply_one(
        self, row: dict[str, Any], channel: Channel, parsed: list[ParsedEvent], *, replay: bool = False
    ) -> Literal["done", "retry", "elsewhere"]:
        """Apply one delivery; ``replay`` (``hub replay``) applies it whatever its state. Says
        whether it is done (or finished as failed), waits for its retry, or was not this
        process's to apply (applied, or being applied, by another)."""
        try:
            async with self.store.tx() as tx:
                if not replay and not await _claim(tx, [row["id"]]):
                    return "elsewhere"  # applied meanwhile, or being applied, by another process
                await apply_events(tx, channel, parsed)
                await tx.conn.execute(_REPLAYED, {"b_id": row["id"], "b_at": utcnow()})
        except Exception as exc:
            log.warning("applying raw event %s failed (%s); applying its events one by one", row["id"], exc)
            failed = await self._apply_each(row, channel, parsed)
            if failed:
                return "done" if await self._retry_later(row, failed) else "retry"
            await self._finish(row["id"], "done", None)
        self._processed([row])
        return "done"

    async def _apply_each(
        self, row: dict[str, Any], channel: Channel, parsed: list[ParsedEvent]
    ) -> list[tuple[int, str]]:
        """Apply each event of a delivery in a transaction of its own, messages first (so a receipt
        or reaction finds its message), so that one that cannot be stored holds back only itself.
        Returns (index, error) of those that failed. Applying again is harmless: a message already
        stored, a receipt already applied or an edit already made has no second effect."""
        order = sorted(range(len(parsed)), key=lambda i: not isinstance(parsed[i], InboundMessage))
        failed: list[tuple[int, str]] = []
        for i in order:
            try:
                async with self.store.tx() as tx:
                    await apply_events(tx, channel, [parsed[i]])
            except Exception as exc:
                log.exception(
                    "raw event %s: event %d (%s) could not be applied", row["id"], i, parsed[i].type
                )
                failed.append((i, f"{type(exc).__name__}: {exc}"))
        return failed

    async def _retry_later(self, row: dict[str, Any], failed: list[tuple[int, str]]) -> bool:
        """Count a failed attempt and schedule the next one; the loop goes on with other deliveries
        meanwhile. After ``max_attempts`` the delivery is ``failed`` (``hub replay`` runs it again).
        True when it is finished (failed), False when it waits for its retry."""
        attempts = int(row["attempts"]) + 1
        error = "apply: " + "; ".join(f"event {i}: {err}" for i, err in failed)
        if attempts >= self.max_attempts:
            await self._finish(row["id"], "failed", error, attempts)
            return True
        due = utcnow() + timedelta(seconds=min(2**attempts * 0.1, 5))
        self._retry_at(due)
        async with self.store.db.write() as conn:
            await conn.execute(
                R.update()
                .where(R.c.id == row["id"])
                .values(state="pending", error=error, attempts=attempts, due_at=due)
            )
        return False

    def _processed(self, rows: Sequence[dict[str, Any]]) -> None:
        """Count applied deliveries, and the time each spent from stored to applied (from when it
        was received, for one stored by another process, whose store time this one does not know)."""
        self.processed += len(rows)
        if self.metrics is None:
            return
        self.metrics.inbound_processed.inc(len(rows))
        now, wall = time.monotonic(), utcnow()
        for row in rows:
            stored = row.get("stored_at")
            waited = now - stored if stored is not None else (wall - row["received_at"]).total_seconds()
            self.metrics.stage("processing", waited)

    async def _finish(self, rid: int, state: str, error: str | None, attempts: int | None = None) -> None:
        values: dict[str, Any] = {"state": state, "error": error, "processed_at": utcnow(), "due_at": None}
        if attempts is not None:
            values["attempts"] = attempts
        async with self.store.db.write() as conn:
            await conn.execute(R.update().where(R.c.id == rid).values(**values))


# Built once: building a statement cost more than running it on SQLite (profiled).
_COLUMNS = (R.c.id, R.c.channel_id, R.c.body, R.c.headers, R.c.received_at, R.c.attempts, R.c.due_at)
_NOW = sa.bindparam("b_now", type_=schema.TS)
_IDS: sa.BindParameter[list[int]] = sa.bindparam("b_ids", expanding=True)
# A pass's claim: the due deliveries, oldest first (locked, skipping those another pass holds, on
# PostgreSQL); then every other pending one that is earlier, or waits for its retry.
_DUE = (
    sa.select(*_COLUMNS)
    .where(R.c.state == "pending", sa.or_(R.c.due_at.is_(None), R.c.due_at <= _NOW))
    .order_by(R.c.id)
    .limit(sa.bindparam("b_limit"))
)
_CLAIM_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_WAITING = sa.select(*_COLUMNS).where(R.c.state == "pending", R.c.due_at > _NOW)
_PENDING = sa.union_all(sa.select(_DUE.subquery()), sa.select(_WAITING.subquery()))
_UNCLAIMED = sa.select(*_COLUMNS).where(
    R.c.state == "pending",
    R.c.id.not_in(_IDS),
    sa.or_(R.c.id < sa.bindparam("b_top"), R.c.due_at > _NOW),
)
_CLAIM = sa.select(R.c.id).where(R.c.id.in_(_IDS), R.c.state == "pending")
_CLAIM_LOCKED = _CLAIM.with_for_update(skip_locked=True)
_DONE_ANY = R.update().values(
    state="done", processed_at=sa.bindparam("b_at", type_=schema.TS), error=None, due_at=None
)
_DONE = _DONE_ANY.where(R.c.id.in_(_IDS), R.c.state == "pending")
_REPLAYED = _DONE_ANY.where(R.c.id == sa.bindparam("b_id"))


async def _claim(tx: Tx, ids: list[int]) -> set[int]:
    """Lock the deliveries about to be applied in this transaction; the ids still pending and not
    locked by another process's transaction (PostgreSQL; SQLite's one writer needs no lock)."""
    return set(await tx.conn.scalars(_CLAIM if tx.db.is_sqlite else _CLAIM_LOCKED, {"b_ids": ids}))


def conversation_keys(channel_id: str, parsed: Sequence[ParsedEvent]) -> set[tuple[str, str]]:
    """What orders a delivery against others: the channel's ids of every contact it names. Two
    deliveries sharing a key are applied in arrival order; a receipt or edit naming no contact
    orders against nothing (it finds its message whenever that is stored, or waits for it)."""
    keys: set[tuple[str, str]] = set()
    for ev in parsed:
        contact = getattr(ev, "contact", None)
        if contact is not None:
            keys.update((channel_id, i) for i in contact.ids)
    return keys


def in_order(
    rows: Sequence[tuple[int, set[tuple[str, str]]]], mine: set[int], blocked: set[tuple[str, str]]
) -> set[int]:
    """The ids, of ``rows`` (id and conversation keys, in arrival order), that can be applied now
    without overtaking an earlier delivery of their conversation: those this transaction holds
    (``mine``) and whose keys no earlier row that is not held, nor ``blocked``, shares."""
    held = set(blocked)
    take: set[int] = set()
    for rid, keys in rows:
        if rid in mine and not keys & held:
            take.add(rid)
        else:
            held |= keys
    return take


async def apply_events(tx: Tx, channel: Channel, parsed: Sequence[ParsedEvent]) -> None:
    """Apply one delivery's normalized events to the records, emitting app events."""
    await apply_deliveries(tx, [(channel, parsed)])


async def apply_deliveries(tx: Tx, deliveries: Sequence[tuple[Channel, Sequence[ParsedEvent]]]) -> None:
    """Apply several deliveries: new messages first, all at once (``hub.bulk``, the one path that
    stores messages), then receipts, reactions, edits and deletions in order, so that each finds a
    message that arrived in the same batch. Echoes of the hub's own sends update the message they
    echo (``hub.echoes``) instead of becoming new ones."""
    messages = await match_echoes(
        tx,
        [(channel, ev) for channel, parsed in deliveries for ev in parsed if isinstance(ev, InboundMessage)],
    )
    await apply_messages(tx, messages)
    for channel, parsed in deliveries:
        for ev in parsed:
            if isinstance(ev, StatusUpdate):
                await _apply_status(tx, channel.channel_id, ev)
            elif isinstance(ev, WatermarkUpdate):
                await _apply_watermark(tx, channel.channel_id, ev)
            elif isinstance(ev, ReactionUpdate):
                await _apply_reaction(tx, channel.channel_id, ev)
            elif isinstance(ev, MessageEdit | MessageDeletion):
                await apply_change(tx, channel.channel_id, ev)


async def _apply_status(tx: Tx, cid: str, ev: StatusUpdate) -> None:
    msg = (
        (await tx.conn.execute(sa.select(M).where(M.c.channel_id == cid, M.c.external_id == ev.external_id)))
        .mappings()
        .first()
    )
    if msg is None:
        # The receipt beat the send call's answer (or belongs to a message sent elsewhere): keep
        # it, the outbox applies it once the provider id is known.
        await tx.conn.execute(
            schema.pending_statuses.insert().values(
                channel_id=cid,
                external_id=ev.external_id,
                update=ev.model_dump(mode="json"),
                created_at=utcnow(),
            )
        )
        return
    await apply_status(tx, dict(msg), MessageStatus(ev.status), ev.timestamp, ev.error)


async def _apply_watermark(tx: Tx, cid: str, ev: WatermarkUpdate) -> None:
    I = schema.contact_identities  # noqa: E741
    contact_id = await tx.conn.scalar(
        sa.select(I.c.contact_id).where(I.c.channel_id == cid, I.c.identity.in_(ev.contact.ids)).limit(1)
    )
    conds = [M.c.channel_id == cid, M.c.direction == "outbound"]
    if ev.external_ids:
        target = sa.or_(M.c.external_id.in_(ev.external_ids), M.c.created_at <= ev.watermark)
    else:
        target = M.c.created_at <= ev.watermark
    if contact_id is None:
        if not ev.external_ids:
            return
        target = M.c.external_id.in_(ev.external_ids)
    else:
        conv_ids = sa.select(schema.conversations.c.id).where(schema.conversations.c.contact_id == contact_id)
        conds.append(M.c.conversation_id.in_(conv_ids))
    rows = (
        (
            await tx.conn.execute(
                sa.select(M)
                .where(
                    *conds,
                    target,
                    M.c.status.in_(["sent", "delivered"] if ev.status == "read" else ["sent"]),
                )
                .order_by(M.c.created_at)
            )
        )
        .mappings()
        .all()
    )
    for msg in rows:
        await apply_status(tx, dict(msg), MessageStatus(ev.status), ev.watermark)
    if ev.external_ids:
        # A receipt naming a message whose send call has not answered yet (Messenger often
        # delivers before the Send API answers): keep it for the outbox, as for StatusUpdate.
        known = set(
            await tx.conn.scalars(
                sa.select(M.c.external_id).where(M.c.channel_id == cid, M.c.external_id.in_(ev.external_ids))
            )
        )
        for ext in dict.fromkeys(ev.external_ids):
            if ext not in known:
                update = StatusUpdate(external_id=ext, status=ev.status, timestamp=ev.watermark)
                await tx.conn.execute(
                    schema.pending_statuses.insert().values(
                        channel_id=cid,
                        external_id=ext,
                        update=update.model_dump(mode="json"),
                        created_at=utcnow(),
                    )
                )


async def _apply_reaction(tx: Tx, cid: str, ev: ReactionUpdate) -> None:
    msg = (
        (
            await tx.conn.execute(
                sa.select(M).where(M.c.channel_id == cid, M.c.external_id == ev.target_external_id)
            )
        )
        .mappings()
        .first()
    )
    if msg is None:
        log.info("reaction on unknown message %s on channel %s ignored", ev.target_external_id, cid)
        return
    contact_id = await ensure_contact(tx, cid, ev.contact)
    reactions = [r for r in (msg["reactions"] or []) if r.get("by") != contact_id]
    if ev.emoji:
        reactions.append({"emoji": ev.emoji, "by": contact_id, "at": ev.timestamp.isoformat()})
    if reactions == (msg["reactions"] or []):
        return
    now = utcnow()
    await tx.conn.execute(M.update().where(M.c.id == msg["id"]).values(reactions=reactions, updated_at=now))
    updated = {**dict(msg), "reactions": reactions, "updated_at": now}
    await tx.emit(
        "message.updated",
        message_dict(updated),
        channel_id=cid,
        conversation_id=msg["conversation_id"],
    )
