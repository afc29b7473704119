"""Contacts as an actor reads and changes them: a contact belongs to a channel, so it is in scope
exactly when its channel is; reading needs ``contacts.read``, changing ``contacts.update``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.events import Store
from hub.models import utcnow
from hub.services.errors import NotFound

__all__ = ["ContactService"]

K = schema.contacts
ID = schema.contact_identities
FIELDS = ("name", "phone", "email")


class ContactService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, actor: Actor, contact_id: str) -> dict[str, Any]:
        actor.require("contacts.read")
        async with self.store.db.read() as conn:
            return await _access_contact(conn, actor, contact_id)

    async def update(self, actor: Actor, contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        actor.require("contacts.update")
        async with self.store.tx() as tx:
            contact = await _access_contact(tx.conn, actor, contact_id)
            values = {k: v for k, v in changes.items() if k in FIELDS}
            if values:
                await tx.conn.execute(
                    K.update().where(K.c.id == contact_id).values(**values, updated_at=utcnow())
                )
                contact = {**contact, **values}
                await tx.emit(
                    "contact.updated",
                    {**contact, "changed": sorted(values), "by": actor.ref},
                    channel_id=contact["channel_id"],
                )
        return contact


async def _access_contact(conn: AsyncConnection, actor: Actor, contact_id: str) -> dict[str, Any]:
    """The contact, or NotFound when it is absent or its channel is outside the scope."""
    row = (await conn.execute(sa.select(K).where(K.c.id == contact_id))).mappings().first()
    if row is None or not actor.sees_channel(row["channel_id"]):
        raise NotFound(f"contact {contact_id} does not exist")
    identities = list(
        await conn.scalars(
            sa.select(ID.c.identity).where(ID.c.contact_id == contact_id).order_by(ID.c.identity)
        )
    )
    return {
        "id": row["id"],
        "channel_id": row["channel_id"],
        "name": row["name"],
        "phone": row["phone"],
        "email": row["email"],
        "identities": identities,
    }
