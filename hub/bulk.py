"""Applying inbound messages: a dozen statements per batch instead of a dozen per message.

This is the one path that stores a provider's messages (one delivery or many at once): contacts,
conversations (by thread reference, provider thread or contact), messages, media jobs, the
conversations' clocks and participants, and then any edit or deletion that arrived before its
message. A provider id already stored has no effect."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.changes import apply_pending_changes
from hub.channel import Channel
from hub.db import new_id
from hub.events import Tx
from hub.models import Direction, InboundMessage, MessageStatus, utcnow
from hub.records import (
    REOPENS_ON_INBOUND,
    channels_with_bots,
    conversation_dict,
    labels_of,
    message_dict,
    message_preview,
)
from hub.routing import route

__all__ = ["apply_messages"]

M = schema.messages
C = schema.conversations
K = schema.contacts
ID = schema.contact_identities

# Built once: these run for every batch of inbound messages, and building a statement cost more
# than running it on SQLite (profiled). ``b_cid``: a channel id; ``b_ids``: an expanding list.
_CID: sa.BindParameter[str] = sa.bindparam("b_cid")
_IDS: sa.BindParameter[list[str]] = sa.bindparam("b_ids", expanding=True)
_STORED_IDS = sa.select(M.c.external_id).where(M.c.channel_id == _CID, M.c.external_id.in_(_IDS))
_KNOWN_IDENTITIES = sa.select(ID.c.identity, ID.c.contact_id).where(
    ID.c.channel_id == _CID, ID.c.identity.in_(_IDS)
)
_CONTACTS = sa.select(K).where(K.c.id.in_(_IDS))
_IDENTITIES_OF = (
    sa.select(ID.c.identity, ID.c.contact_id).where(ID.c.contact_id.in_(_IDS)).order_by(ID.c.identity)
)
_CONVERSATIONS_OF = sa.select(C).where(C.c.channel_id == _CID, C.c.contact_id.in_(_IDS))
_TOUCH = (
    C.update()
    .where(C.c.id == sa.bindparam("b_id"))
    .values(
        last_message_at=sa.bindparam("b_lma", type_=schema.TS),
        last_inbound_at=sa.bindparam("b_lia", type_=schema.TS),
        last_message_id=sa.bindparam("b_lmid"),
        inbound_count=C.c.inbound_count + sa.bindparam("b_unread"),
        status=sa.bindparam("b_status"),
        snoozed_until=sa.bindparam("b_snoozed", type_=schema.TS),
        participants=sa.bindparam("b_participants", type_=sa.JSON),
        updated_at=sa.bindparam("b_now", type_=schema.TS),
    )
)


async def apply_messages(tx: Tx, items: Sequence[tuple[Channel, InboundMessage]]) -> None:
    """Store new messages (duplicates skipped), their contacts and conversations, and emit
    ``conversation.created``, ``message.created`` and ``conversation.updated`` in order."""
    todo = await _new_only(tx, items)
    if not todo:
        return
    now = utcnow()
    contact_ids, contacts = await _contacts(tx, todo, now)
    conv_ids, convs, created = await _conversations(tx, todo, contact_ids, now)
    # A thread's conversation belongs to whoever opened it, maybe not a sender of this batch.
    others = {conv["contact_id"] for conv in convs.values()} - set(contacts)
    if others:
        contacts.update(await _contact_rows(tx, sorted(others)))
    replies = await _reply_targets(tx, todo)
    rows: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    for (channel, ev), contact_id, conv_id in zip(todo, contact_ids, conv_ids, strict=True):
        cid = channel.channel_id
        inbound = ev.direction is Direction.INBOUND
        row: dict[str, Any] = {
            "id": new_id("msg_"),
            "conversation_id": conv_id,
            "channel_id": cid,
            "direction": ev.direction.value,
            "kind": ev.kind.value,
            "text": ev.text,
            "content": {
                "attachments": [a.model_dump(mode="json") for a in ev.attachments],
                "interactive": ev.interactive.model_dump(mode="json") if ev.interactive else None,
                "forwarded": ev.forwarded,
                "subject": ev.subject,
                "data": ev.data,
            },
            "reply_to_message_id": replies.get((cid, ev.reply_to_external_id or "")),
            "reply_to_external_id": ev.reply_to_external_id,
            "reactions": [],
            "sender": {"type": "contact", "id": contact_id, "name": ev.contact.name}
            if inbound
            else {"type": "channel", "id": cid},
            "status": MessageStatus.RECEIVED.value if inbound else MessageStatus.SENT.value,
            "status_at": {} if inbound else {"sent": ev.timestamp.isoformat()},
            "error": None,
            "external_id": ev.external_id,
            "author_id": None,
            "idempotency_key": None,
            "request_hash": None,
            "created_at": ev.timestamp,
            "updated_at": now,
        }
        rows.append(row)
        for idx, att in enumerate(ev.attachments):
            if att.external_id or att.source_url:
                media.append(
                    {
                        "message_id": row["id"],
                        "idx": idx,
                        "channel_id": cid,
                        "state": "pending",
                        "attempts": 0,
                        "due_at": now,
                    }
                )
    await tx.conn.execute(M.insert(), rows)
    if media:
        await tx.conn.execute(schema.media_jobs.insert(), media)
    reopened = await _touch(tx, todo, [r["id"] for r in rows], conv_ids, convs, now)
    # A bot's conversation (pending) is routed to agents when the bot hands it over, not now.
    routed = [convs[c] for c in created if convs[c]["status"] != "pending"]
    await route(tx, routed, [convs[c] for c in reopened])
    known_ids = [c for c in convs if c not in created]
    labels = await labels_of(tx.conn, schema.conversation_labels, known_ids)

    # The preview of each conversation: its newest message, of this batch or (a message delivered
    # late, older than what the conversation shows) already stored.
    batch = {r["id"]: r for r in rows}
    stored = [c["last_message_id"] for c in convs.values() if c.get("last_message_id") not in batch]
    if stored:
        for m in (await tx.conn.execute(sa.select(M).where(M.c.id.in_(stored)))).mappings():
            batch[m["id"]] = dict(m)

    def view(conv_id: str) -> dict[str, Any]:
        conv = convs[conv_id]
        contact, identities = contacts[conv["contact_id"]]
        last = message_preview(batch.get(conv.get("last_message_id") or ""))
        return conversation_dict(conv, contact, identities, labels.get(conv_id, []), last_message=last)

    events: list[tuple[str, dict[str, Any], str | None, str | None]] = []
    announced: set[str] = set()
    for row in rows:
        conv_id = row["conversation_id"]
        if conv_id in created and conv_id not in announced:
            announced.add(conv_id)
            events.append(("conversation.created", view(conv_id), row["channel_id"], conv_id))
        events.append(("message.created", message_dict(row), row["channel_id"], conv_id))
    for conv_id in dict.fromkeys(r["conversation_id"] for r in rows):
        if conv_id not in created:
            events.append(("conversation.updated", view(conv_id), convs[conv_id]["channel_id"], conv_id))
    await tx.emit_many(events)
    await apply_pending_changes(tx, rows)


async def _new_only(
    tx: Tx, items: Sequence[tuple[Channel, InboundMessage]]
) -> list[tuple[Channel, InboundMessage]]:
    """One item per (channel, provider id), first wins, minus those already stored."""
    unique: dict[tuple[str, str], tuple[Channel, InboundMessage]] = {}
    for channel, ev in items:
        unique.setdefault((channel.channel_id, ev.external_id), (channel, ev))
    by_channel: dict[str, list[str]] = defaultdict(list)
    for cid, ext in unique:
        by_channel[cid].append(ext)
    for cid, ext_ids in by_channel.items():
        stored = await tx.conn.scalars(_STORED_IDS, {"b_cid": cid, "b_ids": ext_ids})
        for ext in stored:
            unique.pop((cid, ext), None)
    return list(unique.values())


async def _contacts(
    tx: Tx, todo: list[tuple[Channel, InboundMessage]], now: datetime
) -> tuple[list[str], dict[str, tuple[dict[str, Any], list[str]]]]:
    """The contact of each item (found by any id, else created; every id attached), and each
    involved contact's row and identities."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for channel, ev in todo:
        wanted[channel.channel_id].update(ev.contact.ids)
    known: dict[tuple[str, str], str] = {}
    for cid, ids in wanted.items():
        for identity, contact_id in await tx.conn.execute(
            _KNOWN_IDENTITIES, {"b_cid": cid, "b_ids": list(ids)}
        ):
            known[(cid, identity)] = contact_id
    new_contacts: dict[str, dict[str, Any]] = {}
    new_identities: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    result: list[str] = []
    for channel, ev in todo:
        cid, ref = channel.channel_id, ev.contact
        contact_id = next((known[(cid, i)] for i in ref.ids if (cid, i) in known), None)
        if contact_id is None:
            contact_id = new_id("ct_")
            new_contacts[contact_id] = {
                "id": contact_id,
                "channel_id": cid,
                "name": ref.name,
                "phone": ref.phone,
                "email": ref.email,
                "created_at": now,
                "updated_at": now,
            }
        for identity in ref.ids:
            if (cid, identity) not in known:
                known[(cid, identity)] = contact_id
                new_identities.append({"channel_id": cid, "identity": identity, "contact_id": contact_id})
        fresh = {k: v for k, v in (("name", ref.name), ("phone", ref.phone), ("email", ref.email)) if v}
        latest.setdefault(contact_id, {}).update(fresh)
        result.append(contact_id)
    if new_contacts:
        await tx.conn.execute(K.insert(), list(new_contacts.values()))
    if new_identities:
        await tx.conn.execute(tx.db.insert(ID).on_conflict_do_nothing(), new_identities)
    involved = sorted(set(result))
    loaded = await _contact_rows(tx, involved)
    rows = {cid: row for cid, (row, _) in loaded.items()}
    changed = []
    for contact_id, fresh in latest.items():
        row = rows[contact_id]
        if any(row[k] != v for k, v in fresh.items()):
            row.update(fresh, updated_at=now)
            changed.append(
                {
                    "b_id": contact_id,
                    "b_name": row["name"],
                    "b_phone": row["phone"],
                    "b_email": row["email"],
                    "b_now": now,
                }
            )
    if changed:
        await tx.conn.execute(
            K.update()
            .where(K.c.id == sa.bindparam("b_id"))
            .values(
                name=sa.bindparam("b_name"),
                phone=sa.bindparam("b_phone"),
                email=sa.bindparam("b_email"),
                updated_at=sa.bindparam("b_now"),
            ),
            changed,
        )
    return result, loaded


async def _contact_rows(tx: Tx, ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Each contact's row and identities (sorted)."""
    params = {"b_ids": list(ids)}
    rows = {r["id"]: dict(r) for r in (await tx.conn.execute(_CONTACTS, params)).mappings()}
    identities: dict[str, list[str]] = defaultdict(list)
    for identity, contact_id in await tx.conn.execute(_IDENTITIES_OF, params):
        identities[contact_id].append(identity)
    return {cid: (row, identities[cid]) for cid, row in rows.items()}


async def _conversations(
    tx: Tx, todo: list[tuple[Channel, InboundMessage]], contact_ids: list[str], now: datetime
) -> tuple[list[str], dict[str, dict[str, Any]], set[str]]:
    """Each item's conversation (created when new), every involved conversation row, the new ones.

    In order of precedence: the conversation of the first ``thread_refs`` message already known
    (stored, or earlier in this batch), unless ``Channel.joins_thread`` refuses it; the one of
    ``thread_id`` on the channel, whoever wrote; the one of (channel, contact), or of the message
    itself on a ``threaded`` channel."""
    by_ref = await _ref_conversations(tx, todo)
    by_thread = await _thread_conversations(tx, todo)
    keys = [
        (channel.channel_id, contact_id, ev.external_id if getattr(channel, "threaded", False) else "")
        for (channel, ev), contact_id in zip(todo, contact_ids, strict=True)
    ]
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    by_channel: dict[str, set[str]] = defaultdict(set)
    for cid, contact_id, _ in keys:
        by_channel[cid].add(contact_id)
    for cid, contacts in by_channel.items():
        params = {"b_cid": cid, "b_ids": sorted(contacts)}
        for existing in (await tx.conn.execute(_CONVERSATIONS_OF, params)).mappings():
            found[(existing["channel_id"], existing["contact_id"], existing["thread_key"])] = dict(existing)
    rows: dict[str, dict[str, Any]] = {row["id"]: row for row in [*by_ref.values(), *by_thread.values()]}
    created: set[str] = set()
    botted: set[str] | None = None
    new_rows: list[dict[str, Any]] = []
    conv_ids: list[str] = []
    for key, (channel, ev) in zip(keys, todo, strict=True):
        cid = channel.channel_id
        known = next((by_ref[(cid, ref)] for ref in ev.thread_refs if (cid, ref) in by_ref), None)
        if known is not None and not channel.joins_thread(known.get("subject"), ev):
            known = None  # the channel refuses the merge (email: the subject changed topic)
        if known is None and ev.thread_id:
            known = by_thread.get((cid, ev.thread_id))
            key = (cid, key[1], ev.thread_id)
        if known is None:
            known = found.get(key)
        if known is None:
            if botted is None:
                botted = await channels_with_bots(tx.conn, list(by_channel))
            known = {
                "id": new_id("cv_"),
                "channel_id": cid,
                "contact_id": key[1],
                "thread_key": key[2],
                "thread_id": ev.thread_id,
                "participants": [],
                # A channel's bot holds a customer's new conversation until it hands over.
                "status": "pending" if cid in botted and ev.direction is Direction.INBOUND else "open",
                "assignee_id": None,
                "team": None,
                "custom_attributes": {},
                "subject": ev.subject,
                "last_message_at": None,
                "last_inbound_at": None,
                "inbound_count": 0,
                "last_message_id": None,
                "created_at": now,
                "updated_at": now,
                "priority": None,
                "snoozed_until": None,
                "last_assignee_id": None,
            }
            found[key] = known
            if ev.thread_id:
                by_thread[(cid, ev.thread_id)] = known
            created.add(known["id"])
            new_rows.append(known)
        rows[known["id"]] = known
        by_ref[(cid, ev.external_id)] = known  # a later message of this batch may refer to it
        conv_ids.append(known["id"])
    if new_rows:
        await tx.conn.execute(C.insert(), new_rows)
    return conv_ids, {cid: rows[cid] for cid in dict.fromkeys(conv_ids)}, created


async def _ref_conversations(
    tx: Tx, todo: list[tuple[Channel, InboundMessage]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(channel, provider id) -> conversation row, for every stored message a ``thread_refs`` names."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for channel, ev in todo:
        wanted[channel.channel_id].update(ev.thread_refs)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for cid, refs in wanted.items():
        if not refs:
            continue
        for row in (
            await tx.conn.execute(
                sa.select(M.c.external_id, C)
                .join(C, C.c.id == M.c.conversation_id)
                .where(M.c.channel_id == cid, M.c.external_id.in_(refs))
            )
        ).mappings():
            conv = {k: v for k, v in row.items() if k != "external_id"}
            out[(cid, row["external_id"])] = conv
    # One dict per conversation, so that changes made to it for one message are seen by the next.
    shared: dict[str, dict[str, Any]] = {}
    return {key: shared.setdefault(conv["id"], conv) for key, conv in out.items()}


async def _thread_conversations(
    tx: Tx, todo: list[tuple[Channel, InboundMessage]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(channel, thread_id) -> the stored conversation of that provider thread."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for channel, ev in todo:
        if ev.thread_id:
            wanted[channel.channel_id].add(ev.thread_id)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for cid, threads in wanted.items():
        for row in (
            await tx.conn.execute(sa.select(C).where(C.c.channel_id == cid, C.c.thread_id.in_(threads)))
        ).mappings():
            out[(cid, row["thread_id"])] = dict(row)
    return out


async def _reply_targets(tx: Tx, todo: list[tuple[Channel, InboundMessage]]) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for channel, ev in todo:
        if ev.reply_to_external_id:
            wanted[channel.channel_id].add(ev.reply_to_external_id)
    out: dict[tuple[str, str], str] = {}
    for cid, ext_ids in wanted.items():
        for mid, ext in await tx.conn.execute(
            sa.select(M.c.id, M.c.external_id).where(M.c.channel_id == cid, M.c.external_id.in_(ext_ids))
        ):
            out[(cid, ext)] = mid
    return out


async def _touch(
    tx: Tx,
    todo: list[tuple[Channel, InboundMessage]],
    msg_ids: list[str],
    conv_ids: list[str],
    convs: dict[str, dict[str, Any]],
    now: datetime,
) -> set[str]:
    """Move each conversation's clocks and unread count forward once for all its new messages.
    Returns the conversations a customer's message reopened."""
    deltas: dict[str, int] = defaultdict(int)
    reopened: set[str] = set()
    for (_, ev), msg_id, conv_id in zip(todo, msg_ids, conv_ids, strict=True):
        conv = convs[conv_id]
        if conv["last_message_at"] is None or ev.timestamp >= conv["last_message_at"]:
            conv["last_message_at"] = ev.timestamp
            conv["last_message_id"] = msg_id
            # The newest message says who else is in the conversation now (email To/Cc).
            conv["participants"] = [ref.model_dump(mode="json", exclude_none=True) for ref in ev.cc]
        if ev.direction is Direction.INBOUND:
            if conv["last_inbound_at"] is None or ev.timestamp > conv["last_inbound_at"]:
                conv["last_inbound_at"] = ev.timestamp
            deltas[conv_id] += 1
            if conv["status"] in REOPENS_ON_INBOUND:
                conv["status"] = "open"
                conv["snoozed_until"] = None
                reopened.add(conv_id)
    params = []
    for conv_id in dict.fromkeys(conv_ids):
        conv = convs[conv_id]
        conv["inbound_count"] += deltas[conv_id]
        conv["updated_at"] = now
        params.append(
            {
                "b_id": conv_id,
                "b_lma": conv["last_message_at"],
                "b_lmid": conv.get("last_message_id"),
                "b_lia": conv["last_inbound_at"],
                "b_unread": deltas[conv_id],
                "b_status": conv["status"],
                "b_snoozed": conv["snoozed_until"],
                "b_participants": conv["participants"] or [],
                "b_now": now,
            }
        )
    await tx.conn.execute(_TOUCH, params)
    return reopened
