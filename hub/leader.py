"""One process at a time for work whose order matters: a PostgreSQL session advisory lock.

A pull channel's mailbox is read by one process (two would read every message twice), and the
reply-window announcements are made by one; the others wait to take over. The lock lives on a
connection of its own: when the leading process dies (even SIGKILL) its connection closes, the
server releases the lock, and a waiting process gets it at once. A leader whose connection is
lost stops leading (``lost``), since another process may lead by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

from hub.db import Database

__all__ = ["WINDOWS_LEADER", "Leadership", "key_for", "while_leading"]

log = logging.getLogger("hub.leader")
WINDOWS_LEADER = 0x6875625F77696E  # "hub_win"


def key_for(name: str) -> int:
    """An advisory lock key (a signed 64-bit integer) for a named piece of work."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


async def while_leading(db: Database, key: int, what: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` whenever this process leads ``key``: at once on SQLite; on PostgreSQL once the
    lock is this process's, again after a lost lead is won back. Returns when ``work`` returns."""
    while True:
        lead = Leadership(db, key, what)
        try:
            await lead.acquire()
            task = asyncio.ensure_future(work())
            lost = asyncio.ensure_future(lead.lost.wait())
            try:
                await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
                lead_lost = lost.done() and not task.done()
            finally:
                for t in (task, lost):
                    t.cancel()
                await asyncio.gather(task, lost, return_exceptions=True)
            if not lead_lost:
                task.result()  # the work's own exception, if it raised one
                return
            log.warning("lost the lead of %s (its connection closed); waiting for it again", what)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed, or its lead could not be taken; retrying in 1 s", what)
            await asyncio.sleep(1)
        finally:
            await lead.release()


class Leadership:
    def __init__(self, db: Database, key: int, what: str) -> None:
        self.db = db
        self.key = key
        self.what = what
        self.lost = asyncio.Event()
        self._conn: Any = None

    async def acquire(self) -> None:
        """Wait until this process leads (returns at once on SQLite: one process by design)."""
        if self.db.is_sqlite:
            return
        import asyncpg

        url = make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.lost.clear()
        conn = await asyncpg.connect(url, timeout=10)
        try:
            conn.add_termination_listener(lambda _conn: self.lost.set())
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
            if not got:
                log.info("another process runs %s; this one takes over if it stops", self.what)
                await conn.execute("SELECT pg_advisory_lock($1)", self.key)
            log.info("this process runs %s", self.what)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.terminate()
            raise
        self._conn = conn

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()
