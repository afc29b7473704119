"""What the worker reads for claimed jobs, and the ``OutboundMessage`` a channel's ``send`` gets."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.events import Store
from hub.models import (
    ContactRef,
    InteractiveChoice,
    MessageKind,
    OutboundAttachment,
    OutboundMessage,
    SendContext,
    Template,
)

__all__ = ["Loaded", "load", "outbound_message", "send_context"]

M = schema.messages

# Who sent a message (its ``sender.type``) as ``SendContext.author``: Messenger's HUMAN_AGENT tag
# is for a person's reply only.
_AUTHORS: dict[str | None, Any] = {
    "user": "agent",
    "bot": "bot",
    "rule": "automation",
    "automation": "automation",
}

Loaded = tuple[dict[str, Any], dict[str, Any], list[str]]
"""A message row, its conversation (contact inside) and the contact's ids."""

# What the outbox reads for a batch of claimed jobs, built once (IN lists expand per call).
_MESSAGES = sa.select(M).where(M.c.id.in_(sa.bindparam("ids", expanding=True)))
_RECIPIENTS = (
    sa.select(
        schema.conversations.c.id,
        schema.conversations.c.contact_id,
        schema.conversations.c.last_inbound_at,
        schema.conversations.c.subject,
        schema.conversations.c.thread_id,
        schema.conversations.c.participants,
        schema.contacts.c.name,
        schema.contacts.c.phone,
        schema.contacts.c.email,
    )
    .join(schema.contacts, schema.contacts.c.id == schema.conversations.c.contact_id)
    .where(schema.conversations.c.id.in_(sa.bindparam("ids", expanding=True)))
)
_THREAD_REFS = (
    sa.select(M.c.conversation_id, M.c.external_id)
    .where(
        M.c.conversation_id.in_(sa.bindparam("ids", expanding=True)),
        M.c.external_id.is_not(None),
    )
    .order_by(M.c.created_at, M.c.id)
)
_IDENTITIES = (
    sa.select(schema.contact_identities.c.identity, schema.contact_identities.c.contact_id)
    .where(schema.contact_identities.c.contact_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(schema.contact_identities.c.identity)
)


async def load(store: Store, message_ids: list[str], threaded: Collection[str] = ()) -> dict[str, Loaded]:
    """Each message with its conversation (contact inside) and the contact's ids: three queries.

    For messages on the ``threaded`` channels (email), a fourth reads the provider ids of the
    conversation's earlier messages, oldest first: replies are threaded by them (References).
    """
    async with store.db.read() as conn:
        msgs = {r["id"]: dict(r) for r in (await conn.execute(_MESSAGES, {"ids": message_ids})).mappings()}
        conv_ids = list({m["conversation_id"] for m in msgs.values()})
        convs = {}
        for r in (await conn.execute(_RECIPIENTS, {"ids": conv_ids})).mappings():
            convs[r["id"]] = {
                "id": r["id"],
                "contact_id": r["contact_id"],
                "last_inbound_at": r["last_inbound_at"],
                "subject": r["subject"],
                "thread_id": r["thread_id"],
                "participants": r["participants"] or [],
                "contact": {
                    "id": r["contact_id"],
                    "name": r["name"],
                    "phone": r["phone"],
                    "email": r["email"],
                },
            }
        contact_ids = list({c["contact_id"] for c in convs.values()})
        ids: dict[str, list[str]] = {}
        for identity, contact_id in await conn.execute(_IDENTITIES, {"ids": contact_ids}):
            ids.setdefault(contact_id, []).append(identity)
        on_threads = list({m["conversation_id"] for m in msgs.values() if m["channel_id"] in threaded})
        if on_threads:
            for conv_id, ext in await conn.execute(_THREAD_REFS, {"ids": on_threads}):
                if conv_id in convs:
                    convs[conv_id].setdefault("thread_refs", []).append(ext)
    return {
        mid: (msg, conv, ids.get(conv["contact_id"], []))
        for mid, msg in msgs.items()
        if (conv := convs.get(msg["conversation_id"])) is not None
    }


def send_context(msg: dict[str, Any], conv: dict[str, Any], recipient: ContactRef) -> SendContext:
    """The conversation as the hub knows it, for a provider that needs more than the recipient."""
    mine = set(recipient.ids)
    cc = [ContactRef.model_validate(p) for p in conv["participants"]]
    return SendContext(
        thread_id=conv["thread_id"],
        subject=conv["subject"],
        cc=[ref for ref in cc if not mine.intersection(ref.ids)],
        last_inbound_at=conv["last_inbound_at"],
        author=_AUTHORS.get((msg["sender"] or {}).get("type"), "system"),
    )


def outbound_message(msg: dict[str, Any], conv: dict[str, Any], ids: list[str]) -> OutboundMessage:
    content = msg["content"] or {}
    contact = conv["contact"]
    recipient = ContactRef(
        ids=ids or [f"contact:{contact['id']}"],
        name=contact["name"],
        phone=contact["phone"],
        email=contact["email"],
    )
    meta = content.get("interactive_meta") or {}
    reaction = content.get("reaction") or {}
    return OutboundMessage(
        id=msg["id"],
        channel_id=msg["channel_id"],
        conversation_id=msg["conversation_id"],
        recipient=recipient,
        kind=MessageKind(msg["kind"]),
        text=meta.get("body") or (None if reaction else msg["text"]),
        subject=content.get("subject"),
        attachments=[
            OutboundAttachment(
                kind=a["kind"],
                url=a.get("url"),
                media_id=a.get("media_id"),
                path=a.get("path"),
                mime_type=a.get("mime_type"),
                filename=a.get("filename"),
                size=a.get("size"),
                caption=a.get("caption"),
            )
            for a in content.get("attachments", [])
        ],
        template=Template.model_validate(content["template"]) if content.get("template") else None,
        interactive=[InteractiveChoice.model_validate(c) for c in content.get("choices", [])],
        interactive_header=meta.get("header"),
        interactive_button=meta.get("button"),
        reply_to_external_id=msg["reply_to_external_id"],
        reaction_emoji=reaction.get("emoji") if reaction else None,
        preview_url=bool(content.get("preview_url")),
        thread_refs=conv.get("thread_refs", []),
        context=send_context(msg, conv, recipient),
    )
