"""Availability statuses (built-in online, busy, offline, and admin-defined ones), each agent's
status (``presence.updated`` events teammates see), and assignment policies per channel or team."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.events import Tx
from hub.models import utcnow
from hub.presence import set_presence
from hub.routing import BUILTIN_AVAILABILITY, POLICIES
from hub.services.config import ConfigRegistry, announce, config_changed
from hub.services.errors import Conflict, Invalid, NotFound
from hub.services.organisation import OrgService

__all__ = ["AvailabilityService"]

A = schema.availability_statuses
U = schema.users
P = schema.assignment_policies


class AvailabilityService:
    def __init__(self, org: OrgService, channel_exists: Any, config: ConfigRegistry | None = None) -> None:
        self.org = org
        self.store = org.store
        self._channel_exists = channel_exists
        self.config = config
        if config is not None:
            config.register("availability_statuses", self._load, description="availability statuses")

    # ---- statuses -------------------------------------------------------------------------------

    async def statuses(self) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            return await _statuses(conn)

    async def _load(self, conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
        """The ``availability_statuses`` configuration resource."""
        return {"statuses": await _statuses(conn)}

    async def create_status(
        self, actor: Actor, status_id: str, name: str, receives: bool, push: bool, shows_as: str
    ) -> dict[str, Any]:
        actor.require("config.manage")
        if status_id in BUILTIN_AVAILABILITY:
            raise Conflict(f"{status_id!r} is a built-in status")
        async with self.store.tx() as tx:
            if await tx.conn.scalar(sa.select(A.c.id).where(A.c.id == status_id)) is not None:
                raise Conflict(f"a status {status_id!r} already exists")
            values = {"name": name, "receives": receives, "push": push, "shows_as": shows_as}
            await tx.conn.execute(A.insert().values(id=status_id, created_at=utcnow(), **values))
            status = {"id": status_id, **values, "builtin": False}
            await config_changed(self.config, tx, "availability_statuses", by=actor.ref)
        return status

    async def delete_status(self, actor: Actor, status_id: str) -> None:
        actor.require("config.manage")
        if status_id in BUILTIN_AVAILABILITY:
            raise Conflict(f"{status_id!r} is a built-in status")
        async with self.store.tx() as tx:
            if await tx.conn.scalar(sa.select(A.c.id).where(A.c.id == status_id)) is None:
                raise NotFound(f"status {status_id!r} does not exist")
            held = await tx.conn.scalar(sa.select(sa.func.count()).where(U.c.availability == status_id))
            if held:
                raise Conflict(f"{held} user(s) are in the status {status_id!r}")
            await tx.conn.execute(A.delete().where(A.c.id == status_id))
            await config_changed(self.config, tx, "availability_statuses", by=actor.ref)

    async def set_availability(self, actor: Actor, user_id: str, status_id: str) -> dict[str, Any]:
        """An agent sets their own status (an admin may set anyone's)."""
        if user_id != actor.id:
            actor.require("users.manage")
        shows = {s["id"]: s for s in await self.statuses()}
        if status_id not in shows:
            raise Invalid("status", f"unknown status; one of {', '.join(shows)}")
        async with self.store.tx() as tx:
            presence = await set_presence(tx, user_id, status_id, shows[status_id]["shows_as"], actor.ref)
        return presence

    # ---- assignment policies --------------------------------------------------------------------

    async def policies(self, actor: Actor) -> list[dict[str, Any]]:
        actor.require("config.manage")
        async with self.store.db.read() as conn:
            rows = (await conn.execute(sa.select(P).order_by(P.c.scope_type, P.c.scope_id))).mappings().all()
        return [_policy_dict(r) for r in rows]

    async def set_policy(
        self,
        actor: Actor,
        scope_type: str,
        scope_id: str,
        policy: str,
        capacity: int | None,
        team_id: str | None,
    ) -> dict[str, Any]:
        actor.require("config.manage")
        if policy not in POLICIES:
            raise Invalid("policy", f"one of {', '.join(POLICIES)}")
        async with self.store.tx() as tx:
            await self._check_scope(tx, scope_type, scope_id, team_id)
            values = {"policy": policy, "capacity": capacity, "team_id": team_id, "updated_at": utcnow()}
            stmt = self.store.db.insert(P).values(
                scope_type=scope_type, scope_id=scope_id, last_user_id=None, **values
            )
            await tx.conn.execute(
                stmt.on_conflict_do_update(index_elements=["scope_type", "scope_id"], set_=values)
            )
            row = (
                (
                    await tx.conn.execute(
                        sa.select(P).where(P.c.scope_type == scope_type, P.c.scope_id == scope_id)
                    )
                )
                .mappings()
                .one()
            )
            out = _policy_dict(row)
            # Admin-only (not in the app's bundle): announced without an ETag.
            await announce(tx, "assignment_policies", None, by=actor.ref)
        return out

    async def delete_policy(self, actor: Actor, scope_type: str, scope_id: str) -> None:
        actor.require("config.manage")
        async with self.store.tx() as tx:
            res = await tx.conn.execute(
                P.delete().where(P.c.scope_type == scope_type, P.c.scope_id == scope_id)
            )
            if not res.rowcount:
                raise NotFound(f"no assignment policy for {scope_type} {scope_id}")
            await announce(tx, "assignment_policies", None, by=actor.ref)

    async def _check_scope(self, tx: Tx, scope_type: str, scope_id: str, team_id: str | None) -> None:
        T = schema.teams
        if scope_type == "channel":
            if not self._channel_exists(scope_id):
                raise NotFound(f"channel {scope_id!r} does not exist")
        elif scope_type == "team":
            if await tx.conn.scalar(sa.select(T.c.id).where(T.c.id == scope_id)) is None:
                raise NotFound(f"team {scope_id} does not exist")
            if team_id is not None:
                raise Invalid("team_id", "only a channel's policy names a team")
        else:
            raise NotFound("policies belong to a channel or a team")
        if team_id is not None and await tx.conn.scalar(sa.select(T.c.id).where(T.c.id == team_id)) is None:
            raise Invalid("team_id", "no such team")


async def _statuses(conn: AsyncConnection) -> list[dict[str, Any]]:
    out = [
        {"id": k, "name": k.title(), "receives": r, "push": p, "shows_as": s, "builtin": True}
        for k, (r, p, s) in BUILTIN_AVAILABILITY.items()
    ]
    for row in (await conn.execute(sa.select(A).order_by(A.c.id))).mappings():
        out.append(
            {
                "id": row["id"],
                "name": row["name"],
                "receives": row["receives"],
                "push": row["push"],
                "shows_as": row["shows_as"],
                "builtin": False,
            }
        )
    return out


def _policy_dict(row: Any) -> dict[str, Any]:
    return {
        "scope_type": row["scope_type"],
        "scope_id": row["scope_id"],
        "policy": row["policy"],
        "capacity": row["capacity"],
        "team_id": row["team_id"],
        "updated_at": row["updated_at"].isoformat(),
    }
