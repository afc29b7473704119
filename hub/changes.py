"""Edits and deletions of stored messages, applied as ``message.updated``.

An edit keeps the content it replaces in the message's history (``content["edits"]``, oldest
first); a deletion leaves a tombstone (``deleted_at`` set, content emptied), after which nothing
changes the message again. Each change is recorded by a key on the message, so a provider's
redelivery has one effect. A change whose message is not stored yet waits in ``pending_changes``
and is applied, in the same transaction, when that message is inserted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter

from hub import schema
from hub.events import Tx
from hub.models import MessageDeletion, MessageEdit, utcnow
from hub.records import fetch_conversation, message_dict

__all__ = ["apply_change", "apply_pending_changes"]

log = logging.getLogger("hub.inbound")
M = schema.messages
P = schema.pending_changes
Change = MessageEdit | MessageDeletion
_change: TypeAdapter[Change] = TypeAdapter(Change)


def change_key(ev: Change) -> str:
    """The same for every copy of one change: its provider id, else a digest of what it says."""
    if ev.external_id:
        return f"{ev.type}:{ev.external_id}"
    what = ev.model_dump(mode="json", exclude={"contact"})
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]
    return f"{ev.type}:{digest}"


async def apply_change(tx: Tx, channel_id: str, ev: Change) -> None:
    """Apply an edit or deletion to its message, or keep it until the message arrives."""
    msg = (
        (
            await tx.conn.execute(
                sa.select(M)
                .where(M.c.channel_id == channel_id, M.c.external_id == ev.target_external_id)
                .with_for_update()  # two processes editing one message take turns (PostgreSQL)
            )
        )
        .mappings()
        .first()
    )
    if msg is not None:
        await _apply(tx, dict(msg), ev)
        return
    key = change_key(ev)
    waiting = await tx.conn.scalars(
        sa.select(P.c.change).where(
            P.c.channel_id == channel_id, P.c.target_external_id == ev.target_external_id
        )
    )
    if any(change_key(_change.validate_python(c)) == key for c in waiting):
        return
    await tx.conn.execute(
        P.insert().values(
            channel_id=channel_id,
            target_external_id=ev.target_external_id,
            change=ev.model_dump(mode="json"),
            created_at=utcnow(),
        )
    )


# Built once: it runs for every batch of inbound messages (building it cost more than running it).
_WAITING = (
    sa.select(P.c.id, P.c.target_external_id, P.c.change)
    .where(
        P.c.channel_id == sa.bindparam("b_cid"),
        P.c.target_external_id.in_(sa.bindparam("b_ids", expanding=True)),
    )
    .order_by(P.c.id)
)


async def apply_pending_changes(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """Apply the changes that waited for these newly inserted messages, oldest first."""
    wanted: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["external_id"]:
            wanted[row["channel_id"]].append(row["external_id"])
    for channel_id, ext_ids in wanted.items():
        pending = (await tx.conn.execute(_WAITING, {"b_cid": channel_id, "b_ids": ext_ids})).all()
        if not pending:
            continue
        current = {r["external_id"]: r for r in rows if r["channel_id"] == channel_id}
        changes = sorted(
            ((_change.validate_python(p.change), p.target_external_id) for p in pending),
            key=lambda item: item[0].timestamp,
        )
        for ev, target in changes:
            current[target] = await _apply(tx, current[target], ev)
        await tx.conn.execute(P.delete().where(P.c.id.in_([p.id for p in pending])))


async def _apply(tx: Tx, msg: dict[str, Any], ev: Change) -> dict[str, Any]:
    """Apply one change to a stored message; the message as it is afterwards."""
    content = dict(msg["content"] or {})
    key = change_key(ev)
    if key in content.get("changes", []) or content.get("deleted_at"):
        return msg  # a redelivery, or a tombstone: nothing changes it any more
    if msg["direction"] != ev.direction.value:
        # Only a message's author edits it: a customer cannot rewrite what the business sent.
        log.warning("%s of message %s from the other side ignored", ev.type, msg["id"])
        return msg
    content["changes"] = [*content.get("changes", []), key]
    text = msg["text"]
    kind = msg["kind"]
    if isinstance(ev, MessageDeletion):
        text = None
        content.update(
            attachments=[], edits=[], interactive=None, data={}, deleted_at=ev.timestamp.isoformat()
        )
        # Its files are no longer served or fetched: the attachment route serves only done jobs.
        await tx.conn.execute(
            schema.media_jobs.update()
            .where(schema.media_jobs.c.message_id == msg["id"])
            .values(state="deleted")
        )
    else:
        text, kind = _edit(content, msg, ev)
    now = utcnow()
    await tx.conn.execute(
        M.update().where(M.c.id == msg["id"]).values(text=text, kind=kind, content=content, updated_at=now)
    )
    updated = {**msg, "text": text, "kind": kind, "content": content, "updated_at": now}
    await tx.emit(
        "message.updated",
        message_dict(updated),
        channel_id=msg["channel_id"],
        conversation_id=msg["conversation_id"],
    )
    await _refresh_preview(tx, updated)
    return updated


async def _refresh_preview(tx: Tx, msg: dict[str, Any]) -> None:
    """A change to a conversation's last message changes what its list shows: say so, so that a
    deleted message's text does not stay on the app's list."""
    C = schema.conversations
    last = await tx.conn.scalar(sa.select(C.c.last_message_id).where(C.c.id == msg["conversation_id"]))
    if last != msg["id"]:
        return
    conv = await fetch_conversation(tx.conn, msg["conversation_id"])
    if conv is not None:
        await tx.emit(
            "conversation.updated",
            {**conv, "changed": ["last_message"], "by": {"type": "system", "id": "system", "name": None}},
            channel_id=conv["channel_id"],
            conversation_id=conv["id"],
        )


def _edit(content: dict[str, Any], msg: dict[str, Any], ev: MessageEdit) -> tuple[str | None, str]:
    """Record ``ev`` in ``content``: the new (text, kind) of the message."""
    edits: list[dict[str, Any]] = list(content.get("edits", []))
    new_attachments = _keep_fetched(content.get("attachments", []), ev)
    at = ev.timestamp.isoformat()
    later = next((i for i, rev in enumerate(edits) if _when(rev["replaced_at"]) > ev.timestamp), None)
    if later is not None:
        # An edit older than one already applied (delivered out of order): it becomes the version
        # between the one it replaced and the next edit, and the message keeps its newer content.
        replaced_by_next = edits[later]["replaced_at"]
        edits[later] = {**edits[later], "replaced_at": at}
        revision = {"kind": ev.kind.value, "text": ev.text, "attachments": new_attachments}
        edits.insert(later + 1, {**revision, "replaced_at": replaced_by_next})
        content["edits"] = edits
        return msg["text"], msg["kind"]
    edits.append(
        {
            "kind": msg["kind"],
            "text": msg["text"],
            "attachments": content.get("attachments", []),
            "replaced_at": at,
        }
    )
    content.update(edits=edits, attachments=new_attachments, edited_at=at)
    return ev.text, ev.kind.value


def _keep_fetched(old: list[dict[str, Any]], ev: MessageEdit) -> list[dict[str, Any]]:
    """The edit's attachments, keeping what the hub already fetched of a file it still carries
    (an edited caption does not make the app download the photo again)."""
    fetched = {a.get("external_id"): a for a in old if a.get("external_id")}
    out = []
    for att in ev.attachments:
        new = att.model_dump(mode="json")
        before = fetched.get(att.external_id) if att.external_id else None
        if before is not None:
            new = {**before, "caption": new.get("caption")}
        out.append(new)
    return out


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
