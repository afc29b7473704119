"""Conversations as an actor sees and changes them: scoped lists and reads, and the workflow
(status, snooze, assignee, team, priority, labels, custom attributes), each change one event
that says who made it."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.channels import ChannelService
from hub.events import Store, Tx
from hub.models import ContactRef, utcnow
from hub.records import fetch_conversation, fetch_conversations, with_reader
from hub.routing import route_to_team
from hub.services.attributes import AttributeService, check_values
from hub.services.errors import Invalid, NotFound, ServiceError
from hub.services.labels import label_ids, set_labels
from hub.services.organisation import load_actor

__all__ = ["ConversationService", "access_conversation", "apply_update"]

log = logging.getLogger("hub.conversations")
C = schema.conversations
M = schema.messages
U = schema.users
CL = schema.conversation_labels
Convs = list[dict[str, Any]]
STATUSES = ("open", "pending", "resolved", "snoozed")
PRIORITIES = ("low", "medium", "high", "urgent")
ASSIGNEE_FILTERS = ("mine", "unassigned", "assigned")


class BadCursor(ServiceError):
    status = 400
    code = "bad_request"


async def access_conversation(conn: AsyncConnection, actor: Actor, conversation_id: str) -> dict[str, Any]:
    """The conversation in the app's shape, or NotFound when it is absent or outside the scope."""
    conv = await fetch_conversation(conn, conversation_id)
    if conv is None or not actor.sees_conversation(conv):
        raise NotFound(f"conversation {conversation_id} does not exist")
    return conv


class ConversationService:
    def __init__(
        self, store: Store, channels: ChannelService, attributes: AttributeService | None = None
    ) -> None:
        self.store = store
        self.channels = channels
        self.attributes = attributes

    async def list(
        self,
        actor: Actor,
        *,
        filters: dict[str, str],
        cursor: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        activity = sa.func.coalesce(C.c.last_message_at, C.c.created_at)
        stmt = (
            sa.select(C.c.id, activity.label("activity"))
            .where(actor.conversation_clause())
            .order_by(activity.desc(), C.c.id.desc())
            .limit(limit + 1)
        )
        stmt = _filtered(stmt, actor, filters)
        if filters.get("label"):
            L, CL = schema.labels, schema.conversation_labels
            stmt = stmt.where(
                C.c.id.in_(
                    sa.select(CL.c.conversation_id)
                    .join(L, L.c.id == CL.c.label_id)
                    .where(L.c.name_key == filters["label"].strip().casefold())
                )
            )
        if cursor:
            ts, cid = _decode_cursor(cursor)
            stmt = stmt.where(sa.or_(activity < ts, sa.and_(activity == ts, C.c.id < cid)))
        async with self.store.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
            items = await self.flagged(
                conn,
                await with_reader(
                    conn, actor.id, await fetch_conversations(conn, [r.id for r in rows[:limit]])
                ),
            )
        nxt = (
            _encode_cursor([rows[limit - 1].activity.isoformat(), rows[limit - 1].id])
            if len(rows) > limit
            else None
        )
        return items, nxt

    async def counts(self, actor: Actor, *, filters: dict[str, str]) -> dict[str, int]:
        """How many conversations the actor may read are in each status, under ``filters`` (any
        ``status`` among them is left out: the counts are the tabs of one list)."""
        stmt = sa.select(C.c.status, sa.func.count()).where(actor.conversation_clause()).group_by(C.c.status)
        stmt = _filtered(stmt, actor, {k: v for k, v in filters.items() if k != "status"})
        async with self.store.db.read() as conn:
            found = {status: int(n) for status, n in await conn.execute(stmt)}
        return {status: found.get(status, 0) for status in STATUSES}

    async def get(self, actor: Actor, conversation_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            conv = await access_conversation(conn, actor, conversation_id)
            [conv] = await with_reader(conn, actor.id, [conv])
            [conv] = await self.flagged(conn, [conv])
        return self._with_window(conv)

    async def flagged(self, conn: AsyncConnection, convs: Convs) -> Convs:
        """Each conversation with ``attribute_problems``: its stored custom attribute values that
        today's definitions no longer accept (kept as they are, shown so someone corrects them)."""
        if self.attributes is None or not convs:
            return convs
        found = await self.attributes.problems_of_many(
            conn, "conversation", [c["custom_attributes"] for c in convs]
        )
        return [{**c, "attribute_problems": p} for c, p in zip(convs, found, strict=True)]

    def _with_window(self, conv: dict[str, Any]) -> dict[str, Any]:
        inst = self.channels.get(conv["channel_id"])
        if inst is not None:
            last = conv["last_inbound_at"]
            window = inst.reply_window(datetime.fromisoformat(last) if last else None, utcnow())
            conv["reply_window"] = {
                "open": window.open,
                "closes_at": window.closes_at.isoformat() if window.closes_at else None,
                "outside": window.outside,
            }
        return conv

    async def update(self, actor: Actor, conversation_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a patch; each kind of change needs its permission (taking one needs none)."""
        async with self.store.tx() as tx:
            fresh = await apply_update(tx, actor, conversation_id, changes)
            [fresh] = await with_reader(tx.conn, actor.id, [fresh])
            [fresh] = await self.flagged(tx.conn, [fresh])
        # The answer shows the result even when the change took it out of the actor's scope (a
        # "mine only" agent handing it on): they made the change, they may see what it became.
        return self._with_window(fresh)

    async def mark_read(self, actor: Actor, conversation_id: str) -> dict[str, Any]:
        """The actor's unread count back to zero (theirs alone: each user has their own read
        marker), ``conversation.read`` for the actor's other devices, then a best-effort read
        receipt to the provider."""
        R = schema.conversation_reads
        async with self.store.tx() as tx:
            conv = await access_conversation(tx.conn, actor, conversation_id)
            now = utcnow()
            marker = {
                "read_count": conv["inbound_count"],
                "last_read_message_id": (conv["last_message"] or {}).get("id"),
                "read_at": now,
            }
            await tx.conn.execute(
                tx.db.insert(R)
                .values(conversation_id=conversation_id, user_id=actor.id, **marker)
                .on_conflict_do_update(index_elements=["conversation_id", "user_id"], set_=marker)
            )
            last_in = (
                await tx.conn.execute(
                    sa.select(M.c.external_id)
                    .where(M.c.conversation_id == conversation_id, M.c.direction == "inbound")
                    .order_by(M.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            [fresh] = await with_reader(tx.conn, actor.id, [conv])
            # Only the reader's own streams receive it (hub.services.events).
            await tx.emit(
                "conversation.read",
                {
                    "conversation_id": conversation_id,
                    "user_id": actor.id,
                    "unread_count": 0,
                    "read_count": conv["inbound_count"],
                    "last_read_message_id": marker["last_read_message_id"],
                    "read_at": now.isoformat(),
                },
                channel_id=conv["channel_id"],
                conversation_id=conversation_id,
            )
        inst = self.channels.get(conv["channel_id"])
        if inst is not None and last_in and inst.capabilities.read_receipts:
            ref = ContactRef(ids=conv["contact"]["identities"] or [conv["contact"]["id"]])
            try:
                await inst.mark_read(last_in, ref)
            except Exception as exc:  # best effort: the agent's read state is already stored
                log.warning("channel %s mark_read failed: %s", conv["channel_id"], exc)
        return self._with_window(fresh)


async def apply_update(tx: Tx, actor: Actor, conversation_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The workflow change inside the caller's transaction (the API's, or a rule's with its run
    log and cursor): checks (labels must be defined, custom attribute values must fit their
    definitions), writes, routes a new team, emits ``conversation.updated``."""
    conv = await access_conversation(tx.conn, actor, conversation_id)
    values = await _checked_changes(tx.conn, actor, conv, changes)
    if "custom_attributes" in values:
        values["custom_attributes"] = await check_values(
            tx.conn, "conversation", conv["custom_attributes"], values["custom_attributes"]
        )
    label_ids: Any = values.pop("labels", None)
    if label_ids is not None:
        # Named in the patch: part of its one event, as every named field is.
        await set_labels(tx.conn, CL, conversation_id, label_ids)
        values["labels"] = label_ids
    if not values:
        return conv
    values["updated_at"] = utcnow()
    columns = {k: v for k, v in values.items() if k != "labels"}
    await tx.conn.execute(C.update().where(C.c.id == conversation_id).values(**columns))
    if values.get("team") and "assignee_id" not in changes and conv["assignee_id"] is None:
        row = (await tx.conn.execute(sa.select(C).where(C.c.id == conversation_id))).mappings().one()
        await route_to_team(tx, dict(row), values["team"])
    fresh = await fetch_conversation(tx.conn, conversation_id)
    assert fresh is not None
    changed = {k for k in values if k not in ("updated_at", "last_assignee_id")}
    if fresh["assignee_id"] != conv["assignee_id"]:
        changed.add("assignee_id")
    await tx.emit(
        "conversation.updated",
        {**fresh, "changed": sorted(changed), "by": actor.ref},
        channel_id=fresh["channel_id"],
        conversation_id=conversation_id,
    )
    return fresh


async def _checked_changes(
    conn: AsyncConnection, actor: Actor, conv: dict[str, Any], changes: dict[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "status" in changes or "snoozed_until" in changes or "priority" in changes:
        actor.require("conversations.update")
    if "custom_attributes" in changes:
        actor.require("conversations.update")
        values["custom_attributes"] = changes["custom_attributes"]
    if "labels" in changes:
        actor.require("labels.apply")
        values["labels"] = await label_ids(conn, changes["labels"], "labels")
    if "priority" in changes:
        values["priority"] = changes["priority"]
    status = changes.get("status")
    until = changes.get("snoozed_until")
    if status == "snoozed" or (status is None and until is not None):
        if until is None:
            raise Invalid("snoozed_until", "a snoozed conversation needs snoozed_until")
        if until <= utcnow():
            raise Invalid("snoozed_until", "must be in the future")
        values["status"], values["snoozed_until"] = "snoozed", until
    elif status is not None:
        if until is not None:
            raise Invalid("snoozed_until", "only a snoozed conversation has one")
        values["status"], values["snoozed_until"] = status, None
    if "assignee_id" in changes:
        assignee = changes["assignee_id"]
        taking = assignee == actor.id or (assignee is None and conv["assignee_id"] == actor.id)
        if not taking:
            # Taking a conversation (or letting go of one's own) is every reader's right; moving
            # it to someone else is assigning.
            actor.require("conversations.assign")
        if assignee is not None:
            await _check_assignee(conn, assignee, conv["channel_id"])
            values["last_assignee_id"] = assignee
        values["assignee_id"] = assignee
    if "team" in changes:
        actor.require("conversations.assign")
        if changes["team"] is not None:
            known = await conn.scalar(
                sa.select(schema.teams.c.id).where(schema.teams.c.id == changes["team"])
            )
            if known is None:
                raise Invalid("team", "no such team")
        values["team"] = changes["team"]
    return values


async def _check_assignee(conn: AsyncConnection, user_id: str, channel_id: str) -> None:
    row = (await conn.execute(sa.select(U).where(U.c.id == user_id))).mappings().first()
    if row is None or not row["active"]:
        raise Invalid("assignee_id", "no such user")
    if not (await load_actor(conn, dict(row))).sees_channel(channel_id):
        raise Invalid("assignee_id", "the user does not serve this conversation's channel")


def _filtered(stmt: Any, actor: Actor, filters: dict[str, Any]) -> Any:
    """``stmt`` narrowed by the list filters (each already validated by the caller)."""
    for name in ("status", "channel_id", "assignee_id", "team", "priority"):
        if filters.get(name):
            stmt = stmt.where(getattr(C.c, name) == filters[name])
    assignee = filters.get("assignee")
    if assignee == "mine":
        stmt = stmt.where(C.c.assignee_id == actor.id)
    elif assignee == "unassigned":
        stmt = stmt.where(C.c.assignee_id.is_(None))
    elif assignee == "assigned":
        stmt = stmt.where(C.c.assignee_id.is_not(None))
    if filters.get("unread") is not None:
        R = schema.conversation_reads
        read = (
            sa.select(R.c.read_count)
            .where(R.c.conversation_id == C.c.id, R.c.user_id == actor.id)
            .scalar_subquery()
        )
        unread = C.c.inbound_count > sa.func.coalesce(read, 0)
        stmt = stmt.where(unread if filters["unread"] == "true" else sa.not_(unread))
    return stmt


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[datetime, str]:
    """The (activity time, conversation id) of a cursor ``_encode_cursor`` made; else BadCursor
    (a 400: a forged cursor gave a 500 when its time or id was of the wrong type)."""
    try:
        at, cid = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        ts = datetime.fromisoformat(at)
        if not isinstance(cid, str) or "\x00" in cid:
            raise ValueError(cid)
        cid.encode("utf-8")  # a lone surrogate is no id the database holds
        return ts, cid
    except (ValueError, TypeError, RecursionError):  # also binascii.Error, JSONDecodeError
        raise BadCursor("cursor is not one this API returned") from None
