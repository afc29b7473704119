"""Publishes the moment a conversation's reply window closes (WhatsApp's 24-hour window), so the app
can switch its composer to templates without polling."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub import schema
from hub.channels import ChannelService
from hub.events import Store
from hub.models import utcnow
from hub.records import fetch_conversation

__all__ = ["WindowWatcher"]

log = logging.getLogger("hub.windows")
C = schema.conversations


class WindowWatcher:
    def __init__(self, store: Store, channels: ChannelService, interval: float = 30.0) -> None:
        self.store = store
        self.channels = channels
        self.interval = interval
        self.checked_until: datetime = utcnow()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check(utcnow())
            except Exception:
                log.exception("reply-window check failed")

    async def check(self, now: datetime) -> int:
        """Emit ``conversation.updated`` for each window that closed in (last check, now]."""
        since, self.checked_until = self.checked_until, now
        closed = 0
        for cid, inst in list(self.channels.instances.items()):
            hours = inst.capabilities.reply_window.hours
            if hours is None:
                continue
            span = timedelta(hours=hours)
            async with self.store.tx() as tx:
                ids = (
                    await tx.conn.scalars(
                        sa.select(C.c.id).where(
                            C.c.channel_id == cid,
                            C.c.last_inbound_at > since - span,
                            C.c.last_inbound_at <= now - span,
                        )
                    )
                ).all()
                for conv_id in ids:
                    conv = await fetch_conversation(tx.conn, conv_id)
                    if conv is None:
                        continue
                    conv["reply_window"] = {
                        "open": False,
                        "closes_at": None,
                        "outside": inst.capabilities.reply_window.outside,
                    }
                    await tx.emit("conversation.updated", conv, channel_id=cid, conversation_id=conv_id)
                    closed += 1
        return closed
