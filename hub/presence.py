"""Presence: a user's availability status, changed in one place that also tells everyone."""

from __future__ import annotations

from typing import Any

from hub import schema
from hub.events import Tx
from hub.models import utcnow
from hub.services.errors import NotFound

__all__ = ["set_presence"]

U = schema.users


async def set_presence(
    tx: Tx, user_id: str, status_id: str, shows_as: str, by: dict[str, Any]
) -> dict[str, Any]:
    """Record a user's status and tell everyone (``presence.updated``)."""
    now = utcnow()
    res = await tx.conn.execute(
        U.update().where(U.c.id == user_id).values(availability=status_id, availability_at=now)
    )
    if not res.rowcount:
        raise NotFound(f"user {user_id} does not exist")
    presence = {
        "user_id": user_id,
        "status": status_id,
        "shows_as": shows_as,
        "at": now.isoformat(),
        "by": by,
    }
    await tx.emit("presence.updated", presence)
    return presence
