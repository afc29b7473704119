"""Labels: admin-defined (a name unique whatever its case, a colour, a description) and applied to
conversations and contacts by reference.

A rename keeps every application and a deletion removes them all; either way each conversation and
contact that carried the label is announced again (``conversation.updated`` / ``contact.updated``,
``changed: ["labels"]``), in the same transaction as the definition's ``config.updated``, so an
app's cached conversations never show a label that no longer exists.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.records import fetch_conversations
from hub.services.config import ConfigRegistry
from hub.services.errors import Conflict, Invalid, NotFound

__all__ = [
    "BLANK",
    "COLOUR",
    "LabelService",
    "emit_contacts_updated",
    "emit_conversations_updated",
    "label_ids",
    "load_labels",
    "set_labels",
]

L = schema.labels
CL = schema.conversation_labels
KL = schema.contact_labels
COLOUR = r"^#[0-9a-fA-F]{6}$"
# What a name is trimmed of (and may not consist of only): ASCII white space, which every client
# and the JSON Schema pattern of the API document agree on.
BLANK = " \t\n\r\f\v"
DEFAULT_COLOUR = "#1f93ff"


def label_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "colour": row["colour"],
        "description": row["description"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def load_labels(conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
    """The ``labels`` configuration resource: every definition, in name order."""
    rows = (await conn.execute(sa.select(L).order_by(L.c.name_key, L.c.id))).mappings()
    return {"labels": [label_dict(r) for r in rows]}


def _key(name: str) -> str:
    return name.strip(BLANK).casefold()


async def label_ids(conn: AsyncConnection, names: list[str], field: str) -> list[str]:
    """The ids of the labels named (any case), in order, once each; an unknown name is a 422
    naming ``field.<index>``."""
    keys = [_key(n) for n in names]
    found = dict(
        (await conn.execute(sa.select(L.c.name_key, L.c.id).where(L.c.name_key.in_(set(keys))))).all()
    )
    for i, key in enumerate(keys):
        if key not in found:
            raise Invalid(f"{field}.{i}", f"no label named {names[i]!r}; an admin defines labels first")
    return list(dict.fromkeys(found[k] for k in keys))


async def set_labels(conn: AsyncConnection, links: sa.Table, owner_id: str, ids: list[str]) -> bool:
    """Make ``owner_id`` carry exactly the labels ``ids``; whether anything changed."""
    owner = links.c[links.c.keys()[0]]
    before = set(await conn.scalars(sa.select(links.c.label_id).where(owner == owner_id)))
    if before == set(ids):
        return False
    gone = before - set(ids)
    if gone:
        await conn.execute(links.delete().where(owner == owner_id, links.c.label_id.in_(gone)))
    added = [i for i in ids if i not in before]
    if added:
        await conn.execute(links.insert(), [{owner.name: owner_id, "label_id": i} for i in added])
    return True


async def emit_conversations_updated(tx: Tx, ids: list[str], changed: list[str], by: dict[str, Any]) -> None:
    """``conversation.updated`` for each conversation (read afresh), in one statement."""
    for start in range(0, len(ids), 500):
        convs = await fetch_conversations(tx.conn, ids[start : start + 500])
        await tx.emit_many(
            [
                ("conversation.updated", {**c, "changed": changed, "by": by}, c["channel_id"], c["id"])
                for c in convs
            ]
        )


async def emit_contacts_updated(tx: Tx, ids: list[str], changed: list[str], by: dict[str, Any]) -> None:
    from hub.services.contacts import fetch_contacts

    for start in range(0, len(ids), 500):
        contacts = await fetch_contacts(tx.conn, ids[start : start + 500])
        await tx.emit_many(
            [
                ("contact.updated", {**c, "changed": changed, "by": by}, c["channel_id"], None)
                for c in contacts
            ]
        )


class LabelService:
    def __init__(self, store: Store, config: ConfigRegistry) -> None:
        self.store = store
        self.config = config
        config.register("labels", load_labels, description="label definitions")

    async def list(self, actor: Actor) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            return await load_labels(conn, actor)

    async def create(
        self, actor: Actor, name: str, colour: str | None, description: str | None
    ) -> dict[str, Any]:
        actor.require("labels.manage")
        name = _clean_name(name)
        now = utcnow()
        values = {
            "id": new_id("lbl_"),
            "name": name,
            "name_key": _key(name),
            "colour": (colour or DEFAULT_COLOUR).lower(),
            "description": description,
            "created_at": now,
            "updated_at": now,
        }
        async with self.store.tx() as tx:
            await self._free(tx.conn, name, None)
            await tx.conn.execute(L.insert().values(**values))
            await self.config.changed(tx, "labels", by=actor.ref)
        return label_dict(values)

    async def update(
        self,
        actor: Actor,
        label_id: str,
        *,
        name: str | None = None,
        colour: str | None = None,
        description: str | None = None,
        clear_description: bool = False,
    ) -> dict[str, Any]:
        actor.require("labels.manage")
        async with self.store.tx() as tx:
            row = await _row(tx.conn, label_id)
            values: dict[str, Any] = {}
            if name is not None and name.strip(BLANK) != row["name"]:
                name = _clean_name(name)
                await self._free(tx.conn, name, label_id)
                values.update(name=name, name_key=_key(name))
            if colour is not None and colour.lower() != row["colour"]:
                values["colour"] = colour.lower()
            if description is not None or clear_description:
                values["description"] = description
            if not values:
                return label_dict(row)
            values["updated_at"] = utcnow()
            await tx.conn.execute(L.update().where(L.c.id == label_id).values(**values))
            if "name" in values:
                await self._reannounce(tx, label_id, actor)
            await self.config.changed(tx, "labels", by=actor.ref)
            return label_dict({**row, **values})

    async def delete(self, actor: Actor, label_id: str) -> None:
        actor.require("labels.manage")
        async with self.store.tx() as tx:
            await _row(tx.conn, label_id)
            convs = list(
                await tx.conn.scalars(sa.select(CL.c.conversation_id).where(CL.c.label_id == label_id))
            )
            contacts = list(
                await tx.conn.scalars(sa.select(KL.c.contact_id).where(KL.c.label_id == label_id))
            )
            await tx.conn.execute(CL.delete().where(CL.c.label_id == label_id))
            await tx.conn.execute(KL.delete().where(KL.c.label_id == label_id))
            await tx.conn.execute(L.delete().where(L.c.id == label_id))
            await emit_conversations_updated(tx, convs, ["labels"], actor.ref)
            await emit_contacts_updated(tx, contacts, ["labels"], actor.ref)
            await self.config.changed(tx, "labels", by=actor.ref)

    async def _reannounce(self, tx: Tx, label_id: str, actor: Actor) -> None:
        convs = list(await tx.conn.scalars(sa.select(CL.c.conversation_id).where(CL.c.label_id == label_id)))
        contacts = list(await tx.conn.scalars(sa.select(KL.c.contact_id).where(KL.c.label_id == label_id)))
        await emit_conversations_updated(tx, convs, ["labels"], actor.ref)
        await emit_contacts_updated(tx, contacts, ["labels"], actor.ref)

    async def _free(self, conn: AsyncConnection, name: str, label_id: str | None) -> None:
        other = await conn.scalar(sa.select(L.c.id).where(L.c.name_key == _key(name)))
        if other is not None and other != label_id:
            raise Conflict(f"a label named {name!r} already exists (names are unique whatever their case)")


def _clean_name(name: str) -> str:
    name = name.strip(BLANK)
    if not name:
        raise Invalid("name", "must have a character other than white space")
    return name


async def _row(conn: AsyncConnection, label_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(L).where(L.c.id == label_id))).mappings().first()
    if row is None:
        raise NotFound(f"label {label_id} does not exist")
    return dict(row)
