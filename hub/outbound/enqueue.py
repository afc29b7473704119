"""Enqueueing: an author's draft becomes a queued message plus its outbox job, in one transaction.

The same ``Idempotency-Key`` never makes a second message: a retried request is answered with the
message the first one stored.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub import schema
from hub.channels import ChannelService
from hub.events import Store, Tx
from hub.groupcommit import GroupCommit
from hub.models import MessageStatus, utcnow
from hub.outbound.capabilities import check_capabilities
from hub.outbound.draft import Draft
from hub.outbound.refused import SendRefused
from hub.records import fetch_conversations, message_dict, message_row
from hub.uploads import kind_mismatch

__all__ = ["SendWriter", "TxSendWriter", "enqueue", "write_sends"]

M = schema.messages
O = schema.outbox  # noqa: E741


class SendWriter(Protocol):
    async def submit(self, item: dict[str, Any]) -> None: ...


class TxSendWriter:
    """Writes a send inside a transaction the caller holds (a rule's, with its run log and
    cursor), instead of a transaction of its own."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def submit(self, item: dict[str, Any]) -> None:
        await write_sends(self.tx, [item])


async def enqueue(
    store: Store,
    channels: ChannelService,
    conversation_id: str,
    author: dict[str, Any],
    req: Draft,
    idempotency_key: str | None,
    uploads: dict[str, dict[str, Any]] | None = None,
    writer: SendWriter | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store the message (queued) and its outbox job. Returns (message, created).

    ``writer`` (``send_writer(store)``) commits concurrent sends together; without it each send
    is its own transaction. ``author["sender"]``, when given, is how the message shows its sender
    (a rule, a bot); else the author is a user.
    """
    fingerprint = req.fingerprint()
    for attempt in range(2):
        try:
            return await _enqueue_once(
                store,
                channels,
                conversation_id,
                author,
                req,
                idempotency_key,
                fingerprint,
                uploads or {},
                writer or GroupCommit(store, write_sends),
            )
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its message.
            if attempt or not idempotency_key:
                raise
    raise AssertionError("unreachable")


# Built once: constructing a statement and its cache key cost as much as running it (measured).
_BY_IDEMPOTENCY_KEY = sa.select(M).where(
    M.c.author_id == sa.bindparam("author_id"), M.c.idempotency_key == sa.bindparam("key")
)
_TARGET = sa.select(M.c.external_id, M.c.conversation_id).where(M.c.id == sa.bindparam("id"))


async def _read_one(store: Store, statement: Any, params: dict[str, Any]) -> Any:
    async with store.db.read() as conn:
        return (await conn.execute(statement, params)).mappings().first()


async def _enqueue_once(
    store: Store,
    channels: ChannelService,
    conversation_id: str,
    author: dict[str, Any],
    req: Draft,
    key: str | None,
    fingerprint: str,
    uploads: dict[str, dict[str, Any]],
    writer: SendWriter,
) -> tuple[dict[str, Any], bool]:
    # Reads and validation first, outside the write transaction: on SQLite writers queue on one
    # lock, so it must be held for the writes alone. A plain text send reads nothing here (the
    # conversation's channel is cached). A concurrent request with the same key loses
    # the insert to the unique constraint, and `enqueue` answers it with the winner's message.
    if key:
        prior = await _read_one(store, _BY_IDEMPOTENCY_KEY, {"author_id": author["id"], "key": key})
        if prior is not None:
            if prior["request_hash"] != fingerprint or prior["conversation_id"] != conversation_id:
                raise SendRefused(
                    "invalid",
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different message; use a new key",
                )
            return message_dict(prior), False
    channel_id = await channels.channel_of(conversation_id)
    if channel_id is None:
        raise SendRefused("not_found", "not_found", f"conversation {conversation_id} does not exist")
    row = channels.rows.get(channel_id)
    cls = channels.registry.get(row["type"]) if row else None
    if row is None or cls is None or not row["enabled"]:
        raise SendRefused(
            "conflict",
            "channel_inactive",
            "the conversation's channel is disabled or its plugin is not installed",
        )
    errors = check_capabilities(cls, req)
    reply_ext = None
    if req.reply_to_message_id or req.reaction:
        target_id = req.reaction.message_id if req.reaction else req.reply_to_message_id
        target = await _read_one(store, _TARGET, {"id": target_id})
        field = "reaction.message_id" if req.reaction else "reply_to_message_id"
        if target is None or target["conversation_id"] != conversation_id:
            errors.append({"field": field, "message": "no such message in this conversation"})
        elif not target["external_id"]:
            errors.append({"field": field, "message": "that message has no provider id yet"})
        else:
            reply_ext = target["external_id"]
    attachments = []
    for i, att in enumerate(req.attachments):
        entry = att.model_dump(mode="json", exclude_none=True)
        if att.upload_id:
            up = uploads.get(att.upload_id)
            if up is None:
                errors.append({"field": f"attachments.{i}.upload_id", "message": "unknown upload"})
                continue
            entry.update({k: up[k] for k in ("size", "mime_type", "filename", "path") if up.get(k)})
            # The file decides what it is, whatever the request said (a JPEG is no video).
            mismatch = kind_mismatch(att.kind, up["mime_type"])
            if mismatch:
                errors.append({"field": f"attachments.{i}.kind", "message": mismatch})
            limit = cls.capabilities.max_attachment_bytes.get(att.kind)
            if limit and up["size"] > limit:
                errors.append(
                    {
                        "field": f"attachments.{i}.upload_id",
                        "message": f"{up['size']} bytes "
                        f"is over this channel's {att.kind.value} limit of {limit} bytes",
                    }
                )
        attachments.append(entry)
    if errors:
        raise SendRefused(
            "invalid", "validation_failed", "the message cannot be sent on this channel", errors
        )
    kind = req.kind()
    content = {
        "attachments": attachments,
        "choices": [c.model_dump(mode="json") for c in req.interactive.choices] if req.interactive else [],
        "interactive_meta": req.interactive.model_dump(mode="json", exclude={"choices"})
        if req.interactive
        else None,
        "template": req.template.model_dump(mode="json") if req.template else None,
        "subject": req.subject,
        "preview_url": req.preview_url,
        "reaction": req.reaction.model_dump(mode="json") if req.reaction else None,
        "data": {},
    }
    text = req.interactive.body if req.interactive else (req.reaction.emoji if req.reaction else req.text)
    now = utcnow()
    msg = message_row(
        {
            "conversation_id": conversation_id,
            "channel_id": channel_id,
            "direction": "outbound",
            "kind": kind.value,
            "text": text,
            "content": content,
            "reply_to_message_id": None if req.reaction else req.reply_to_message_id,
            "reply_to_external_id": reply_ext,
            "sender": author.get("sender")
            or {"type": "user", "id": author["id"], "name": author.get("name") or author["email"]},
            "status": MessageStatus.QUEUED.value,
            "status_at": {"queued": now.isoformat()},
            "author_id": author["id"],
            "idempotency_key": key,
            "request_hash": fingerprint,
            "created_at": now,
        },
    )
    for i, entry in enumerate(attachments):
        if entry.get("path"):  # an upload: the app downloads it from the hub, never by server path
            entry["download_url"] = f"{channels.public_url}/api/v1/attachments/{msg['id']}/{i}"
    job = {
        "message_id": msg["id"],
        "channel_id": channel_id,
        "conversation_id": conversation_id,
        "state": "pending",
        "attempts": 0,
        "due_at": now,
        "created_at": now,
        "updated_at": now,
    }
    await writer.submit({"message": msg, "job": job})
    return message_dict(msg), True


async def write_sends(tx: Tx, items: list[dict[str, Any]]) -> None:
    """Store agents' sends (message, outbox job, conversation clock, ``message.created`` and
    ``conversation.updated``) in bulk."""
    msgs = [item["message"] for item in items]
    await tx.conn.execute(M.insert(), msgs)
    await tx.conn.execute(O.insert(), [item["job"] for item in items])
    await tx.conn.execute(
        schema.conversations.update()
        .where(schema.conversations.c.id == sa.bindparam("b_id"))
        .values(
            last_message_at=sa.bindparam("b_at", type_=schema.TS),
            last_message_id=sa.bindparam("b_mid"),
            updated_at=sa.bindparam("b_now", type_=schema.TS),
        ),
        [
            {
                "b_id": m["conversation_id"],
                "b_at": m["created_at"],
                "b_mid": m["id"],
                "b_now": m["created_at"],
            }
            for m in msgs
        ],
    )
    # The send moved each conversation's clock: say so, as an inbound message does, so an app's
    # sorted conversation list follows without refetching.
    last = {m["conversation_id"]: m for m in msgs}
    views = await fetch_conversations(tx.conn, list(last))
    await tx.emit_many(
        [("message.created", message_dict(m), m["channel_id"], m["conversation_id"]) for m in msgs]
        + [
            (
                "conversation.updated",
                {**v, "changed": ["last_message_at"], "by": last[v["id"]]["sender"]},
                v["channel_id"],
                v["id"],
            )
            for v in views
        ]
    )
