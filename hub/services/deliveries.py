"""A channel's stored webhook deliveries (``raw_events``) as an admin sees them: each with its state
and error, the first one (the wizard waits for it), and a replay of one delivery through the same
processor that applied it, for a parser fixed since. Behind ``channels.manage``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.access import Actor
from hub.channels import ChannelService
from hub.inbound import InboundProcessor
from hub.services.errors import NotFound

__all__ = ["DELIVERY_STATES", "DeliveryService"]

R = schema.raw_events
DELIVERY_STATES = ("pending", "done", "failed", "skipped")
_LISTED = (
    R.c.id,
    R.c.received_at,
    R.c.state,
    R.c.attempts,
    R.c.error,
    R.c.processed_at,
    R.c.due_at,
    sa.func.length(R.c.body).label("size"),
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "received_at": _iso(row["received_at"]),
        "state": row["state"],
        "attempts": int(row["attempts"] or 0),
        "error": row["error"],
        "processed_at": _iso(row["processed_at"]),
        "retry_at": _iso(row["due_at"]) if row["state"] == "pending" else None,
        "size": int(row["size"] or 0),
    }


class DeliveryService:
    def __init__(self, channels: ChannelService, processor: InboundProcessor) -> None:
        self.channels = channels
        self.store = channels.store
        self.processor = processor

    def _need_channel(self, actor: Actor, channel_id: str) -> None:
        actor.require("channels.manage")
        if channel_id not in self.channels.rows:
            raise NotFound(f"channel {channel_id!r} does not exist")

    async def list(
        self,
        actor: Actor,
        channel_id: str,
        *,
        state: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """The newest deliveries first; ``next_before`` pages on (None on the last page)."""
        self._need_channel(actor, channel_id)
        conds = [R.c.channel_id == channel_id]
        if state is not None:
            conds.append(R.c.state == state)
        if before is not None:
            conds.append(R.c.id < before)
        stmt = sa.select(*_LISTED).where(*conds).order_by(R.c.id.desc()).limit(limit + 1)
        async with self.store.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        items = [_public(r) for r in rows[:limit]]
        more = len(rows) > limit
        return {"deliveries": items, "next_before": items[-1]["id"] if more and items else None}

    async def first(self, actor: Actor, channel_id: str) -> dict[str, Any] | None:
        """The channel's earliest stored delivery, or None while it has received nothing."""
        self._need_channel(actor, channel_id)
        first_id = sa.select(sa.func.min(R.c.id)).where(R.c.channel_id == channel_id).scalar_subquery()
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(*_LISTED).where(R.c.id == first_id))).mappings().first()
        return _public(row) if row is not None else None

    async def replay(self, actor: Actor, channel_id: str, delivery_id: int) -> dict[str, Any]:
        """Parse and apply one stored delivery again; its new state. A delivery applied before has
        one effect still (messages are unique per channel and provider id)."""
        self._need_channel(actor, channel_id)
        cols = (R.c.id, R.c.channel_id, R.c.body, R.c.headers, R.c.received_at, R.c.attempts)
        async with self.store.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(*cols).where(R.c.id == delivery_id, R.c.channel_id == channel_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"delivery {delivery_id} of channel {channel_id!r} does not exist")
        await self.processor.process_one({**dict(row), "attempts": 0})
        async with self.store.db.read() as conn:
            after = (await conn.execute(sa.select(*_LISTED).where(R.c.id == delivery_id))).mappings().one()
        return _public(after)
