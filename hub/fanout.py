"""Live events across hub processes on one PostgreSQL database.

Each process runs one ``Feed``. It publishes, in seq order, every event of every process up to
the horizon (``Store.horizon``: below it no event-writing transaction is in flight), to
this process's live streams; ``hub_on_event`` and the other in-process observers still see only
the events this process committed, so a plugin hook or a worker runs once per event in the
cluster, not once per process. Cluster observers (``on_remote``) see the others' events: the
channel cache uses them to pick up an admin's change made on another process.

A process that commits events wakes its own feed at once and tells the others with one
``NOTIFY hub_events`` per burst (sent after the commit, outside the writing transaction:
``NOTIFY`` inside it would make commits take PostgreSQL's notification-queue lock one at a time).
The others ``LISTEN`` on a connection of their own. A lost notification (a reconnect) costs at
most ``poll_interval``: the feed also polls, and every event comes from the log, never from the
notification itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub.events import Frame, Store
from hub.models import Event
from hub.worker import cancel_and_wait, wait_event

__all__ = ["CHANNEL", "EVENTS", "INBOX", "Feed"]

log = logging.getLogger("hub.fanout")
CHANNEL = "hub_events"
EVENTS = "events"
INBOX = "inbox"
"""Deliveries were stored: the process that applies them (``hub.inbound``) looks at once."""
_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")


class Feed:
    """Publishes the event log to this process, in order, as far as the horizon allows."""

    def __init__(self, store: Store, *, poll_interval: float = 1.0, page: int = 2000) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.page = page
        self.node = secrets.token_hex(8)
        self.published = 0
        self.on_remote: list[Callable[[list[Frame]], None]] = []
        self.on_signal: dict[str, list[Callable[[], None]]] = {}
        """Callbacks for another process's ``signal(topic)`` (e.g. "inbox": deliveries stored)."""
        self._local: dict[int, tuple[Event, Frame]] = {}
        self._wake = asyncio.Event()
        self._notify_wanted = asyncio.Event()
        self._topics: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: Any = None

    # ---- called by Store.tx ---------------------------------------------------------------------

    def expect(self, events: list[Event], frames: list[Frame]) -> None:
        for ev, frame in zip(events, frames, strict=True):
            self._local[ev.seq] = (ev, frame)

    def forget(self, events: list[Event]) -> None:
        for ev in events:
            self._local.pop(ev.seq, None)

    def wake(self, *, local: bool = False) -> None:
        self._wake.set()
        if local:
            self.signal(EVENTS)

    def signal(self, topic: str) -> None:
        """Tell the other processes about ``topic`` (one NOTIFY per burst and topic)."""
        self._topics.add(topic)
        self._notify_wanted.set()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.published = await self.store.horizon()
        self.store.bus.last_seq = self.published
        self.store.feed = self
        self._tasks = [
            asyncio.create_task(self._run(), name="hub-feed"),
            asyncio.create_task(self._listen(), name="hub-feed-listen"),
            asyncio.create_task(self._notifier(), name="hub-feed-notify"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks, "the event feed")
        self._tasks = []
        if self.store.feed is self:
            self.store.feed = None
        # What this process committed last is published before it goes (a stream still open
        # gets it; the others get it from their own feeds).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.advance(), 5)
        await self._close_listener()

    # ---- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.poll_interval)
            self._wake.clear()
            try:
                await self.advance()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event log failed; retrying")
                await asyncio.sleep(0.5)
                self._wake.set()

    async def advance(self) -> int:
        """Publish everything up to the current horizon; returns how many events."""
        horizon = await self.store.horizon()
        count = 0
        while horizon > self.published:
            start = self.published
            wanted = range(start + 1, horizon + 1)
            if len(wanted) <= self.page and all(seq in self._local for seq in wanted):
                # Every seq up to the horizon is one this process committed: no read needed.
                frames = [self._local[seq][1] for seq in wanted]
                upto = horizon
            else:
                frames = await self.store.events_after(start, self.page, upto=horizon)
                upto = frames[-1].seq if len(frames) == self.page else horizon
            self._publish(frames, upto)
            count += len(frames)
        return count

    def _publish(self, frames: list[Frame], upto: int) -> None:
        bus = self.store.bus
        local_events: list[Event] = []
        remote: list[Frame] = []
        for frame in frames:
            mine = self._local.pop(frame.seq, None)
            if mine is not None:
                local_events.append(mine[0])
            else:
                remote.append(frame)
        # Seqs that never became events (a rolled-back transaction) leave nothing behind.
        for seq in [s for s in self._local if s <= upto]:
            del self._local[seq]
        self.published = upto
        bus.publish(local_events, frames)
        bus.last_seq = max(bus.last_seq, upto)
        if remote:
            for observe in self.on_remote:
                try:
                    observe(remote)
                except Exception:
                    log.exception("a cluster event observer failed")

    # ---- NOTIFY / LISTEN ----------------------------------------------------------------------

    async def _notifier(self) -> None:
        """One NOTIFY per burst of local commits: while one is on its way, the next ones merge."""
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            topics, self._topics = self._topics, set()
            try:
                async with self.store.db.read() as conn:
                    for topic in sorted(topics):
                        await conn.execute(_NOTIFY, {"channel": CHANNEL, "payload": f"{self.node} {topic}"})
                    await conn.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the others find the events by polling meanwhile
                log.warning("NOTIFY %s failed: %s", CHANNEL, exc)
                await asyncio.sleep(0.5)

    async def _listen(self) -> None:
        """A connection of its own, LISTENing; reconnects with a pause, and catches up each time."""
        import asyncpg

        url = make_url(self.store.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                self._listener = await asyncpg.connect(url, timeout=10)
                lost = asyncio.Event()
                self._listener.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await self._listener.add_listener(CHANNEL, self._on_notify)
                # Anything that happened while not listening.
                self._wake.set()
                for callbacks in self.on_signal.values():
                    for callback in callbacks:
                        callback()
                await lost.wait()
                log.warning("the LISTEN connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN failed (%s); polling every %.1f s meanwhile", exc, self.poll_interval)
            await self._close_listener()
            await asyncio.sleep(1.0)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        node, _, topic = payload.partition(" ")
        if node == self.node:
            return
        if topic == EVENTS:
            self._wake.set()
        for callback in self.on_signal.get(topic, []):
            callback()

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
