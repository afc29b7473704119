"""Notification preferences, the in-app list and push devices, for the acting user (or an admin).

Preferences are one table read by the app (``/api/v1/me/notification-preferences``) and the admin
API (``/api/v1/admin/users/{id}/notification-preferences``) alike, so a change made on one side
reads back the same on the other. A user's own rows override the admin-set defaults (rows of
user ``''``), which override the built-in ``DEFAULTS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store
from hub.models import utcnow
from hub.notify.notifier import EVENT_TYPES, MEDIA, NotifierRegistry
from hub.services.errors import Invalid, NotFound
from hub.services.quick_replies import announce_config

__all__ = ["DEFAULTS", "NotificationService", "effective_preferences", "notification_dict"]

P = schema.notification_preferences
NT = schema.notifications
D = schema.devices
U = schema.users

Preferences = dict[str, dict[str, bool]]

DEFAULTS: Preferences = {
    "conversation_created": {"push": False, "email": False, "in_app": False},
    "assigned": {"push": True, "email": False, "in_app": True},
    "new_message": {"push": True, "email": False, "in_app": True},
    "mention": {"push": True, "email": False, "in_app": True},
    "snooze_ended": {"push": False, "email": False, "in_app": True},
}
"""What holds before an admin sets defaults or a user their own preferences."""


async def effective_preferences(conn: AsyncConnection, user_id: str | None) -> Preferences:
    """Built-in defaults, then the admin's defaults, then (for a user) their own choices."""
    prefs = {event: dict(media) for event, media in DEFAULTS.items()}
    owners = [""] if user_id is None else ["", user_id]
    rows = await conn.execute(
        sa.select(P.c.user_id, P.c.event, P.c.medium, P.c.enabled)
        .where(P.c.user_id.in_(owners))
        .order_by(P.c.user_id)  # '' first: the user's own rows win
    )
    for _, event, medium, enabled in rows:
        if event in prefs and medium in MEDIA:
            prefs[event][medium] = bool(enabled)
    return prefs


def notification_dict(row: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "event": row["event"],
        "title": row["title"],
        "body": row["body"],
        "conversation_id": row["conversation_id"],
        "channel_id": row["channel_id"],
        "data": row["data"] or {},
        "read_at": iso(row["read_at"]),
        "created_at": iso(row["created_at"]),
    }


def _device_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "provider": row["provider"],
        "platform": row["platform"],
        "name": row["name"],
        "created_at": row["created_at"].isoformat(),
    }


def _check_changes(changes: dict[str, dict[str, bool]]) -> None:
    for event, media in changes.items():
        if event not in EVENT_TYPES:
            raise Invalid(f"preferences.{event}", f"unknown event type; one of {', '.join(EVENT_TYPES)}")
        for medium in media:
            if medium not in MEDIA:
                raise Invalid(f"preferences.{event}.{medium}", f"unknown medium; one of {', '.join(MEDIA)}")


class NotificationService:
    def __init__(self, store: Store, notifiers: NotifierRegistry) -> None:
        self.store = store
        self.notifiers = notifiers

    # ---- preferences ----------------------------------------------------------------------------

    async def preferences(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """A user's effective preferences: their own (anyone), or anyone's (``users.manage``)."""
        if user_id != actor.id:
            actor.require("users.manage")
        async with self.store.db.read() as conn:
            await self._user(conn, user_id)
            prefs = await effective_preferences(conn, user_id)
        return {"user_id": user_id, "preferences": prefs}

    async def set_preferences(
        self, actor: Actor, user_id: str, changes: dict[str, dict[str, bool]]
    ) -> dict[str, Any]:
        """Change some of a user's preferences (the others stay); ``config.updated`` tells the
        user's apps to refetch them."""
        if user_id != actor.id:
            actor.require("users.manage")
        _check_changes(changes)
        async with self.store.tx() as tx:
            await self._user(tx.conn, user_id)
            await self._write(tx.conn, user_id, changes)
            prefs = await effective_preferences(tx.conn, user_id)
            if changes:
                await announce_config(tx, "notification_preferences", actor.ref, user_id=user_id)
        return {"user_id": user_id, "preferences": prefs}

    async def defaults(self, actor: Actor) -> dict[str, Any]:
        actor.require("config.manage")
        async with self.store.db.read() as conn:
            return {"preferences": await effective_preferences(conn, None)}

    async def set_defaults(self, actor: Actor, changes: dict[str, dict[str, bool]]) -> dict[str, Any]:
        """The organisation's defaults: every user who did not choose otherwise follows them."""
        actor.require("config.manage")
        _check_changes(changes)
        async with self.store.tx() as tx:
            await self._write(tx.conn, "", changes)
            prefs = await effective_preferences(tx.conn, None)
            if changes:
                await announce_config(tx, "notification_preferences", actor.ref)
        return {"preferences": prefs}

    async def _write(self, conn: AsyncConnection, user_id: str, changes: dict[str, dict[str, bool]]) -> None:
        now = utcnow()
        for event, media in changes.items():
            for medium, enabled in media.items():
                stmt = self.store.db.insert(P).values(
                    user_id=user_id, event=event, medium=medium, enabled=enabled, updated_at=now
                )
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_id", "event", "medium"],
                        set_={"enabled": enabled, "updated_at": now},
                    )
                )

    async def _user(self, conn: AsyncConnection, user_id: str) -> None:
        if await conn.scalar(sa.select(U.c.id).where(U.c.id == user_id)) is None:
            raise NotFound(f"user {user_id} does not exist")

    # ---- the in-app list ------------------------------------------------------------------------

    async def page(self, actor: Actor, *, unread: bool, before: str | None, limit: int) -> dict[str, Any]:
        """The actor's in-app notifications, newest first; ``next_before`` pages on."""
        mine = sa.and_(NT.c.user_id == actor.id, NT.c.in_app.is_(True))
        stmt = sa.select(NT).where(mine).order_by(NT.c.id.desc()).limit(limit + 1)
        if unread:
            stmt = stmt.where(NT.c.read_at.is_(None))
        if before:
            stmt = stmt.where(NT.c.id < before)
        async with self.store.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            count = await conn.scalar(sa.select(sa.func.count()).where(mine, NT.c.read_at.is_(None)))
        page = [notification_dict(r) for r in rows[:limit]]
        return {
            "notifications": page,
            "unread_count": int(count or 0),
            "next_before": page[-1]["id"] if len(rows) > limit else None,
        }

    async def mark_read(self, actor: Actor, notification_id: str) -> dict[str, Any]:
        async with self.store.tx() as tx:
            found = (
                (await tx.conn.execute(sa.select(NT).where(NT.c.id == notification_id))).mappings().first()
            )
            if found is None or found["user_id"] != actor.id or not found["in_app"]:
                raise NotFound(f"notification {notification_id} does not exist")
            row = dict(found)
            if row["read_at"] is None:
                now = utcnow()
                await tx.conn.execute(NT.update().where(NT.c.id == notification_id).values(read_at=now))
                await tx.emit(
                    "notification.updated",
                    {"user_id": actor.id, "ids": [notification_id], "read_at": now.isoformat()},
                )
                row["read_at"] = now
        return notification_dict(row)

    async def mark_all_read(self, actor: Actor) -> dict[str, Any]:
        async with self.store.tx() as tx:
            unread = sa.and_(NT.c.user_id == actor.id, NT.c.in_app.is_(True), NT.c.read_at.is_(None))
            ids = list(await tx.conn.scalars(sa.select(NT.c.id).where(unread).order_by(NT.c.id)))
            now = utcnow()
            if ids:
                await tx.conn.execute(NT.update().where(unread, NT.c.id.in_(ids)).values(read_at=now))
                await tx.emit(
                    "notification.updated", {"user_id": actor.id, "ids": ids, "read_at": now.isoformat()}
                )
        return {"marked": len(ids), "read_at": now.isoformat()}

    # ---- push devices ---------------------------------------------------------------------------

    async def devices(self, actor: Actor) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            rows = await conn.execute(sa.select(D).where(D.c.user_id == actor.id).order_by(D.c.created_at))
            return [_device_dict(r) for r in rows.mappings()]

    async def register_device(
        self, actor: Actor, provider: str, token: str, platform: str | None, name: str | None
    ) -> dict[str, Any]:
        """Register (or move to this user) a device a push notifier reaches by ``token``."""
        cls = self.notifiers.get(provider)
        if cls is None or cls.medium != "push":
            push = sorted(n for n, c in self.notifiers.types().items() if c.medium == "push")
            raise Invalid("provider", f"not a push notifier installed here; one of {', '.join(push)}")
        now = utcnow()
        async with self.store.tx() as tx:
            # A token belongs to one device, which belongs to whoever registered it last (a phone
            # handed to a colleague): the registration moves.
            await tx.conn.execute(D.delete().where(D.c.provider == provider, D.c.token == token))
            row = {
                "id": new_id("dev_"),
                "user_id": actor.id,
                "provider": provider,
                "token": token,
                "platform": platform,
                "name": name,
                "created_at": now,
            }
            await tx.conn.execute(D.insert().values(**row))
        return _device_dict(row)

    async def delete_device(self, actor: Actor, device_id: str) -> None:
        async with self.store.tx() as tx:
            res = await tx.conn.execute(D.delete().where(D.c.id == device_id, D.c.user_id == actor.id))
            if not res.rowcount:
                raise NotFound(f"device {device_id} does not exist")
