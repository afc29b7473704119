"""Notifications from the event log: a consumer with a durable cursor, like an app.

It reads the events after its cursor (``cursors`` row ``_hub``/``notifications``), works out who
is told of what (``targets``), and in one transaction per batch writes each notification, an
``notification.created`` event for the in-app ones, a delivery per configured notifier whose
medium the user wants, and the new cursor. The cursor moves by compare-and-set, so a crash
neither skips nor repeats a batch, and two processes never both handle one.

Push is suppressed while the user's availability status has push off (``offline`` and admin
statuses made so); in-app and email are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store, Tx
from hub.logcursor import LogConsumer, LogCursor, LoggedEvent
from hub.models import utcnow
from hub.notify.notifier import Notifier
from hub.notify.service import effective_preferences, notification_dict
from hub.routing import BUILTIN_AVAILABILITY
from hub.services.organisation import load_actor

__all__ = ["CURSOR", "NotificationConsumer", "Target"]

log = logging.getLogger("hub.notify")
CURSOR = LogCursor("notifications")
C = schema.conversations
U = schema.users
NT = schema.notifications
ND = schema.notification_deliveries
# Built once: it runs for every batch (building it cost more than running it, profiled).
_ASSIGNEES = sa.select(C.c.id, C.c.assignee_id).where(C.c.id.in_(sa.bindparam("b_ids", expanding=True)))
WATCHED = ("conversation.created", "conversation.updated", "message.created", "note.created")

# (user id, event type, title, body, data)
Target = tuple[str, str, str, str | None, dict[str, Any]]


def _short(text: str | None, limit: int = 200) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Batch:
    """What one batch reads once: users, their actors and preferences."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._users: dict[str, dict[str, Any]] | None = None
        self._actors: dict[str, Actor] = {}
        self._prefs: dict[str, dict[str, dict[str, bool]]] = {}
        self._push_off: set[str] | None = None
        self._assignees: dict[str, str | None] = {}
        self.at_message: dict[int, str | None] = {}  # message seq -> the assignee at that message

    async def prefetch_assignees(self, conversation_ids: set[str]) -> None:
        """Read the assignees of these conversations in one query (an inbound message's
        notification goes to its conversation's assignee): one round trip per batch, where one
        per message was a tenth of the hub's CPU under ingest (profiled)."""
        ids = sorted(conversation_ids - self._assignees.keys())
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            found = dict((await self.conn.execute(_ASSIGNEES, {"b_ids": chunk})).all())
            self._assignees.update({cid: found.get(cid) for cid in chunk})

    async def assignee(self, conversation_id: str) -> str | None:
        if conversation_id not in self._assignees:
            await self.prefetch_assignees({conversation_id})
        return self._assignees[conversation_id]

    async def users(self) -> dict[str, dict[str, Any]]:
        if self._users is None:
            rows = await self.conn.execute(sa.select(U).where(U.c.active.is_(True)))
            self._users = {r["id"]: dict(r) for r in rows.mappings()}
        return self._users

    async def actor(self, user_id: str) -> Actor | None:
        user = (await self.users()).get(user_id)
        if user is None:
            return None
        if user_id not in self._actors:
            self._actors[user_id] = await load_actor(self.conn, user)
        return self._actors[user_id]

    async def prefs(self, user_id: str) -> dict[str, dict[str, bool]]:
        if user_id not in self._prefs:
            self._prefs[user_id] = await effective_preferences(self.conn, user_id)
        return self._prefs[user_id]

    async def push_allowed(self, user_id: str) -> bool:
        if self._push_off is None:
            A = schema.availability_statuses
            custom = {r.id: r.push for r in await self.conn.execute(sa.select(A.c.id, A.c.push))}
            push = {k: v[1] for k, v in BUILTIN_AVAILABILITY.items()} | custom
            self._push_off = {
                uid for uid, u in (await self.users()).items() if not push.get(u["availability"], True)
            }
        return user_id not in self._push_off


def assignees_at(events: Sequence[LoggedEvent]) -> dict[int, str | None]:
    """The assignee each stored message's conversation had at that message, where the log says:
    the transaction that stores messages logs its conversation's ``conversation.created`` or
    ``conversation.updated`` (with ``assignee_id``, after any routing) beside them, every event of
    that transaction with one ``created_at``. A message whose conversation event is not in this
    batch is left out (its assignee is read from the conversation instead)."""
    conv_events: dict[tuple[str | None, datetime], str | None] = {
        (e.conversation_id, e.created_at): e.data.get("assignee_id")
        for e in events
        if e.type in ("conversation.created", "conversation.updated") and e.conversation_id
    }
    return {
        e.seq: conv_events[(e.conversation_id, e.created_at)]
        for e in events
        if e.type == "message.created" and (e.conversation_id, e.created_at) in conv_events
    }


async def targets(batch: _Batch, event: LoggedEvent) -> list[Target]:
    """Who is told of ``event``, as what: the one place that decides it."""
    data = event.data
    out: list[Target] = []
    by = (data.get("by") or {}).get("id")
    if event.type == "conversation.created":
        name = (data.get("contact") or {}).get("name") or "a customer"
        for uid in await batch.users():
            actor = await batch.actor(uid)
            if actor is not None and actor.sees_conversation(data):
                out.append((uid, "conversation_created", f"New conversation with {name}", None, {}))
    elif event.type == "conversation.updated":
        changed, assignee = set(data.get("changed") or ()), data.get("assignee_id")
        name = (data.get("contact") or {}).get("name") or "a customer"
        if "assignee_id" in changed and assignee and assignee != by:
            who = (data.get("by") or {}).get("name") or "the hub"
            out.append(
                (
                    assignee,
                    "assigned",
                    f"{who} assigned you the conversation with {name}",
                    None,
                    {"by": data.get("by")},
                )
            )
        woke = (data.get("by") or {}).get("type") == "system" and {"status", "snoozed_until"} <= changed
        if woke and data.get("status") == "open" and assignee:
            out.append((assignee, "snooze_ended", f"The conversation with {name} is open again", None, {}))
    elif event.type == "message.created" and data.get("direction") == "inbound" and event.conversation_id:
        if event.seq in batch.at_message:
            assignee = batch.at_message[event.seq]
        else:
            assignee = await batch.assignee(event.conversation_id)
        if assignee:
            sender = (data.get("sender") or {}).get("name") or "The customer"
            text = data.get("text") or f"({data.get('kind', 'message')})"
            out.append(
                (assignee, "new_message", f"{sender} wrote", _short(text), {"message_id": data.get("id")})
            )
    elif event.type == "note.created":
        author = data.get("author") or {}
        for uid in data.get("mentions") or ():
            if uid != author.get("id"):
                title = f"{author.get('name') or 'A colleague'} mentioned you in a note"
                out.append(
                    (
                        uid,
                        "mention",
                        title,
                        _short(data.get("text")),
                        {"note_id": data.get("id"), "by": author},
                    )
                )
    # Only users who can still read the conversation hear of it.
    kept: list[Target] = []
    for target in out:
        actor = await batch.actor(target[0])
        if actor is None:
            continue
        if (
            event.type != "conversation.created"
            and event.conversation_id
            and not await _sees(batch, actor, event)
        ):
            continue
        kept.append(target)
    return kept


async def _sees(batch: _Batch, actor: Actor, event: LoggedEvent) -> bool:
    row = (
        (
            await batch.conn.execute(
                sa.select(C.c.channel_id, C.c.assignee_id, C.c.team).where(C.c.id == event.conversation_id)
            )
        )
        .mappings()
        .first()
    )
    return row is not None and actor.sees_conversation(dict(row))


class NotificationConsumer(LogConsumer):
    task_name = "hub-notifications"
    cursor = CURSOR
    watched = WATCHED
    log = log

    def __init__(
        self,
        store: Store,
        notifiers: dict[str, Notifier],
        *,
        on_deliveries: Callable[[], None] | None = None,
        batch_size: int = 200,
        interval: float = 1.0,
    ) -> None:
        # Events gather like the other consumers': a message's notification goes to the assignee
        # the conversation had at that message (``assignees_at``), not when the batch runs.
        super().__init__(store, batch_size=batch_size, interval=interval)
        self.notifiers = notifiers
        self.on_deliveries = on_deliveries

    async def step(self) -> int:
        """Handle the next batch of events; how many events of interest it read (0: nothing new)."""
        batch = await self.next_batch()
        if batch is None:
            return 0
        rows = batch.rows
        deliveries = 0
        async with self.store.tx() as tx:
            if not await self.move(tx.conn, batch.start, batch.last):
                return 0  # another process handled this batch
            known = _Batch(tx.conn)
            events = batch.events()
            known.at_message = assignees_at(events)
            await known.prefetch_assignees(
                {
                    e.conversation_id
                    for e in events
                    if e.type == "message.created" and e.conversation_id and e.seq not in known.at_message
                }
            )
            for event in events:
                for target in await targets(known, event):
                    deliveries += await self._notify(tx, known, event, target)
        if deliveries and self.on_deliveries is not None:
            self.on_deliveries()
        return len(rows)

    async def _notify(self, tx: Tx, batch: _Batch, event: LoggedEvent, target: Target) -> int:
        user_id, kind, title, body, extra = target
        wanted = (await batch.prefs(user_id)).get(kind, {})
        media = {m for m, on in wanted.items() if on}
        if "push" in media and not await batch.push_allowed(user_id):
            media.discard("push")
        notifiers = [n for n, notifier in self.notifiers.items() if notifier.medium in media]
        if "in_app" not in media and not notifiers:
            return 0
        now = utcnow()
        row = {
            "id": new_id("ntf_"),
            "user_id": user_id,
            "event": kind,
            "title": title,
            "body": body,
            "conversation_id": event.conversation_id,
            "channel_id": event.channel_id,
            "data": {**extra, "event_seq": event.seq},
            "in_app": "in_app" in media,
            "read_at": None,
            "created_at": now,
        }
        await tx.conn.execute(NT.insert().values(**row))
        if row["in_app"]:
            await tx.emit("notification.created", notification_dict(row))
        if notifiers:
            await tx.conn.execute(
                ND.insert(),
                [
                    {
                        "notification_id": row["id"],
                        "notifier": name,
                        "state": "pending",
                        "attempts": 0,
                        "due_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for name in notifiers
                ],
            )
        return len(notifiers)
