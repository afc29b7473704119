"""The event log as an actor may read it: ``GET /api/v1/events`` and the stream use ``visible``.

An event of a channel outside the actor's scope is never handed out; for a role that reads only
some conversations (mine, my teams', unassigned), an event of a conversation it may not read is
not either. Events that belong to no channel (users, teams, access changes) go to everyone, except
a user's own (``notification.*``, and ``config.updated`` naming a ``user_id``): those go to that
user alone.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from hub import schema
from hub.access import Actor
from hub.events import Frame, Store

__all__ = ["EventService"]

C = schema.conversations
# Event types that may concern one user only (their data names ``user_id``).
# conversation.read: a user's own read marker, for their other devices.
_PERSONAL = frozenset({"notification.created", "notification.updated", "config.updated", "conversation.read"})


def _for(actor: Actor, frame: Frame) -> bool:
    """Whether a personal event is this actor's (events of other types: always)."""
    if frame.type not in _PERSONAL:
        return True
    data = json.loads(frame.text)["data"]
    user_id = data.get("user_id")
    return user_id is None or user_id == actor.id


class EventService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def visible(self, actor: Actor, frames: list[Frame]) -> list[Frame]:
        frames = [f for f in frames if _for(actor, f)]
        if actor.all_channels and actor.reads_all:
            return frames
        kept = [f for f in frames if f.channel_id is None or actor.sees_channel(f.channel_id)]
        if actor.reads_all:
            return kept
        # Read the conversations as they are now: a conversation reassigned away takes its
        # history with it, as the conversation reads do.
        ids = {f.conversation_id for f in kept if f.conversation_id}
        readable: set[str] = set()
        if ids:
            async with self.store.db.read() as conn:
                rows = await conn.execute(
                    sa.select(C.c.id, C.c.channel_id, C.c.assignee_id, C.c.team).where(C.c.id.in_(ids))
                )
                readable = {r["id"] for r in rows.mappings() if actor.sees_conversation(dict(r))}
        return [f for f in kept if f.conversation_id is None or f.conversation_id in readable]

    async def page(self, actor: Actor, after: int, limit: int) -> tuple[list[Frame], int, bool]:
        """Up to ``limit`` events after ``after`` that the actor may see, the last seq read (the
        cursor to continue from, past events it may not see) and whether more may follow."""
        # Never past the horizon: an event below it may still be in flight on PostgreSQL.
        horizon = await self.store.horizon()
        scanned = await self.store.events_after(after, limit + 1, horizon)
        more = len(scanned) > limit
        scanned = scanned[:limit]
        last = scanned[-1].seq if scanned else max(after, horizon)
        return await self.visible(actor, scanned), last, more
