"""How many stored deliveries wait to be processed, for the overload bound on webhooks.

Another process may be the one processing them (a web-only node stores, workers elsewhere
process), so the figure is counted in the database now and then, plus what this process stored
since the last count. Between counts it can only be too high, never too low: the bound errs on the
side of refusing (503, the provider retries) rather than of growing.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from hub import schema
from hub.events import Store
from hub.worker import Worker

__all__ = ["Backlog"]

log = logging.getLogger("hub.backlog")
R = schema.raw_events


class Backlog(Worker):
    task_name = "hub-backlog"

    def __init__(self, store: Store, bound: int, interval: float = 1.0) -> None:
        super().__init__()
        self.store = store
        self.bound = bound
        self.interval = interval
        self.pending = 0

    @property
    def full(self) -> bool:
        return self.pending >= self.bound

    def stored(self, n: int) -> None:
        self.pending += n

    async def count(self) -> int:
        """Pending deliveries in the database, counted up to just past the bound (cheap either way)."""
        some = sa.select(R.c.id).where(R.c.state == "pending").limit(self.bound + 1).subquery()
        async with self.store.db.read() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(some)) or 0)

    async def start(self) -> None:
        self.pending = await self.count()
        await super().start()

    async def run(self) -> None:
        while True:
            await self.idle(self.interval)
            try:
                self.pending = await self.count()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("counting pending deliveries failed")
