"""The agents an actor may hand a conversation to: the assign picker of the app.

An agent sees the colleagues who serve one of the channels they serve (administrators serve every
channel); an administrator sees every active user. Narrowed to a channel or a conversation, the
list is exactly who may be assigned there (the rule ``PATCH`` applies). Each comes with their
availability as teammates see it and how many open conversations they hold.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.events import Store
from hub.routing import BUILTIN_AVAILABILITY, OPEN_STATUSES
from hub.services.conversations import access_conversation
from hub.services.errors import NotFound

__all__ = ["AgentService"]

U = schema.users
C = schema.conversations
A = schema.availability_statuses
CM, TM, TC = schema.channel_members, schema.team_members, schema.team_channels


class AgentService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(
        self, actor: Actor, *, channel_id: str | None = None, conversation_id: str | None = None
    ) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            if conversation_id is not None:
                conv = await access_conversation(conn, actor, conversation_id)
                channel_id = conv["channel_id"]
            if channel_id is not None:
                if not actor.sees_channel(channel_id):
                    raise NotFound(f"channel {channel_id} does not exist")
                channels: list[str] | None = [channel_id]
            else:
                channels = None if actor.all_channels else sorted(actor.channel_ids)
            stmt = sa.select(U).where(U.c.active.is_(True)).order_by(U.c.name, U.c.email, U.c.id)
            if channels is not None:
                stmt = stmt.where(sa.or_(U.c.role == "administrator", U.c.id.in_(_serving(channels))))
            users = (await conn.execute(stmt)).mappings().all()
            ids = [u["id"] for u in users]
            looks = await _statuses(conn)
            teams = await _teams_of(conn, ids)
            load = await _open_counts(conn, ids)
        out = []
        for u in users:
            receives, shows_as = looks.get(u["availability"], (False, "offline"))
            out.append(
                {
                    "id": u["id"],
                    "name": u["name"],
                    "email": u["email"],
                    "role": u["role"],
                    "availability": u["availability"],
                    "shows_as": shows_as,
                    "receives": receives,
                    "team_ids": teams.get(u["id"], []),
                    "open_conversations": load.get(u["id"], 0),
                }
            )
        return out


def _serving(channels: list[str]) -> Any:
    """The ids of the users who serve one of ``channels``, directly or through a team."""
    direct = sa.select(CM.c.user_id).where(CM.c.channel_id.in_(channels))
    via_team = (
        sa.select(TM.c.user_id).join(TC, TC.c.team_id == TM.c.team_id).where(TC.c.channel_id.in_(channels))
    )
    return sa.union(direct, via_team)


async def _statuses(conn: AsyncConnection) -> dict[str, tuple[bool, str]]:
    """status id -> (receives new conversations, shows as)."""
    out = {k: (receives, shows) for k, (receives, _, shows) in BUILTIN_AVAILABILITY.items()}
    for sid, receives, shows in await conn.execute(sa.select(A.c.id, A.c.receives, A.c.shows_as)):
        out[sid] = (receives, shows)
    return out


async def _teams_of(conn: AsyncConnection, user_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if user_ids:
        rows = await conn.execute(
            sa.select(TM.c.user_id, TM.c.team_id).where(TM.c.user_id.in_(user_ids)).order_by(TM.c.team_id)
        )
        for user_id, team_id in rows:
            out.setdefault(user_id, []).append(team_id)
    return out


async def _open_counts(conn: AsyncConnection, user_ids: list[str]) -> dict[str, int]:
    if not user_ids:
        return {}
    rows = await conn.execute(
        sa.select(C.c.assignee_id, sa.func.count())
        .where(C.c.assignee_id.in_(user_ids), C.c.status.in_(OPEN_STATUSES))
        .group_by(C.c.assignee_id)
    )
    return {user_id: int(n) for user_id, n in rows}
