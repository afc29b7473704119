"""Channels as an actor sees and manages them: the channels in the actor's scope, and the admin
actions (create, change, enable, disable, delete, check), each behind ``channels.manage``."""

from __future__ import annotations

from typing import Any

from hub import schema
from hub.access import Actor
from hub.channel import Health
from hub.channels import ChannelService
from hub.db import new_id
from hub.outbound import cancel_channel_queue
from hub.services.config import announce
from hub.services.errors import Conflict, Invalid, NotFound
from hub.services.teams import TeamService

__all__ = ["ChannelAdmin"]

CH = schema.channels


class ChannelAdmin:
    def __init__(self, channels: ChannelService, teams: TeamService) -> None:
        self.channels = channels
        self.teams = teams

    def visible(self, actor: Actor) -> list[dict[str, Any]]:
        """Activated channels the actor serves (every one for administrators)."""
        svc = self.channels
        return [
            svc.public_dict(row, admin=False)
            for cid, row in sorted(svc.rows.items())
            if cid in svc.instances and actor.sees_channel(cid)
        ]

    def all(self, actor: Actor) -> dict[str, Any]:
        actor.require("channels.manage")
        svc = self.channels
        return {
            "channels": [svc.public_dict(r, admin=True) for _, r in sorted(svc.rows.items())],
            "types": sorted(svc.registry.types()),
        }

    def get(self, actor: Actor, channel_id: str) -> dict[str, Any]:
        actor.require("channels.manage")
        return self.channels.public_dict(self._row(channel_id), admin=True)

    async def create(
        self,
        actor: Actor,
        channel_id: str | None,
        type_name: str,
        name: str,
        enabled: bool,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        actor.require("channels.manage")
        svc = self.channels
        if type_name not in svc.registry:
            raise Invalid(
                "type",
                f"unknown channel type {type_name!r}; installed: {', '.join(sorted(svc.registry.types()))}",
            )
        cid = channel_id or new_id("ch_").lower()
        row = await svc.upsert(cid, type_name, name, enabled, settings, source="api", create_only=True)
        svc.check_health_soon(cid)
        return svc.public_dict(row, admin=True)

    async def update(
        self,
        actor: Actor,
        channel_id: str,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        actor.require("channels.manage")
        row = self._row(channel_id)
        svc = self.channels
        new = await svc.upsert(
            row["id"],
            row["type"],
            name or row["name"],
            row["enabled"] if enabled is None else enabled,
            settings or {},
            source=row["source"],
        )
        if settings:
            svc.check_health_soon(row["id"])
        return svc.public_dict(new, admin=True)

    async def check(self, actor: Actor, channel_id: str) -> Health:
        actor.require("channels.manage")
        row = self._row(channel_id)
        health = await self.channels.check_health(row["id"])
        if health is None:
            raise ChannelInactive("the channel is disabled or its plugin is not installed")
        return health

    async def delete(self, actor: Actor, channel_id: str) -> None:
        actor.require("channels.manage")
        row = self._row(channel_id)
        async with self.channels.store.tx() as tx:
            # What was waiting to go out on this channel never will: tell the app instead of
            # leaving the messages queued forever.
            await cancel_channel_queue(tx, row["id"], "the channel was deleted")
            await tx.conn.execute(CH.delete().where(CH.c.id == row["id"]))
            # Announced while its members still serve it, so their streams carry the news.
            await tx.emit(
                "channel.updated",
                {"id": row["id"], "type": row["type"], "deleted": True},
                channel_id=row["id"],
            )
            await announce(tx, "channels", None, channel_id=row["id"])
            await self.teams.forget_channel(tx, row["id"])
        self.channels.forget(row["id"])

    def _row(self, channel_id: str) -> dict[str, Any]:
        row = self.channels.rows.get(channel_id)
        if row is None:
            raise NotFound(f"channel {channel_id!r} does not exist")
        return row


class ChannelInactive(Conflict):
    code = "channel_inactive"
