"""Private notes: agents write them on a conversation for each other; the customer never sees one.

A note is its own row (``notes``), never a message: nothing in the outbound pipeline reads the
table, so no outbox job can ever carry a note to a provider. A note that mentions colleagues
(``mention_ids``, or ``@email`` in its text) names them in ``note.created``; the notification
consumer (``hub.notify``) tells each one. A colleague who cannot read the conversation cannot be
mentioned in it (422), so a notification never shows what its reader may not see.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.services.conversations import access_conversation
from hub.services.errors import Invalid
from hub.services.organisation import load_actor

__all__ = ["NoteService", "add_note", "mentioned_emails", "note_dict"]

N = schema.notes
U = schema.users
# "@ann@example.com" mentions Ann; an address without the leading @ is only text.
_MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


def mentioned_emails(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(1).lower().rstrip(".") for m in _MENTION.finditer(text)))


def note_dict(row: Any) -> dict[str, Any]:
    created = row["created_at"]
    return {
        "id": row["id"],
        "conversation_id": row["conversation_id"],
        "channel_id": row["channel_id"],
        "author": row["author"],
        "text": row["text"],
        "mentions": row["mentions"] or [],
        "created_at": created if isinstance(created, str) else created.isoformat(),
    }


async def _mentions(
    conn: AsyncConnection, conv: dict[str, Any], text: str, mention_ids: list[str]
) -> list[str]:
    """The users the note mentions, each able to read the conversation (else ``Invalid``)."""
    emails = mentioned_emails(text)
    wanted = list(dict.fromkeys(mention_ids))
    rows: list[Any] = []
    if wanted or emails:
        rows = list(
            (
                await conn.execute(
                    sa.select(U).where(
                        U.c.active.is_(True), sa.or_(U.c.id.in_(wanted), U.c.email.in_(emails))
                    )
                )
            ).mappings()
        )
    found = {r["id"]: r for r in rows}
    missing = [uid for uid in wanted if uid not in found]
    if missing:
        raise Invalid("mention_ids", f"no such active user: {', '.join(missing)}")
    out = []
    for row in rows:
        user = dict(row)
        if not (await load_actor(conn, user)).sees_conversation(conv):
            field = "mention_ids" if user["id"] in wanted else "text"
            who = user["name"] or user["email"]
            raise Invalid(field, f"{who} cannot read this conversation, so cannot be mentioned in it")
        out.append(user["id"])
    return sorted(out)


async def add_note(
    tx: Tx, actor: Actor, conversation_id: str, text: str, mention_ids: list[str] | None = None
) -> dict[str, Any]:
    """Write a note as ``actor`` inside the caller's transaction; emits ``note.created``.

    Needs ``notes.write`` and a conversation the actor can read (else NotFound)."""
    actor.require("notes.write")
    conv = await access_conversation(tx.conn, actor, conversation_id)
    if not text.strip():
        raise Invalid("text", "a note needs some text")
    mentions = await _mentions(tx.conn, conv, text, mention_ids or [])
    row = {
        "id": new_id("note_"),
        "conversation_id": conversation_id,
        "channel_id": conv["channel_id"],
        "author": actor.ref,
        "text": text,
        "mentions": mentions,
        "created_at": utcnow(),
    }
    await tx.conn.execute(N.insert().values(**row))
    note = note_dict(row)
    await tx.emit(
        "note.created",
        {**note, "by": actor.ref},
        channel_id=conv["channel_id"],
        conversation_id=conversation_id,
    )
    return note


class NoteService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def for_conversation(self, actor: Actor, conversation_id: str) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            await access_conversation(conn, actor, conversation_id)
            rows = await conn.execute(
                sa.select(N).where(N.c.conversation_id == conversation_id).order_by(N.c.created_at, N.c.id)
            )
            return [note_dict(r) for r in rows.mappings()]

    async def create(
        self, actor: Actor, conversation_id: str, text: str, mention_ids: list[str] | None = None
    ) -> dict[str, Any]:
        async with self.store.tx() as tx:
            return await add_note(tx, actor, conversation_id, text, mention_ids)
