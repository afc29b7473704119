"""Reading and writing the conversation records shared by the inbound and outbound pipelines:
contacts with several identities, conversations, messages, the status machine and reactions.

Every writer takes a ``Tx`` so that the change and its event are one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.db import new_id
from hub.events import Tx
from hub.models import (
    ContactRef,
    Direction,
    MessageStatus,
    StatusUpdate,
    status_advances,
    utcnow,
)

__all__ = [
    "apply_pending_statuses",
    "apply_status",
    "channels_with_bots",
    "conversation_dict",
    "ensure_contact",
    "ensure_conversation",
    "fetch_conversation",
    "fetch_conversations",
    "insert_message",
    "labels_of",
    "message_dict",
    "message_preview",
    "message_row",
    "public_attachment",
    "with_reader",
]

M = schema.messages
C = schema.conversations
# A customer writing reopens a resolved conversation and wakes a snoozed one.
REOPENS_ON_INBOUND = frozenset({"resolved", "snoozed"})


def message_dict(row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    """A stored message in the app's normalized shape (``hub.models.Message``, JSON-ready)."""
    content = row["content"] or {}
    return {
        "id": row["id"],
        "conversation_id": row["conversation_id"],
        "channel_id": row["channel_id"],
        "direction": row["direction"],
        "kind": row["kind"],
        "text": row["text"],
        "subject": content.get("subject"),
        "attachments": [public_attachment(a) for a in content.get("attachments", [])],
        "interactive": content.get("interactive"),
        "choices": content.get("choices", []),
        "template": content.get("template"),
        "reply_to_message_id": row["reply_to_message_id"],
        "forwarded": content.get("forwarded", False),
        "reactions": row["reactions"] or [],
        "sender": row["sender"] or {},
        "status": row["status"],
        "status_at": row["status_at"] or {},
        "error": row["error"],
        "external_id": row["external_id"],
        "data": content.get("data", {}),
        "edits": content.get("edits", []),
        "edited_at": content.get("edited_at"),
        "deleted_at": content.get("deleted_at"),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


# Kept with a stored attachment for the hub's own use, never shown: the server's file path, the
# upload it came from, and the download URL (shown as ``url``).
_PRIVATE_ATTACHMENT_KEYS = ("path", "download_url", "upload_id", "media_id")


def public_attachment(att: dict[str, Any]) -> dict[str, Any]:
    """An attachment as the app sees it (``hub.models.Attachment``): a file the hub holds is given
    by the hub's download URL; a provider's media id (an outbound ``media_id``) is its
    ``external_id``."""
    if not any(k in att for k in _PRIVATE_ATTACHMENT_KEYS):
        return att
    out = {k: v for k, v in att.items() if k not in _PRIVATE_ATTACHMENT_KEYS}
    if att.get("download_url"):
        out["url"] = att["download_url"]
        out.setdefault("state", "ready")
    if att.get("media_id") and not att.get("external_id"):
        out["external_id"] = att["media_id"]
    return out


PREVIEW_CHARS = 200


def message_preview(row: RowMapping | dict[str, Any] | None) -> dict[str, Any] | None:
    """A message as a conversation list previews it (``hub.models.MessagePreview``): the start of
    its text, never the text of a deleted message."""
    if row is None:
        return None
    content = row["content"] or {}
    attachments = content.get("attachments") or []
    deleted = bool(content.get("deleted_at"))
    text = None
    if not deleted:
        text = row["text"] or next((a.get("caption") for a in attachments if a.get("caption")), None)
    return {
        "id": row["id"],
        "kind": row["kind"],
        "direction": row["direction"],
        "text": text[:PREVIEW_CHARS] if text else None,
        "sender": row["sender"] or {},
        "status": row["status"],
        "attachments": len(attachments),
        "deleted": deleted,
        "edited": bool(content.get("edited_at")),
        "created_at": _iso(row["created_at"]),
    }


def conversation_dict(
    row: RowMapping | dict[str, Any],
    contact: RowMapping | dict[str, Any],
    identities: list[str],
    labels: list[str] | None = None,
    *,
    last_message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A conversation in the app's shape. ``unread_count`` and ``last_read_at`` belong to one
    reader: None here (an event goes to every reader); ``with_reader`` fills them for one."""
    return {
        "id": row["id"],
        "channel_id": row["channel_id"],
        "contact": {
            "id": contact["id"],
            "channel_id": contact["channel_id"],
            "name": contact["name"],
            "phone": contact["phone"],
            "email": contact["email"],
            "identities": identities,
        },
        "status": row["status"],
        "snoozed_until": _iso(row.get("snoozed_until")),
        "assignee_id": row["assignee_id"],
        "team": row["team"],
        "priority": row.get("priority"),
        # The names of the labels applied (hub.services.labels), in name order.
        "labels": labels or [],
        "custom_attributes": row["custom_attributes"] or {},
        "subject": row["subject"],
        "thread_id": row.get("thread_id"),
        "participants": row.get("participants") or [],
        "last_message_at": _iso(row["last_message_at"]),
        "last_inbound_at": _iso(row["last_inbound_at"]),
        "last_message": last_message,
        "inbound_count": row["inbound_count"],
        "unread_count": None,
        "last_read_at": None,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def ensure_contact(tx: Tx, channel_id: str, ref: ContactRef) -> str:
    """The contact any of ``ref.ids`` names on this channel, created if none; it gains every id."""
    conn = tx.conn
    I = schema.contact_identities  # noqa: E741
    rows = (
        await conn.execute(
            sa.select(I.c.identity, I.c.contact_id).where(
                I.c.channel_id == channel_id, I.c.identity.in_(ref.ids)
            )
        )
    ).all()
    known = {r.identity: r.contact_id for r in rows}
    now = utcnow()
    if known:
        # The most stable id (first in ref.ids) decides when two contacts were known separately.
        contact_id = next(known[i] for i in ref.ids if i in known)
        changes: dict[str, Any] = {}
        if ref.name:
            changes["name"] = ref.name
        if ref.phone:
            changes["phone"] = ref.phone
        if ref.email:
            changes["email"] = ref.email
        if changes:
            changes["updated_at"] = now
            await conn.execute(
                schema.contacts.update().where(schema.contacts.c.id == contact_id).values(**changes)
            )
    else:
        contact_id = new_id("ct_")
        await conn.execute(
            schema.contacts.insert().values(
                id=contact_id,
                channel_id=channel_id,
                name=ref.name,
                phone=ref.phone,
                email=ref.email,
                created_at=now,
                updated_at=now,
            )
        )
    missing = [i for i in ref.ids if i not in known]
    for identity in missing:
        await conn.execute(
            tx.db.insert(I)
            .values(channel_id=channel_id, identity=identity, contact_id=contact_id)
            .on_conflict_do_nothing()
        )
    return contact_id


async def ensure_conversation(
    tx: Tx, channel_id: str, contact_id: str, thread_key: str = "", subject: str | None = None
) -> tuple[dict[str, Any], bool]:
    """The conversation for (channel, contact, thread), created if new. Returns (row, created)."""
    conn = tx.conn
    row = (
        (
            await conn.execute(
                sa.select(C).where(
                    C.c.channel_id == channel_id,
                    C.c.contact_id == contact_id,
                    C.c.thread_key == thread_key,
                )
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return dict(row), False
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id("cv_"),
        "channel_id": channel_id,
        "contact_id": contact_id,
        "thread_key": thread_key,
        "status": "open",
        "assignee_id": None,
        "team": None,
        "custom_attributes": {},
        "subject": subject,
        "last_message_at": None,
        "last_inbound_at": None,
        "inbound_count": 0,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(C.insert().values(**values))
    return values, True


async def channels_with_bots(conn: AsyncConnection, channel_ids: list[str]) -> set[str]:
    """Which of ``channel_ids`` have an enabled bot: their customers' new conversations start
    ``pending``, held by the bot until it hands over (``hub.bots``)."""
    if not channel_ids:
        return set()
    B, BC = schema.bots, schema.bot_channels
    return set(
        await conn.scalars(
            sa.select(BC.c.channel_id)
            .join(B, B.c.id == BC.c.bot_id)
            .where(BC.c.channel_id.in_(channel_ids), B.c.enabled.is_(True))
        )
    )


async def fetch_conversation(conn: AsyncConnection, conversation_id: str) -> dict[str, Any] | None:
    """The conversation in the app's shape, with its contact."""
    found = await fetch_conversations(conn, [conversation_id])
    return found[0] if found else None


async def fetch_conversations(conn: AsyncConnection, conversation_ids: list[str]) -> list[dict[str, Any]]:
    """Several conversations in the app's shape, in the order given: two queries, however many."""
    if not conversation_ids:
        return []
    K = schema.contacts
    ID = schema.contact_identities
    contact_cols = [
        K.c.id.label("k_id"),
        K.c.channel_id.label("k_channel_id"),
        K.c.name.label("k_name"),
        K.c.phone.label("k_phone"),
        K.c.email.label("k_email"),
    ]
    rows = {
        r["id"]: r
        for r in (
            await conn.execute(
                sa.select(C, *contact_cols)
                .join(K, K.c.id == C.c.contact_id)
                .where(C.c.id.in_(conversation_ids))
            )
        ).mappings()
    }
    last_ids = [r["last_message_id"] for r in rows.values() if r["last_message_id"]]
    previews = {
        m["id"]: message_preview(m)
        for m in (await conn.execute(sa.select(M).where(M.c.id.in_(last_ids)))).mappings()
    }
    identities: dict[str, list[str]] = {}
    contact_ids = {r["contact_id"] for r in rows.values()}
    for identity, contact_id in await conn.execute(
        sa.select(ID.c.identity, ID.c.contact_id)
        .where(ID.c.contact_id.in_(contact_ids))
        .order_by(ID.c.identity)
    ):
        identities.setdefault(contact_id, []).append(identity)
    labels = await labels_of(conn, schema.conversation_labels, list(rows))
    out = []
    for cid in conversation_ids:
        row = rows.get(cid)
        if row is None:
            continue
        contact = {k: row[f"k_{k}"] for k in ("id", "channel_id", "name", "phone", "email")}
        out.append(
            conversation_dict(
                row,
                contact,
                identities.get(contact["id"], []),
                labels.get(cid, []),
                last_message=previews.get(row["last_message_id"]),
            )
        )
    return out


async def labels_of(conn: AsyncConnection, links: sa.Table, owner_ids: list[str]) -> dict[str, list[str]]:
    """owner id -> the names of its labels, in name order; ``links`` is conversation_labels or
    contact_labels (its first column names the owner)."""
    if not owner_ids:
        return {}
    L = schema.labels
    owner = links.c[links.c.keys()[0]]
    out: dict[str, list[str]] = {}
    for owner_id, name in await conn.execute(
        sa.select(owner, L.c.name)
        .join(L, L.c.id == links.c.label_id)
        .where(owner.in_(owner_ids))
        .order_by(L.c.name_key)
    ):
        out.setdefault(owner_id, []).append(name)
    return out


def message_row(values: dict[str, Any]) -> dict[str, Any]:
    """A complete ``messages`` row: a new id and every column's default, overridden by ``values``."""
    now = utcnow()
    return {
        "id": new_id("msg_"),
        "reply_to_message_id": None,
        "reply_to_external_id": None,
        "reactions": [],
        "sender": {},
        "status_at": {},
        "error": None,
        "external_id": None,
        "author_id": None,
        "idempotency_key": None,
        "request_hash": None,
        "text": None,
        "created_at": now,
        "updated_at": now,
        **values,
    }


async def insert_message(tx: Tx, values: dict[str, Any]) -> dict[str, Any] | None:
    """Insert one message; None when (channel, external_id) is already stored (a duplicate)."""
    row = message_row(values)
    if row["reply_to_external_id"] and not row["reply_to_message_id"]:
        row["reply_to_message_id"] = await tx.conn.scalar(
            sa.select(M.c.id).where(
                M.c.channel_id == row["channel_id"], M.c.external_id == row["reply_to_external_id"]
            )
        )
    stmt = tx.db.insert(M).values(**row)
    if row["external_id"] is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["channel_id", "external_id"])
    result = await tx.conn.execute(stmt)
    if result.rowcount == 0:
        return None
    return row


async def with_reader(
    conn: AsyncConnection, user_id: str, convs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The conversations with one reader's ``unread_count`` and ``last_read_at`` filled in."""
    if not convs:
        return convs
    R = schema.conversation_reads
    marks = {
        r.conversation_id: r
        for r in await conn.execute(
            sa.select(R.c.conversation_id, R.c.read_count, R.c.read_at).where(
                R.c.user_id == user_id, R.c.conversation_id.in_([c["id"] for c in convs])
            )
        )
    }
    out = []
    for conv in convs:
        mark = marks.get(conv["id"])
        read = mark.read_count if mark is not None else 0
        out.append(
            {
                **conv,
                "unread_count": max(0, conv["inbound_count"] - read),
                "last_read_at": _iso(mark.read_at) if mark is not None else None,
            }
        )
    return out


async def touch_conversation(
    tx: Tx, conv: dict[str, Any], at: datetime, direction: Direction, message_id: str | None = None
) -> dict[str, Any]:
    """Move a conversation's clocks forward for a new message; a resolved one reopens on inbound."""
    changes: dict[str, Any] = {"updated_at": utcnow()}
    if conv["last_message_at"] is None or at > conv["last_message_at"]:
        changes["last_message_at"] = at
        if message_id is not None:
            changes["last_message_id"] = message_id
    if direction is Direction.INBOUND:
        if conv["last_inbound_at"] is None or at > conv["last_inbound_at"]:
            changes["last_inbound_at"] = at
        changes["inbound_count"] = C.c.inbound_count + 1
        if conv["status"] in REOPENS_ON_INBOUND:
            changes["status"] = "open"
            changes["snoozed_until"] = None
    await tx.conn.execute(C.update().where(C.c.id == conv["id"]).values(**changes))
    row = (await tx.conn.execute(sa.select(C).where(C.c.id == conv["id"]))).mappings().one()
    return dict(row)


async def apply_status(
    tx: Tx,
    msg: dict[str, Any],
    status: MessageStatus,
    at: datetime,
    error: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Move a message's status forward (never back) and emit ``message.updated``.

    ``read`` implies ``delivered`` and ``played`` implies ``read`` (their timestamps are set too).
    Returns the updated row, or None when the update would not move the message forward (a late or
    duplicate receipt).

    ``msg`` may be stale: another transaction may have moved the status since it was read. So the
    row is read again under a row lock (PostgreSQL; SQLite has one writer at a time), the decision
    is taken on what is stored, and the write is conditional on the status it was taken on.
    """
    fresh = (
        (
            await tx.conn.execute(
                sa.select(M.c.status, M.c.status_at).where(M.c.id == msg["id"]).with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if fresh is None:
        return None
    current = MessageStatus(fresh["status"])
    stamps = dict(fresh["status_at"] or {})
    msg = {**msg, "status": current.value, "status_at": stamps}
    if not status_advances(current, status):
        # Still record a timestamp the message skipped (delivered arriving after read).
        if (
            status.value not in stamps
            and status in (MessageStatus.DELIVERED, MessageStatus.SENT)
            and current != MessageStatus.FAILED
        ):
            stamps[status.value] = at.isoformat()
            await tx.conn.execute(
                M.update().where(M.c.id == msg["id"], M.c.status == current.value).values(status_at=stamps)
            )
        return None
    stamps.setdefault(status.value, at.isoformat())
    if status is MessageStatus.PLAYED:
        stamps.setdefault(MessageStatus.READ.value, at.isoformat())
    if status in (MessageStatus.READ, MessageStatus.PLAYED):
        stamps.setdefault(MessageStatus.DELIVERED.value, at.isoformat())
    if status in (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED):
        stamps.setdefault(MessageStatus.SENT.value, at.isoformat())
    changes: dict[str, Any] = {"status": status.value, "status_at": stamps, "updated_at": utcnow()}
    if error is not None:
        changes["error"] = error
    if extra:
        changes.update(extra)
    written = await tx.conn.execute(
        M.update().where(M.c.id == msg["id"], M.c.status == current.value).values(**changes)
    )
    if written.rowcount == 0:
        return None  # moved by another writer between the read and the write: its receipt stands
    updated = {**msg, **changes}
    await tx.emit(
        "message.updated",
        message_dict(updated),
        channel_id=msg["channel_id"],
        conversation_id=msg["conversation_id"],
    )
    return updated


async def apply_pending_statuses(tx: Tx, current: dict[str, dict[str, Any]]) -> None:
    """Apply the receipts kept for provider ids that had no message yet (``schema.pending_statuses``).

    ``current`` maps each provider id just learned to its message row, and is updated in place.
    The outbox calls it when a send's answer names the id; ``hub.echoes`` when an echo does first.
    """
    if not current:
        return
    P = schema.pending_statuses
    channel_ids = {m["channel_id"] for m in current.values()}
    pending = (
        (
            await tx.conn.execute(
                sa.select(P)
                .where(P.c.channel_id.in_(channel_ids), P.c.external_id.in_(list(current)))
                .order_by(P.c.id)
            )
        )
        .mappings()
        .all()
    )
    for p in pending:
        st = StatusUpdate.model_validate(p["update"])
        msg = current[p["external_id"]]
        current[p["external_id"]] = (
            await apply_status(tx, msg, MessageStatus(st.status), st.timestamp, st.error) or msg
        )
    if pending:
        await tx.conn.execute(P.delete().where(P.c.id.in_([p["id"] for p in pending])))
