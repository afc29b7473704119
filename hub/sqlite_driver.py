"""SQLite for the async engine without a thread per connection.

aiosqlite runs every call (cursor, execute, fetch, commit, close) on a thread of its own and hands
the result back through the event loop: two thread switches and a loop wake-up per call. On a
local WAL database the call itself takes microseconds (an indexed read ~10 µs, a commit ~50 µs
here) while the round trip costs about a millisecond under load, and the threads fight the loop
for the GIL. So the hub runs SQLite on the loop's own thread, through this small adapter that
speaks the part of aiosqlite's API that SQLAlchemy's ``sqlite+aiosqlite`` dialect uses (it is
plugged in with ``create_async_engine(..., async_creator=...)``).

What keeps the loop responsive:

* Writes take the lock up front (``BEGIN IMMEDIATE`` before the first change) and the hub's own
  writers queue on an asyncio lock (``Database.write``), so a statement never waits inside SQLite
  for another connection of this process.
* Another process holding the write lock (a CLI command, say) makes SQLite answer "database is
  locked" at once (``busy_timeout`` is 0 here); the adapter then sleeps on the loop and tries
  again, up to ``timeout`` seconds, instead of blocking the loop inside SQLite. Only a statement
  that started no work is retried: one that fails outside a transaction (its ``BEGIN`` failed) or
  a ``COMMIT``.
* WAL checkpoints, which write the database file, run on a thread (``Checkpointer``), not inside
  a commit on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["Checkpointer", "LoopConnection", "LoopCursor", "connect"]

log = logging.getLogger("hub.db")
T = TypeVar("T")

# How the retry waits for another process's write lock: short sleeps first, then at most this.
_MAX_SLEEP = 0.05

# How long a RESTART checkpoint may hold writers back waiting for readers (see Checkpointer).
RESTART_WAIT = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


class LoopCursor:
    """An aiosqlite-like cursor whose coroutines finish without suspending (except to wait out a
    lock held by another process)."""

    __slots__ = ("_conn", "_cur")

    def __init__(self, conn: LoopConnection) -> None:
        self._conn = conn
        self._cur = conn.raw.cursor()

    async def __aenter__(self) -> LoopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cur.close()

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cur.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> LoopCursor:
        await self._conn.run(self._cur.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, seq: Iterable[Any]) -> LoopCursor:
        rows = list(seq)  # a retry must see the same parameters again
        await self._conn.run(self._cur.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cur.fetchmany(self._cur.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def close(self) -> None:
        self._cur.close()

    def __aiter__(self) -> LoopCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cur.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row


class LoopConnection:
    """An aiosqlite-like connection over a ``sqlite3.Connection`` used on the loop's thread."""

    def __init__(self, raw: sqlite3.Connection, timeout: float) -> None:
        self.raw = raw
        self.timeout = timeout

    # SQLAlchemy's adapter reaches for these aiosqlite attributes.
    @property
    def _conn(self) -> sqlite3.Connection:
        return self.raw

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self.raw

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn``; while another process holds the lock and nothing has started, wait and retry.

        Inside a transaction a failed statement may have done part of its work: only a statement
        that began no transaction (its BEGIN IMMEDIATE failed) is safe to repeat.
        """
        return await self._waiting_out_locks(
            fn, args, lambda in_tx: not in_tx and not self.raw.in_transaction
        )

    def cursor(self) -> LoopCursor:
        return LoopCursor(self)

    async def commit(self) -> None:
        # A COMMIT that found the database busy changed nothing and may be repeated.
        await self._waiting_out_locks(self.raw.commit, (), lambda _in_tx: True)

    async def _waiting_out_locks(
        self, fn: Callable[..., T], args: tuple[Any, ...], repeatable: Callable[[bool], bool]
    ) -> T:
        deadline = 0.0  # set at the first busy answer: the call that succeeds reads no clock
        sleep = 0.001
        while True:
            in_tx = self.raw.in_transaction
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or not repeatable(in_tx):
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.timeout
                elif now >= deadline:
                    raise
                await asyncio.sleep(sleep)
                sleep = min(sleep * 2, _MAX_SLEEP)

    async def rollback(self) -> None:
        self.raw.rollback()

    async def close(self) -> None:
        self.raw.close()

    def stop(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.raw.close()

    async def create_function(
        self, name: str, num_params: int, func: Any, deterministic: bool = False
    ) -> None:
        self.raw.create_function(name, num_params, func, deterministic=deterministic)


def connect(path: str, *, timeout: float = 30.0, pragmas: Sequence[str] = ()) -> LoopConnection:
    """Open ``path`` for use on the event loop's thread.

    ``isolation_level="IMMEDIATE"``: sqlite3 begins a write transaction (taking the write lock) just
    before the first INSERT/UPDATE/DELETE, so a later statement of that transaction cannot find the
    lock taken. Reads outside a write run in autocommit, each on a fresh snapshot.
    """
    raw = sqlite3.connect(path, timeout=0, isolation_level="IMMEDIATE", check_same_thread=False)
    try:
        for pragma in pragmas:
            raw.execute(pragma)
    except BaseException:
        raw.close()
        raise
    return LoopConnection(raw, timeout)


class Checkpointer:
    """Copies the WAL into the database file on a thread of its own, every ``interval`` seconds.

    The loop's connections run with ``wal_autocheckpoint=0``: a checkpoint writes (and on
    ``synchronous=NORMAL`` syncs) the database file, milliseconds that must not stall the loop.
    PASSIVE never waits for readers or writers; what it cannot copy now it copies next time.

    Copying is not enough under steady load. SQLite starts the WAL over only when a writer begins
    with every frame copied, and on a busy hub a write transaction is open across each checkpoint
    and commits after it, so the WAL grew for ever (measured: 3 GB a minute at 2,000 webhooks/s,
    its mapped index growing the process's RSS). Once the WAL holds ``restart_frames`` frames, the
    thread calls ``restart_due``: the database then holds its own writers back (``Database``
    takes its write lock) and calls ``restart``, a RESTART checkpoint that copies the last frames
    and waits for readers to move on, so the next commit starts the WAL over;
    ``journal_size_limit`` on the loop's connections trims the file. (RESTART on this thread lost
    the race for the write lock to a busy loop, which takes it back within a millisecond.) At
    1,000 webhooks/s this runs about once a second, each RESTART taking 2-16 ms (measured), and
    the webhook-to-app p99 there went from 15-21 ms to 27-40 ms.
    """

    def __init__(
        self,
        path: str,
        interval: float = 1.0,
        *,
        restart_frames: int = 4096,
        restart_due: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self.restart_frames = restart_frames
        self.restart_due = restart_due
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restart_conn: sqlite3.Connection | None = None
        self._frames_at_restart = -1
        self.runs = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="hub-sqlite-checkpoint", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        conn = sqlite3.connect(self.path, timeout=RESTART_WAIT, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                self.checkpoint(conn)
            self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.runs += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint of %s failed (retried in %g s): %s", self.path, self.interval, exc)
            return
        # "All copied" is no reason to skip: a write transaction open meanwhile (on a busy hub,
        # nearly always) commits more frames after it, and its BEGIN came too early to start the
        # WAL over. Only an idle WAL that a restart already left fully copied is skipped.
        idle = copied == frames == self._frames_at_restart
        if frames >= self.restart_frames and not idle and not self._stop.is_set():
            self._frames_at_restart = frames
            if self.restart_due is not None:
                self.restart_due()
            else:
                self.restart()

    def restart(self, mode: str = "RESTART") -> bool:
        """A RESTART checkpoint (blocking: run it on a thread); False if readers kept it from
        finishing within ``RESTART_WAIT`` (a long read elsewhere: a report, a backup). Calls are
        made one at a time: ``Database`` makes a PASSIVE one first (``mode``), to copy what came
        since the thread's, and then the RESTART under its write lock, so writers are held back
        only while the last few frames are copied."""
        try:
            if self._restart_conn is None:
                # Readers are waited for briefly, writers being held back meanwhile; the next
                # interval tries again.
                self._restart_conn = sqlite3.connect(self.path, timeout=RESTART_WAIT, check_same_thread=False)
            busy, _frames, _copied = self._restart_conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint (%s) of %s failed (retried later): %s", mode, self.path, exc)
            return False
        if mode == "RESTART" and not busy:
            self.restarts += 1
        return not busy

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._restart_conn is not None:
            self._restart_conn.close()
            self._restart_conn = None
