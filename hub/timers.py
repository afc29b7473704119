"""Work that falls due with time: snoozed conversations wake up, and agents whose app has been
away for a while go offline (when ``hub.auto_offline_minutes`` is set)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub import schema
from hub.events import Store
from hub.models import utcnow
from hub.presence import set_presence
from hub.records import fetch_conversation
from hub.routing import BUILTIN_AVAILABILITY, route
from hub.worker import Worker

__all__ = ["Connections", "TimedWork"]

log = logging.getLogger("hub.timers")
C = schema.conversations
U = schema.users
SYSTEM = {"type": "system", "id": "system", "name": None}


class Connections:
    """Open app streams per user in this process, and when each user was last seen connected.

    ``users.last_connection_at`` is when the user was last seen with an app stream open, on any
    process: set when a stream opens or closes, and refreshed by each process for the users it
    holds streams of at every ``TimedWork`` round (``heartbeat``), which is far shorter than
    ``auto_offline_minutes``. A user connected to another process is therefore never taken for
    gone, and one whose process crashed goes offline N minutes after its last heartbeat.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.open: Counter[str] = Counter()

    async def opened(self, user_id: str) -> None:
        self.open[user_id] += 1
        if self.open[user_id] == 1:
            await self._mark(user_id, utcnow())

    async def closed(self, user_id: str) -> None:
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]
            await self._mark(user_id, utcnow())

    async def heartbeat(self, now: datetime | None = None) -> None:
        """Every user with a stream open here is still connected as of ``now``."""
        if self.open:
            async with self.store.db.write() as conn:
                await conn.execute(
                    U.update().where(U.c.id.in_(list(self.open))).values(last_connection_at=now or utcnow())
                )

    async def _mark(self, user_id: str, at: datetime | None) -> None:
        try:
            async with self.store.db.write() as conn:
                await conn.execute(U.update().where(U.c.id == user_id).values(last_connection_at=at))
        except Exception as exc:  # a stream closing at shutdown must not fail for this
            log.warning("could not record %s's app connection: %s", user_id, exc)


class TimedWork(Worker):
    task_name = "hub-timers"

    def __init__(
        self, store: Store, connections: Connections, auto_offline_minutes: int = 0, interval: float = 5.0
    ) -> None:
        super().__init__()
        self.store = store
        self.connections = connections
        self.auto_offline = timedelta(minutes=auto_offline_minutes) if auto_offline_minutes else None
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                now = utcnow()
                await self.wake_snoozed(now)
                if self.auto_offline is not None:
                    await self.connections.heartbeat(now)
                    await self.set_away_offline(now)
            except Exception:
                log.exception("timed work failed; trying again in %s s", self.interval)
            await self.idle(self.interval)

    async def wake_snoozed(self, now: datetime) -> int:
        """Reopen every conversation whose snooze ran out (each once, whichever process sees it)."""
        async with self.store.db.read() as conn:
            due = list(
                await conn.scalars(
                    sa.select(C.c.id).where(C.c.status == "snoozed", C.c.snoozed_until <= now).limit(500)
                )
            )
        woken = 0
        for conv_id in due:
            async with self.store.tx() as tx:
                res = await tx.conn.execute(
                    C.update()
                    .where(C.c.id == conv_id, C.c.status == "snoozed", C.c.snoozed_until <= now)
                    .values(status="open", snoozed_until=None, updated_at=utcnow())
                )
                if not res.rowcount:
                    continue  # another process woke it, or an agent changed it meanwhile
                row = dict((await tx.conn.execute(sa.select(C).where(C.c.id == conv_id))).mappings().one())
                await route(tx, [], [row])
                conv = await fetch_conversation(tx.conn, conv_id)
                assert conv is not None
                data = {**conv, "changed": ["snoozed_until", "status"], "by": SYSTEM}
                await tx.emit(
                    "conversation.updated", data, channel_id=conv["channel_id"], conversation_id=conv_id
                )
                woken += 1
        return woken

    async def set_away_offline(self, now: datetime) -> int:
        """Agents last seen connected (on any process) more than N minutes ago go offline."""
        assert self.auto_offline is not None
        async with self.store.db.read() as conn:
            gone = [
                u
                for u in await conn.scalars(
                    sa.select(U.c.id).where(
                        U.c.active.is_(True),
                        U.c.availability != "offline",
                        U.c.last_connection_at <= now - self.auto_offline,
                    )
                )
                if u not in self.connections.open
            ]
        for user_id in gone:
            async with self.store.tx() as tx:
                await set_presence(tx, user_id, "offline", BUILTIN_AVAILABILITY["offline"][2], SYSTEM)
        return len(gone)
