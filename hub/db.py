"""The database: one async engine, write transactions, and the few dialect differences.

SQLite (aiosqlite, WAL) is the embedded default; PostgreSQL (asyncpg) takes the same code. On SQLite
one process writes at a time by design, so writers queue on an asyncio lock instead of meeting
``database is locked``; PostgreSQL needs no such lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.schema import Table

from hub import jsontext, sqlite_driver
from hub.errors import ConfigError
from hub.sqlite_driver import Checkpointer, LoopConnection

__all__ = ["Database", "async_url", "new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str = "") -> str:
    """A time-ordered unique id (48-bit milliseconds + 80 random bits, Crockford base32)."""
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[n & 31])
        n >>= 5
    return prefix + "".join(reversed(chars))


def async_url(url: str) -> str:
    """Map a user's database URL to the async driver SQLAlchemy needs."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"database_url is not a valid URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigError(f"database_url must start with sqlite:// or postgresql://, got {backend!r}")
    return parsed.render_as_string(hide_password=False)


class Database:
    def __init__(
        self, url: str, *, echo: bool = False, checkpoint_interval: float = 1.0, pool_size: int = 30
    ) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        self.checkpointer: Checkpointer | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._restart_wanted = asyncio.Event()
        self._closing = False
        self._wal_task: asyncio.Task[None] | None = None
        if self.is_sqlite:
            path = make_url(self.url).database or ""
            if path in ("", ":memory:") or path.startswith("file:"):
                raise ConfigError(
                    "database_url must name a SQLite file (sqlite:///var/hub.db): an in-memory "
                    "database would lose every stored webhook and queued send when the hub stops"
                )
            self.checkpointer = Checkpointer(
                path, checkpoint_interval, restart_due=self._restart_due if self._loop else None
            )
            pragmas = (*_SQLITE_PRAGMAS, "PRAGMA wal_autocheckpoint=0")

            async def creator() -> LoopConnection:
                return sqlite_driver.connect(path, timeout=30.0, pragmas=pragmas)

            # A connection costs no thread here, but one opened per checkout beyond the pool (and
            # closed on its return) was a sixth of the send API's CPU with 32 clients (profiled):
            # keep as many as a busy hub reads on at once, each holding up to 2 MB of page cache.
            kwargs.update(async_creator=creator, pool_size=pool_size, max_overflow=120)
        else:
            # All kept open (30 by default, as many as were allowed before: 10 + 20 overflow): an overflow
            # connection was opened and closed per checkout, and the pre-ping cost a round trip per
            # checkout; together they held the send API to 204/s against 493/s without them
            # (profiled, this machine). Without the ping, the first statement on a connection the
            # server dropped fails (that request or job errs and is retried) and SQLAlchemy then
            # replaces every pooled connection older than the failure.
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_pre_ping=False)
        # JSON columns (delivery headers, settings, reactions...) through orjson (``hub.jsontext``).
        kwargs.update(json_serializer=jsontext.strict_dumps, json_deserializer=jsontext.loads)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.checkpointer is not None:
            self.checkpointer.start()
            if self._loop is not None:
                self._wal_task = self._loop.create_task(self._restart_wal(), name="hub-sqlite-wal")

    def _restart_due(self) -> None:
        """Called on the checkpointer's thread: the WAL should start over (see ``Checkpointer``)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: the hub is stopping
            self._loop.call_soon_threadsafe(self._restart_wanted.set)

    async def _restart_wal(self) -> None:
        """Hold this process's writers back (they queue on the write lock, no polling) while
        the checkpointer restarts the WAL on a thread."""
        assert self.checkpointer is not None and self._write_lock is not None
        while True:
            await self._restart_wanted.wait()
            self._restart_wanted.clear()
            if self._closing:
                return
            await asyncio.to_thread(self.checkpointer.restart, "PASSIVE")
            async with self._write_lock:
                await asyncio.to_thread(self.checkpointer.restart)

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        if self.is_sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    async def dispose(self) -> None:
        if self._wal_task is not None:
            # Not cancelled: a restart running on its thread would outlive the task and find
            # its connection closed under it.
            self._closing = True
            self._restart_wanted.set()
            await self._wal_task
            self._wal_task = None
        await self.engine.dispose()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)


# WAL lets readers run beside the writer; NORMAL sync is durable against a process crash (the case
# a webhook's 200 must survive) and only a power loss can drop the last commits.
# journal_size_limit: the writer that starts the WAL over cuts the file back to 64 MB, so a burst
# does not leave a WAL of its own size on disk.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_size_limit=67108864",
)
