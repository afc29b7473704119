"""Teams (a name, members, the channels they serve) and who serves each channel.

Both decide scopes, so each change emits ``access.changed`` for the users whose scope it moves,
and open streams apply it before the next event they send.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Tx
from hub.models import utcnow
from hub.services.config import ConfigRegistry, config_changed
from hub.services.errors import Conflict, Invalid, NotFound
from hub.services.labels import emit_conversations_updated
from hub.services.organisation import OrgService, access_changed

__all__ = ["TeamService"]

TM = schema.teams
MEM = schema.team_members
TC = schema.team_channels
CM = schema.channel_members


class TeamService:
    def __init__(self, org: OrgService, channel_exists: Any, config: ConfigRegistry | None = None) -> None:
        self.org = org
        self.store = org.store
        self.config = config
        if config is not None:
            config.register("teams", self._load, description="teams, their members and channels")
        # A callable (channel id -> bool): channels live in the channel service's rows.
        self._channel_exists = channel_exists

    # ---- reads ----------------------------------------------------------------------------------

    async def _load(self, conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
        """The ``teams`` configuration resource (``GET /api/v1/teams``)."""
        ids = list(await conn.scalars(sa.select(TM.c.id).order_by(TM.c.name)))
        return {"teams": await _teams(conn, ids)}

    async def list_teams(self, actor: Actor) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            ids = list(await conn.scalars(sa.select(TM.c.id).order_by(TM.c.name)))
            return await _teams(conn, ids)

    async def get_team(self, actor: Actor, team_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            found = await _teams(conn, [team_id])
        if not found:
            raise NotFound(f"team {team_id} does not exist")
        return found[0]

    async def channel_members(self, actor: Actor, channel_id: str) -> dict[str, Any]:
        actor.require("channels.manage")
        self._need_channel(channel_id)
        async with self.store.db.read() as conn:
            return await _channel_members(conn, channel_id)

    # ---- writes ---------------------------------------------------------------------------------

    async def create_team(
        self, actor: Actor, name: str, member_ids: list[str], channel_ids: list[str]
    ) -> dict[str, Any]:
        actor.require("users.manage")
        team_id = new_id("team_")
        now = utcnow()
        try:
            async with self.store.tx() as tx:
                if await tx.conn.scalar(sa.select(TM.c.id).where(TM.c.name == name)) is not None:
                    raise Conflict(f"a team named {name!r} already exists")
                await tx.conn.execute(
                    TM.insert().values(id=team_id, name=name, created_at=now, updated_at=now)
                )
                moved = await self._replace(tx, team_id, member_ids, channel_ids)
                team = await self._emit(tx, actor, team_id, moved)
        except IntegrityError:
            raise Conflict(f"a team named {name!r} already exists") from None
        self.org.invalidate()
        return team

    async def update_team(
        self,
        actor: Actor,
        team_id: str,
        *,
        name: str | None = None,
        member_ids: list[str] | None = None,
        channel_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        actor.require("users.manage")
        try:
            async with self.store.tx() as tx:
                if await tx.conn.scalar(sa.select(TM.c.id).where(TM.c.id == team_id)) is None:
                    raise NotFound(f"team {team_id} does not exist")
                values: dict[str, Any] = {"updated_at": utcnow()}
                if name is not None:
                    values["name"] = name
                await tx.conn.execute(TM.update().where(TM.c.id == team_id).values(**values))
                moved = await self._replace(tx, team_id, member_ids, channel_ids)
                team = await self._emit(tx, actor, team_id, moved)
        except IntegrityError:
            raise Conflict(f"a team named {name!r} already exists") from None
        self.org.invalidate()
        return team

    async def delete_team(self, actor: Actor, team_id: str) -> None:
        actor.require("users.manage")
        async with self.store.tx() as tx:
            members = list(await tx.conn.scalars(sa.select(MEM.c.user_id).where(MEM.c.team_id == team_id)))
            if await tx.conn.scalar(sa.select(TM.c.id).where(TM.c.id == team_id)) is None:
                raise NotFound(f"team {team_id} does not exist")
            for table in (MEM, TC):
                await tx.conn.execute(table.delete().where(table.c.team_id == team_id))
            await tx.conn.execute(TM.delete().where(TM.c.id == team_id))
            # A conversation's team is a reference: the team's conversations now have none.
            C = schema.conversations
            held = list(await tx.conn.scalars(sa.select(C.c.id).where(C.c.team == team_id)))
            if held:
                await tx.conn.execute(
                    C.update().where(C.c.team == team_id).values(team=None, updated_at=utcnow())
                )
            await tx.emit("team.updated", {"id": team_id, "deleted": True, "by": actor.ref})
            await emit_conversations_updated(tx, held, ["team"], actor.ref)
            await config_changed(self.config, tx, "teams", by=actor.ref)
            if members:
                await access_changed(tx, members, "team")
        self.org.invalidate()

    async def set_channel_members(
        self, actor: Actor, channel_id: str, user_ids: list[str], team_ids: list[str]
    ) -> dict[str, Any]:
        """Who serves the channel: exactly these users and teams from now on."""
        actor.require("channels.manage")
        self._need_channel(channel_id)
        async with self.store.tx() as tx:
            await _known(tx.conn, schema.users, user_ids, "user_ids")
            await _known(tx.conn, TM, team_ids, "team_ids")
            before = await _served_by(tx.conn, channel_id)
            await tx.conn.execute(CM.delete().where(CM.c.channel_id == channel_id))
            await tx.conn.execute(TC.delete().where(TC.c.channel_id == channel_id))
            if user_ids:
                await tx.conn.execute(
                    CM.insert(), [{"channel_id": channel_id, "user_id": u} for u in set(user_ids)]
                )
            if team_ids:
                await tx.conn.execute(
                    TC.insert(), [{"channel_id": channel_id, "team_id": t} for t in set(team_ids)]
                )
            after = await _served_by(tx.conn, channel_id)
            members = await _channel_members(tx.conn, channel_id)
            await tx.emit("channel.members_updated", {**members, "by": actor.ref}, channel_id=channel_id)
            if before ^ after:
                await access_changed(tx, sorted(before ^ after), "channel_members")
        self.org.invalidate()
        return members

    async def forget_channel(self, tx: Tx, channel_id: str) -> None:
        """A deleted channel is served by nobody (inside the transaction that deletes it)."""
        served = await _served_by(tx.conn, channel_id)
        await tx.conn.execute(CM.delete().where(CM.c.channel_id == channel_id))
        await tx.conn.execute(TC.delete().where(TC.c.channel_id == channel_id))
        if served:
            await access_changed(tx, sorted(served), "channel_members")
        self.org.invalidate()

    # ---- internals ------------------------------------------------------------------------------

    def _need_channel(self, channel_id: str) -> None:
        if not self._channel_exists(channel_id):
            raise NotFound(f"channel {channel_id!r} does not exist")

    async def _replace(
        self, tx: Tx, team_id: str, member_ids: list[str] | None, channel_ids: list[str] | None
    ) -> set[str]:
        """Replace the members and/or channels; the users whose scope this may move."""
        moved: set[str] = set(await tx.conn.scalars(sa.select(MEM.c.user_id).where(MEM.c.team_id == team_id)))
        if member_ids is not None:
            await _known(tx.conn, schema.users, member_ids, "member_ids")
            await tx.conn.execute(MEM.delete().where(MEM.c.team_id == team_id))
            if member_ids:
                await tx.conn.execute(
                    MEM.insert(), [{"team_id": team_id, "user_id": u} for u in set(member_ids)]
                )
            moved |= set(member_ids)
        if channel_ids is not None:
            missing = [c for c in channel_ids if not self._channel_exists(c)]
            if missing:
                raise Invalid("channel_ids", f"no such channel: {', '.join(missing)}")
            await tx.conn.execute(TC.delete().where(TC.c.team_id == team_id))
            if channel_ids:
                await tx.conn.execute(
                    TC.insert(), [{"team_id": team_id, "channel_id": c} for c in set(channel_ids)]
                )
        return moved

    async def _emit(self, tx: Tx, actor: Actor, team_id: str, moved: set[str]) -> dict[str, Any]:
        team = (await _teams(tx.conn, [team_id]))[0]
        await tx.emit("team.updated", {**team, "by": actor.ref})
        await config_changed(self.config, tx, "teams", by=actor.ref)
        if moved:
            await access_changed(tx, sorted(moved), "team")
        return team


async def _teams(conn: AsyncConnection, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = {r["id"]: r for r in (await conn.execute(sa.select(TM).where(TM.c.id.in_(ids)))).mappings()}
    members: dict[str, list[str]] = {}
    for team_id, user_id in await conn.execute(
        sa.select(MEM.c.team_id, MEM.c.user_id).where(MEM.c.team_id.in_(ids)).order_by(MEM.c.user_id)
    ):
        members.setdefault(team_id, []).append(user_id)
    channels: dict[str, list[str]] = {}
    for team_id, channel_id in await conn.execute(
        sa.select(TC.c.team_id, TC.c.channel_id).where(TC.c.team_id.in_(ids)).order_by(TC.c.channel_id)
    ):
        channels.setdefault(team_id, []).append(channel_id)
    return [
        {
            "id": i,
            "name": rows[i]["name"],
            "member_ids": members.get(i, []),
            "channel_ids": channels.get(i, []),
            "created_at": rows[i]["created_at"].isoformat(),
        }
        for i in ids
        if i in rows
    ]


async def _channel_members(conn: AsyncConnection, channel_id: str) -> dict[str, Any]:
    users = list(
        await conn.scalars(
            sa.select(CM.c.user_id).where(CM.c.channel_id == channel_id).order_by(CM.c.user_id)
        )
    )
    teams = list(
        await conn.scalars(
            sa.select(TC.c.team_id).where(TC.c.channel_id == channel_id).order_by(TC.c.team_id)
        )
    )
    return {"channel_id": channel_id, "user_ids": users, "team_ids": teams}


async def _served_by(conn: AsyncConnection, channel_id: str) -> set[str]:
    """Every user serving the channel, directly or through a team."""
    direct = sa.select(CM.c.user_id).where(CM.c.channel_id == channel_id)
    via = (
        sa.select(MEM.c.user_id).join(TC, TC.c.team_id == MEM.c.team_id).where(TC.c.channel_id == channel_id)
    )
    return set(await conn.scalars(sa.union(direct, via)))


async def _known(conn: AsyncConnection, table: sa.Table, ids: list[str], field: str) -> None:
    if not ids:
        return
    found = set(await conn.scalars(sa.select(table.c.id).where(table.c.id.in_(set(ids)))))
    missing = sorted(set(ids) - found)
    if missing:
        raise Invalid(field, f"unknown: {', '.join(missing)}")
