"""Customer names a channel can only learn by asking the provider (Messenger's user profile).

A webhook often names nobody (Messenger and Instagram send only an id), and ``parse`` must stay
pure, so the name is fetched after the message is stored: this worker watches ``message.created``
for inbound messages from a contact without a name, asks the channel's optional
``fetch_profile``, and when a name comes back sets it on the contact (if it still has none) and
emits ``conversation.updated`` for the contact's conversations. A failed or slow fetch holds
nothing back: the message was stored and published before the fetch began.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import sqlalchemy as sa

from hub import schema
from hub.channel import Channel
from hub.channels import ChannelService
from hub.events import Store
from hub.models import ContactRef, Event, utcnow
from hub.records import fetch_conversations
from hub.worker import Worker

__all__ = ["ProfileWorker"]

log = logging.getLogger("hub.profiles")
K = schema.contacts
ID = schema.contact_identities


class ProfileWorker(Worker):
    """Fetches missing contact names, one contact at a time, each contact once per process."""

    task_name = "hub-profiles"

    def __init__(self, store: Store, channels: ChannelService, *, timeout: float = 15.0) -> None:
        super().__init__()
        self.store = store
        self.channels = channels
        self.timeout = timeout
        self._queue: deque[tuple[str, str]] = deque()
        self._asked: set[tuple[str, str]] = set()

    def observe(self, event: Event) -> None:
        """Event-bus observer: queue the sender of a new inbound message that has no name."""
        if event.type != "message.created" or event.channel_id is None:
            return
        data = event.data
        sender = data.get("sender") or {}
        if data.get("direction") != "inbound" or sender.get("type") != "contact" or sender.get("name"):
            return
        key = (event.channel_id, str(sender.get("id") or ""))
        channel = self.channels.get(event.channel_id)
        if not key[1] or key in self._asked or channel is None or not channel.supports("fetch_profile"):
            return
        self._asked.add(key)
        self._queue.append(key)
        self.notify()

    async def run(self) -> None:
        while True:
            while self._queue:
                channel_id, contact_id = self._queue.popleft()
                try:
                    await self.fetch(channel_id, contact_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("fetching the profile of contact %s failed", contact_id)
            await self.idle(None)

    async def fetch(self, channel_id: str, contact_id: str) -> bool:
        """Ask the channel for this contact's name and store it; True when a name was stored."""
        channel: Channel | None = self.channels.get(channel_id)
        if channel is None:
            return False
        async with self.store.db.read() as conn:
            ids = list(await conn.scalars(sa.select(ID.c.identity).where(ID.c.contact_id == contact_id)))
        if not ids:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                found = await channel.fetch_profile(ContactRef(ids=ids))
        except TimeoutError:
            log.info("channel %s: the profile of %s took over %.0f s", channel_id, contact_id, self.timeout)
            return False
        name = found.name.strip() if found is not None and found.name else ""
        if not name:
            return False
        async with self.store.tx() as tx:
            result = await tx.conn.execute(
                K.update()
                .where(K.c.id == contact_id, sa.or_(K.c.name.is_(None), K.c.name == ""))
                .values(name=name, updated_at=utcnow())
            )
            if not result.rowcount:
                return False  # named meanwhile (by a later webhook or an agent): keep that
            conv_ids = list(
                await tx.conn.scalars(
                    sa.select(schema.conversations.c.id).where(
                        schema.conversations.c.contact_id == contact_id
                    )
                )
            )
            views = await fetch_conversations(tx.conn, conv_ids)
            await tx.emit_many([("conversation.updated", v, channel_id, v["id"]) for v in views])
        return True
