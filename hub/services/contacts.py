"""Contacts as an actor reads and changes them.

A contact is in scope when the actor serves a channel it is known on: its home channel or the
channel of any of its identities (a merge can give it identities on several). Reading needs
``contacts.read``, changing ``contacts.update``, merging ``contacts.merge``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.events import Store, Tx
from hub.models import utcnow
from hub.records import labels_of
from hub.services.attributes import AttributeService
from hub.services.errors import Invalid, NotFound, ServiceError

__all__ = ["ContactService", "fetch_contacts"]

K = schema.contacts
ID = schema.contact_identities
C = schema.conversations
KL = schema.contact_labels
FIELDS = ("name", "phone", "email")


class BadCursor(ServiceError):
    status = 400
    code = "bad_request"


async def fetch_contacts(conn: AsyncConnection, contact_ids: list[str]) -> list[dict[str, Any]]:
    """Contacts in the API's shape, in the order given (absent ones left out)."""
    if not contact_ids:
        return []
    rows = {r["id"]: r for r in (await conn.execute(sa.select(K).where(K.c.id.in_(contact_ids)))).mappings()}
    idents: dict[str, list[dict[str, str]]] = {}
    for channel_id, identity, contact_id in await conn.execute(
        sa.select(ID.c.channel_id, ID.c.identity, ID.c.contact_id)
        .where(ID.c.contact_id.in_(contact_ids))
        .order_by(ID.c.channel_id, ID.c.identity)
    ):
        idents.setdefault(contact_id, []).append({"channel_id": channel_id, "identity": identity})
    labels = await labels_of(conn, KL, list(rows))
    out = []
    for cid in contact_ids:
        row = rows.get(cid)
        if row is None:
            continue
        mine = idents.get(cid, [])
        out.append(
            {
                "id": row["id"],
                "channel_id": row["channel_id"],
                "name": row["name"],
                "phone": row["phone"],
                "email": row["email"],
                # The ids on its home channel (as conversations show them), then every channel's.
                "identities": sorted(i["identity"] for i in mine if i["channel_id"] == row["channel_id"]),
                "channel_identities": mine,
                "labels": labels.get(cid, []),
                "custom_attributes": row["custom_attributes"] or {},
                "created_at": row["created_at"].isoformat(),
                "updated_at": row["updated_at"].isoformat(),
            }
        )
    return out


def _sees(actor: Actor, contact: dict[str, Any]) -> bool:
    if actor.all_channels:
        return True
    channels = {contact["channel_id"], *(i["channel_id"] for i in contact["channel_identities"])}
    return any(actor.sees_channel(c) for c in channels)


async def _access_contact(conn: AsyncConnection, actor: Actor, contact_id: str) -> dict[str, Any]:
    """The contact, or NotFound when it is absent or outside the scope."""
    found = await fetch_contacts(conn, [contact_id])
    if not found or not _sees(actor, found[0]):
        raise NotFound(f"contact {contact_id} does not exist")
    return found[0]


class ContactService:
    def __init__(self, store: Store, attributes: AttributeService | None = None) -> None:
        self.store = store
        self.attributes = attributes

    async def get(self, actor: Actor, contact_id: str) -> dict[str, Any]:
        actor.require("contacts.read")
        async with self.store.db.read() as conn:
            contact = await _access_contact(conn, actor, contact_id)
            return await self._flagged(conn, contact)

    async def list(
        self, actor: Actor, *, query: str | None, label: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Contacts in scope, newest first; ``query`` matches name, email, phone or an identity
        (case-insensitive substring), ``label`` a label name."""
        actor.require("contacts.read")
        stmt = (
            sa.select(K.c.id, K.c.created_at).order_by(K.c.created_at.desc(), K.c.id.desc()).limit(limit + 1)
        )
        if not actor.all_channels:
            channels = sorted(actor.channel_ids)
            stmt = stmt.where(
                sa.or_(
                    K.c.channel_id.in_(channels),
                    K.c.id.in_(sa.select(ID.c.contact_id).where(ID.c.channel_id.in_(channels))),
                )
            )
        if query:
            like = f"%{_escape(query.casefold())}%"
            stmt = stmt.where(
                sa.or_(
                    sa.func.lower(K.c.name).like(like, escape="\\"),
                    sa.func.lower(K.c.email).like(like, escape="\\"),
                    K.c.phone.like(like, escape="\\"),
                    K.c.id.in_(
                        sa.select(ID.c.contact_id).where(sa.func.lower(ID.c.identity).like(like, escape="\\"))
                    ),
                )
            )
        if label:
            L = schema.labels
            stmt = stmt.where(
                K.c.id.in_(
                    sa.select(KL.c.contact_id)
                    .join(L, L.c.id == KL.c.label_id)
                    .where(L.c.name_key == label.strip().casefold())
                )
            )
        if cursor:
            at, cid = _decode_cursor(cursor)
            stmt = stmt.where(sa.or_(K.c.created_at < at, sa.and_(K.c.created_at == at, K.c.id < cid)))
        async with self.store.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
            items = await fetch_contacts(conn, [r.id for r in rows[:limit]])
            items = [await self._flagged(conn, c) for c in items]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = _encode_cursor([last.created_at.isoformat(), last.id])
        return items, nxt

    async def update(self, actor: Actor, contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        actor.require("contacts.update")
        from hub.services.labels import label_ids, set_labels

        async with self.store.tx() as tx:
            contact = await _access_contact(tx.conn, actor, contact_id)
            values = {k: v for k, v in changes.items() if k in FIELDS and v != contact[k]}
            changed = set(values)
            if "custom_attributes" in changes and self.attributes is not None:
                merged = await self.attributes.checked(
                    tx.conn, "contact", contact["custom_attributes"], changes["custom_attributes"]
                )
                if merged != contact["custom_attributes"]:
                    values["custom_attributes"] = merged
                    changed.add("custom_attributes")
            if values:
                await tx.conn.execute(
                    K.update().where(K.c.id == contact_id).values(**values, updated_at=utcnow())
                )
            if "labels" in changes:
                ids = await label_ids(tx.conn, changes["labels"], "labels")
                if await set_labels(tx.conn, KL, contact_id, ids):
                    changed.add("labels")
            if changed:
                contact = (await fetch_contacts(tx.conn, [contact_id]))[0]
                await tx.emit(
                    "contact.updated",
                    {**contact, "changed": sorted(changed), "by": actor.ref},
                    channel_id=contact["channel_id"],
                )
            return await self._flagged(tx.conn, contact)

    async def merge(self, actor: Actor, contact_id: str, other_id: str) -> dict[str, Any]:
        """Fold ``other_id`` into ``contact_id``: its identities, conversations, labels, and the
        fields and attributes the kept contact lacks move over; then it is deleted."""
        actor.require("contacts.merge")
        if contact_id == other_id:
            raise Invalid("contact_id", "a contact cannot be merged into itself")
        async with self.store.tx() as tx:
            keep = await _access_contact(tx.conn, actor, contact_id)
            try:
                gone = await _access_contact(tx.conn, actor, other_id)
            except NotFound:
                raise Invalid("contact_id", f"contact {other_id} does not exist") from None
            await _merge_rows(tx, keep, gone)
            merged = await self._flagged(tx.conn, (await fetch_contacts(tx.conn, [contact_id]))[0])
            await tx.emit(
                "contact.merged",
                {"id": contact_id, "merged_id": other_id, "contact": merged, "by": actor.ref},
                channel_id=merged["channel_id"],
            )
            await tx.emit(
                "contact.updated",
                {**merged, "changed": ["identities", "merged"], "by": actor.ref},
                channel_id=merged["channel_id"],
            )
            conv_ids = list(await tx.conn.scalars(sa.select(C.c.id).where(C.c.contact_id == contact_id)))
            from hub.services.labels import emit_conversations_updated

            await emit_conversations_updated(tx, conv_ids, ["contact"], actor.ref)
            return merged

    async def _flagged(self, conn: AsyncConnection, contact: dict[str, Any]) -> dict[str, Any]:
        if self.attributes is None:
            return {**contact, "attribute_problems": []}
        problems = await self.attributes.problems(conn, "contact", contact["custom_attributes"])
        return {**contact, "attribute_problems": problems}


async def _merge_rows(tx: Tx, keep: dict[str, Any], gone: dict[str, Any]) -> None:
    conn = tx.conn
    kid, gid = keep["id"], gone["id"]
    # Conversations move. Two of them for one (channel, thread) would collide on the unique key:
    # the moved one gets a thread key of its own, so both stay whole.
    taken = {
        (r.channel_id, r.thread_key)
        for r in await conn.execute(sa.select(C.c.channel_id, C.c.thread_key).where(C.c.contact_id == kid))
    }
    for r in (
        await conn.execute(sa.select(C.c.id, C.c.channel_id, C.c.thread_key).where(C.c.contact_id == gid))
    ).all():
        values: dict[str, Any] = {"contact_id": kid}
        if (r.channel_id, r.thread_key) in taken:
            values["thread_key"] = f"{r.thread_key}#merged:{r.id}"
        await conn.execute(C.update().where(C.c.id == r.id).values(**values))
    await conn.execute(ID.update().where(ID.c.contact_id == gid).values(contact_id=kid))
    held = set(await conn.scalars(sa.select(KL.c.label_id).where(KL.c.contact_id == kid)))
    for label_id in await conn.scalars(sa.select(KL.c.label_id).where(KL.c.contact_id == gid)):
        if label_id not in held:
            await conn.execute(KL.insert().values(contact_id=kid, label_id=label_id))
    await conn.execute(KL.delete().where(KL.c.contact_id == gid))
    fill = {f: gone[f] for f in FIELDS if keep[f] is None and gone[f] is not None}
    attrs = {**gone["custom_attributes"], **keep["custom_attributes"]}
    if attrs != keep["custom_attributes"]:
        fill["custom_attributes"] = attrs
    await conn.execute(K.update().where(K.c.id == kid).values(**fill, updated_at=utcnow()))
    await conn.execute(K.delete().where(K.c.id == gid))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[Any, str]:
    from datetime import datetime

    try:
        at, cid = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        ts = datetime.fromisoformat(at)
        if not isinstance(cid, str) or "\x00" in cid or ts.tzinfo is None:
            raise ValueError(cid)
        cid.encode("utf-8")
        return ts, cid
    except (ValueError, TypeError, RecursionError):
        raise BadCursor("cursor is not one this API returned") from None
