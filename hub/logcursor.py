"""A named position in the event log, kept in ``cursors``, for a consumer that reads the log in
order across restarts and processes (notifications, bots, automations).

Each batch moves the cursor with a compare-and-set (``move``) inside the transaction that does the
batch's work: if another process moved it first, the move fails, the transaction's work is not
wanted, and that batch is that process's.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.events import Store
from hub.models import utcnow

__all__ = ["LogCursor"]

E = schema.events
K = schema.cursors


class LogCursor:
    def __init__(self, name: str) -> None:
        self.key = ("_hub", name)

    async def get(self, conn: AsyncConnection) -> int | None:
        """The last event seq consumed; None before ``start_at_end``."""
        value = await conn.scalar(
            sa.select(K.c.value).where(K.c.channel_id == self.key[0], K.c.name == self.key[1])
        )
        return None if value is None else int(value)

    async def start_at_end(self, store: Store) -> None:
        """A consumer that never ran starts at the end of the log: it acts on what happens from
        now on, not on the past (a no-op once the cursor exists)."""
        async with store.tx() as tx:
            if await self.get(tx.conn) is None:
                last = int(await tx.conn.scalar(sa.select(sa.func.max(E.c.seq))) or 0)
                await tx.conn.execute(
                    store.db.insert(K)
                    .values(channel_id=self.key[0], name=self.key[1], value=str(last), updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["channel_id", "name"])
                )

    async def move(self, conn: AsyncConnection, start: int, to: int) -> bool:
        """From ``start`` to ``to``; False when it was no longer at ``start`` (another process)."""
        moved = await conn.execute(
            K.update()
            .where(K.c.channel_id == self.key[0], K.c.name == self.key[1], K.c.value == str(start))
            .values(value=str(to), updated_at=utcnow())
        )
        return bool(moved.rowcount)
