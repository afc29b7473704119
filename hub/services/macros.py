"""Macros: a named, ordered list of actions (``hub.actions``) an agent runs on one or many
conversations at once.

A macro is personal (its owner's alone: others neither see nor run it) or shared (everyone sees
and runs it; writing one needs ``config.manage``). A run applies every action to each conversation
in one transaction, as the caller, so it can do nothing the caller could not do by hand: an
action the caller may not do fails with the reason and takes the others of that conversation
back with it. Each conversation's outcome is its own.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.actions import ActionExecutor, ActionSpec
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.services.errors import NotFound
from hub.services.quick_replies import announce_config

__all__ = ["MacroService"]

MA = schema.macros
_ACTIONS = TypeAdapter(list[ActionSpec])


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "visibility": row["visibility"],
        "owner_id": row["owner_id"],
        "actions": row["actions"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


class MacroService:
    def __init__(self, store: Store, executor: ActionExecutor) -> None:
        self.store = store
        self.executor = executor

    def _visible(self, actor: Actor) -> Any:
        return sa.or_(MA.c.visibility == "shared", MA.c.owner_id == actor.id)

    async def visible_to(self, actor: Actor) -> list[dict[str, Any]]:
        """The shared macros and the actor's own, by name."""
        async with self.store.db.read() as conn:
            rows = await conn.execute(sa.select(MA).where(self._visible(actor)).order_by(MA.c.name, MA.c.id))
            return [_public(r) for r in rows.mappings()]

    async def get(self, actor: Actor, macro_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            return await self._fetch(conn, actor, macro_id)

    async def create(
        self, actor: Actor, name: str, visibility: str, actions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if visibility == "shared":
            actor.require("config.manage")
        now = utcnow()
        row = {
            "id": new_id("mac_"),
            "name": name,
            "visibility": visibility,
            "owner_id": actor.id,
            "actions": actions,
            "created_at": now,
            "updated_at": now,
        }
        async with self.store.tx() as tx:
            await tx.conn.execute(MA.insert().values(**row))
            await self._announce(tx, actor, row)
        return _public(row)

    async def update(self, actor: Actor, macro_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        async with self.store.tx() as tx:
            before = await self._fetch(tx.conn, actor, macro_id)
            self._may_write(actor, before)
            if changes.get("visibility") == "shared":
                actor.require("config.manage")
            if changes:
                await tx.conn.execute(
                    MA.update().where(MA.c.id == macro_id).values(**changes, updated_at=utcnow())
                )
                after = await self._fetch(tx.conn, actor, macro_id)
                await self._announce(tx, actor, before)
                if after["visibility"] != before["visibility"]:
                    await self._announce(tx, actor, after)
                return after
            return before

    async def delete(self, actor: Actor, macro_id: str) -> None:
        async with self.store.tx() as tx:
            macro = await self._fetch(tx.conn, actor, macro_id)
            self._may_write(actor, macro)
            await tx.conn.execute(MA.delete().where(MA.c.id == macro_id))
            await self._announce(tx, actor, macro)

    async def run(self, actor: Actor, macro_id: str, conversation_ids: list[str]) -> dict[str, Any]:
        """Run the macro on each conversation (each in one transaction); every action's result."""
        macro = await self.get(actor, macro_id)
        actions = _ACTIONS.validate_python(macro["actions"])
        runs = []
        for conversation_id in list(dict.fromkeys(conversation_ids)):
            run = await self.executor.run(actor, conversation_id, actions)
            runs.append(run.public())
        return {"macro_id": macro_id, "results": runs}

    def _may_write(self, actor: Actor, macro: dict[str, Any]) -> None:
        # A personal macro is its owner's to change; a shared one needs config.manage.
        if macro["visibility"] == "shared" or macro["owner_id"] != actor.id:
            actor.require("config.manage")

    async def _fetch(self, conn: AsyncConnection, actor: Actor, macro_id: str) -> dict[str, Any]:
        row = (
            (await conn.execute(sa.select(MA).where(MA.c.id == macro_id, self._visible(actor))))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"macro {macro_id} does not exist")
        return _public(row)

    async def _announce(self, tx: Tx, actor: Actor, macro: dict[str, Any]) -> None:
        owner = None if macro["visibility"] == "shared" else macro["owner_id"]
        await announce_config(tx, "macros", actor.ref, user_id=owner)
