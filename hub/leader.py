"""One process at a time for work whose order matters: a PostgreSQL session advisory lock.

Inbound deliveries must be applied in arrival order (two messages of one conversation never out
of order), so one process applies them while the others wait to take over. The lock lives on a
connection of its own: when the leading process dies (even SIGKILL) its connection closes, the
server releases the lock, and a waiting process gets it at once. A leader whose connection is
lost stops leading (``lost``), since another process may lead by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.engine import make_url

from hub.db import Database

__all__ = ["INBOUND_LEADER", "Leadership"]

log = logging.getLogger("hub.leader")
INBOUND_LEADER = 0x6875625F696E62  # "hub_inb"


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
