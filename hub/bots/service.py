"""Agent bots: the admin's writes (create, change, delete, attach to channels), the bot's own
identity in the app API (its token becomes a ``bot`` ``Actor``), and the handoff.

A bot acts as an ``Actor`` of kind ``bot`` scoped to its channels, with a fixed set of
permissions (``BOT_PERMISSIONS``); its messages show ``sender`` ``{"type": "bot", ...}``. It may
write only in conversations it still holds: once handed over (``hand_over``), sends answer 409.

``hand_over`` is the one place a bot lets go of a conversation, whoever causes it (the bot, a
human reply, an agent, a failing webhook, the bot's removal): it marks the conversation handed
over, drops the bot's undelivered events of it, opens a ``pending`` conversation, writes the
private note that says why (when asked), and emits ``conversation.handed_over``; all inside the
caller's transaction.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor, system_actor
from hub.bots.models import BotIn, BotPatch, Trigger
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.records import fetch_conversation
from hub.routing import route
from hub.security import SecretBox, hash_token
from hub.services.conversations import access_conversation, apply_update
from hub.services.errors import Conflict, Forbidden, Invalid, NotFound
from hub.services.notes import add_note

__all__ = [
    "BOT_PERMISSIONS",
    "TOKEN_PREFIX",
    "BotService",
    "bot_actor",
    "bot_dict",
    "hand_over",
    "open_for_agents",
]

B = schema.bots
BC = schema.bot_channels
BV = schema.bot_conversations
BD = schema.bot_deliveries
C = schema.conversations
CH = schema.channels

TOKEN_PREFIX = "hubbot_"
BOT_PERMISSIONS = frozenset(
    {
        "conversations.read.all",
        "conversations.update",
        "messages.send",
        "contacts.read",
        "labels.apply",
        "notes.write",
    }
)


def bot_actor(bot: Any, channel_ids: list[str] | None = None) -> Actor:
    """The bot as an actor: scoped to ``channel_ids`` (None: every channel, for the hub's own
    writes in its name, such as the note on a failed bot's handoff)."""
    ref = {"type": "bot", "id": bot["id"], "name": bot["name"]}
    return Actor(
        id=bot["id"],
        kind="bot",
        role="bot",
        permissions=BOT_PERMISSIONS,
        all_channels=channel_ids is None,
        channel_ids=frozenset(channel_ids or ()),
        user={"id": bot["id"], "name": bot["name"], "email": "", "sender": ref},
    )


def _iso(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def bot_dict(row: Any, channel_ids: list[str]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "enabled": row["enabled"],
        "webhook_url": row["webhook_url"],
        "flow": row["flow"],
        "channel_ids": sorted(channel_ids),
        "timeout_seconds": row["timeout_seconds"],
        "max_attempts": row["max_attempts"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


async def channels_of(conn: AsyncConnection, bot_id: str) -> list[str]:
    return sorted(await conn.scalars(sa.select(BC.c.channel_id).where(BC.c.bot_id == bot_id)))


async def open_for_agents(tx: Tx, actor: Actor, conversation_id: str) -> None:
    """A ``pending`` conversation the bot held opens, and is routed to agents per the channel's
    policy (a bot's conversation is not routed while the bot holds it)."""
    await apply_update(tx, actor, conversation_id, {"status": "open"})
    row = dict((await tx.conn.execute(sa.select(C).where(C.c.id == conversation_id))).mappings().one())
    if row["assignee_id"] is not None:
        return
    await route(tx, [row])
    if row["assignee_id"] is None:
        return
    view = await fetch_conversation(tx.conn, conversation_id)
    assert view is not None
    await tx.emit(
        "conversation.updated",
        {**view, "changed": ["assignee_id", "team"], "by": system_actor("routing").ref},
        channel_id=view["channel_id"],
        conversation_id=conversation_id,
    )


async def hand_over(
    tx: Tx,
    conversation_id: str,
    *,
    trigger: Trigger,
    reason: str,
    by: dict[str, Any],
    note: str | None = None,
) -> dict[str, Any] | None:
    """Let go of the conversation (see the module docstring); None when no bot holds it."""
    held = (
        (
            await tx.conn.execute(
                sa.select(BV).where(BV.c.conversation_id == conversation_id, BV.c.state == "active")
            )
        )
        .mappings()
        .first()
    )
    if held is None:
        return None
    now = utcnow()
    moved = await tx.conn.execute(
        BV.update()
        .where(BV.c.conversation_id == conversation_id, BV.c.state == "active")
        .values(state="handed_over", reason=reason[:2000], handed_over_at=now)
    )
    if not moved.rowcount:
        return None
    await tx.conn.execute(
        BD.update()
        .where(BD.c.conversation_id == conversation_id, BD.c.state == "pending")
        .values(state="dropped", last_error="handed over before delivery", updated_at=now)
    )
    bot = (await tx.conn.execute(sa.select(B).where(B.c.id == held["bot_id"]))).mappings().first()
    name = bot["name"] if bot is not None else None
    hub_side = bot_actor({"id": held["bot_id"], "name": name})
    conv = (
        await tx.conn.execute(sa.select(C.c.status, C.c.channel_id).where(C.c.id == conversation_id))
    ).one()
    status = conv.status
    if status == "pending":
        await open_for_agents(tx, hub_side, conversation_id)
        status = "open"
    if note:
        await add_note(tx, hub_side, conversation_id, note)
    event = {
        "conversation_id": conversation_id,
        "channel_id": conv.channel_id,
        "bot": {"type": "bot", "id": held["bot_id"], "name": name},
        "trigger": trigger,
        "reason": reason,
        "status": status,
        "by": by,
        "handed_over_at": now.isoformat(),
    }
    await tx.emit(
        "conversation.handed_over", event, channel_id=conv.channel_id, conversation_id=conversation_id
    )
    return event


class BotService:
    def __init__(self, store: Store, box: SecretBox) -> None:
        self.store = store
        self.box = box

    # ---- reads ---------------------------------------------------------------------------------

    async def list_bots(self, actor: Actor) -> list[dict[str, Any]]:
        actor.require("bots.manage")
        async with self.store.db.read() as conn:
            rows = (await conn.execute(sa.select(B).order_by(B.c.created_at, B.c.id))).mappings().all()
            links = (await conn.execute(sa.select(BC.c.bot_id, BC.c.channel_id))).all()
        by_bot: dict[str, list[str]] = {}
        for bot_id, channel_id in links:
            by_bot.setdefault(bot_id, []).append(channel_id)
        return [bot_dict(r, by_bot.get(r["id"], [])) for r in rows]

    async def get(self, actor: Actor, bot_id: str) -> dict[str, Any]:
        actor.require("bots.manage")
        async with self.store.db.read() as conn:
            row = await self._row(conn, bot_id)
            return bot_dict(row, await channels_of(conn, bot_id))

    async def _row(self, conn: AsyncConnection, bot_id: str) -> Any:
        row = (await conn.execute(sa.select(B).where(B.c.id == bot_id))).mappings().first()
        if row is None:
            raise NotFound(f"bot {bot_id} does not exist")
        return row

    def signing_secret(self, bot: Any) -> str:
        return str(self.box.open(bot["secrets"]).get("signing_secret") or "")

    # ---- writes --------------------------------------------------------------------------------

    async def _check_channels(self, conn: AsyncConnection, bot_id: str, channel_ids: list[str]) -> None:
        wanted = list(dict.fromkeys(channel_ids))
        known = set(await conn.scalars(sa.select(CH.c.id).where(CH.c.id.in_(wanted))))
        missing = [c for c in wanted if c not in known]
        if missing:
            raise NotFound(f"no such channel: {', '.join(missing)}")
        taken = (
            await conn.execute(
                sa.select(BC.c.channel_id, BC.c.bot_id).where(
                    BC.c.channel_id.in_(wanted), BC.c.bot_id != bot_id
                )
            )
        ).all()
        if taken:
            channel_id, other = taken[0]
            raise Conflict(f"channel {channel_id} already has a bot ({other}); a channel has at most one")

    def _credentials(self, kind: str) -> tuple[str, str | None, dict[str, Any]]:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        secret = secrets.token_urlsafe(32) if kind == "webhook" else None
        values: dict[str, Any] = {"token_hash": hash_token(token)}
        values["secrets"] = self.box.seal({"signing_secret": secret}) if secret else None
        return token, secret, values

    async def create(self, actor: Actor, req: BotIn) -> dict[str, Any]:
        """The new bot with its ``token`` and ``signing_secret`` (shown this once)."""
        actor.require("bots.manage")
        now = utcnow()
        bot_id = new_id("bot_")
        token, secret, creds = self._credentials(req.kind)
        row = {
            "id": bot_id,
            "name": req.name,
            "kind": req.kind,
            "enabled": req.enabled,
            "webhook_url": req.webhook_url,
            "flow": req.flow.model_dump(mode="json") if req.flow else None,
            "timeout_seconds": req.timeout_seconds,
            "max_attempts": req.max_attempts,
            "created_at": now,
            "updated_at": now,
            **creds,
        }
        async with self.store.tx() as tx:
            await self._check_channels(tx.conn, bot_id, req.channel_ids)
            await tx.conn.execute(B.insert().values(**row))
            channel_ids = list(dict.fromkeys(req.channel_ids))
            if channel_ids:
                await tx.conn.execute(BC.insert(), [{"channel_id": c, "bot_id": bot_id} for c in channel_ids])
            out = bot_dict(row, channel_ids)
            await tx.emit("bot.updated", {**out, "by": actor.ref})
        return {**out, "token": token, "signing_secret": secret}

    async def update(self, actor: Actor, bot_id: str, patch: BotPatch) -> dict[str, Any]:
        actor.require("bots.manage")
        values: dict[str, Any] = {}
        for name in ("name", "enabled", "timeout_seconds", "max_attempts"):
            if name in patch.model_fields_set:
                values[name] = getattr(patch, name)
        fresh_token: tuple[str, str | None] | None = None
        async with self.store.tx() as tx:
            row = await self._row(tx.conn, bot_id)
            if "webhook_url" in patch.model_fields_set:
                if row["kind"] != "webhook":
                    raise Invalid("webhook_url", "a built-in bot has no webhook_url")
                values["webhook_url"] = patch.webhook_url
            if "flow" in patch.model_fields_set:
                if row["kind"] != "builtin" or patch.flow is None:
                    raise Invalid("flow", "only a built-in bot has a flow")
                values["flow"] = patch.flow.model_dump(mode="json")
            if patch.rotate_credentials:
                token, secret, creds = self._credentials(row["kind"])
                values.update(creds)
                fresh_token = (token, secret)
            before = await channels_of(tx.conn, bot_id)
            channel_ids = before
            if patch.channel_ids is not None:
                channel_ids = list(dict.fromkeys(patch.channel_ids))
                await self._check_channels(tx.conn, bot_id, channel_ids)
                await tx.conn.execute(BC.delete().where(BC.c.bot_id == bot_id))
                if channel_ids:
                    await tx.conn.execute(
                        BC.insert(), [{"channel_id": c, "bot_id": bot_id} for c in channel_ids]
                    )
            values["updated_at"] = utcnow()
            await tx.conn.execute(B.update().where(B.c.id == bot_id).values(**values))
            fresh = await self._row(tx.conn, bot_id)
            # A bot switched off or taken off a channel lets go of what it held there: nothing
            # would answer those customers otherwise.
            left = [c for c in before if c not in channel_ids] if fresh["enabled"] else before
            if left:
                await self._release(tx, actor, bot_id, left, "the bot was disabled or taken off the channel")
            out = bot_dict(fresh, channel_ids)
            await tx.emit("bot.updated", {**out, "by": actor.ref})
        if fresh_token is None:
            return {**out, "token": None, "signing_secret": None}
        return {**out, "token": fresh_token[0], "signing_secret": fresh_token[1]}

    async def delete(self, actor: Actor, bot_id: str) -> None:
        actor.require("bots.manage")
        async with self.store.tx() as tx:
            await self._row(tx.conn, bot_id)
            await self._release(tx, actor, bot_id, None, "the bot was deleted")
            await tx.conn.execute(BD.delete().where(BD.c.bot_id == bot_id, BD.c.state == "pending"))
            await tx.conn.execute(BC.delete().where(BC.c.bot_id == bot_id))
            await tx.conn.execute(B.delete().where(B.c.id == bot_id))
            await tx.emit("bot.updated", {"id": bot_id, "deleted": True, "by": actor.ref})

    async def _release(
        self, tx: Tx, actor: Actor, bot_id: str, channel_ids: list[str] | None, reason: str
    ) -> None:
        stmt = sa.select(BV.c.conversation_id).where(BV.c.bot_id == bot_id, BV.c.state == "active")
        if channel_ids is not None:
            stmt = stmt.join(C, C.c.id == BV.c.conversation_id).where(C.c.channel_id.in_(channel_ids))
        for conversation_id in list(await tx.conn.scalars(stmt)):
            await hand_over(
                tx, conversation_id, trigger="bot_removed", reason=reason, by=actor.ref, note=reason
            )

    # ---- the bot's own identity ----------------------------------------------------------------

    async def authenticate(self, token: str) -> Actor | None:
        """The enabled bot a ``hubbot_`` token belongs to, as an actor; None when unknown."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        async with self.store.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(B).where(B.c.token_hash == hash_token(token), B.c.enabled.is_(True))
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            return bot_actor(row, await channels_of(conn, row["id"]))

    async def require_held(self, actor: Actor, conversation_id: str) -> None:
        """A bot writes only in a conversation it holds (409 once handed over)."""
        if actor.kind != "bot":
            return
        async with self.store.db.read() as conn:
            await access_conversation(conn, actor, conversation_id)
            state = await conn.scalar(
                sa.select(BV.c.state).where(BV.c.conversation_id == conversation_id, BV.c.bot_id == actor.id)
            )
        if state != "active":
            raise Conflict(
                "this conversation was handed over (or never was the bot's): the bot may not write in it"
            )

    async def handoff(self, actor: Actor, conversation_id: str, reason: str | None) -> dict[str, Any]:
        """The bot hands over (``bot``), or an agent takes the conversation from it (``agent``)."""
        if actor.kind == "bot":
            await self.require_held(actor, conversation_id)
        elif not actor.can("conversations.update"):
            raise Forbidden(f"your role ({actor.role}) lacks the permission 'conversations.update'")
        async with self.store.tx() as tx:
            await access_conversation(tx.conn, actor, conversation_id)
            trigger: Trigger = "bot" if actor.kind == "bot" else "agent"
            text = reason or (
                "the bot handed over" if trigger == "bot" else "an agent took over from the bot"
            )
            event = await hand_over(
                tx,
                conversation_id,
                trigger=trigger,
                reason=text,
                by=actor.ref,
                note=reason and f"Handed over: {reason}",
            )
        if event is None:
            raise Conflict("no bot holds this conversation")
        return event


async def holding_bot(conn: AsyncConnection, channel_ids: list[str]) -> dict[str, str]:
    """The enabled bot of each of ``channel_ids`` that has one."""
    if not channel_ids:
        return {}
    rows = await conn.execute(
        sa.select(BC.c.channel_id, BC.c.bot_id)
        .join(B, B.c.id == BC.c.bot_id)
        .where(BC.c.channel_id.in_(channel_ids), B.c.enabled.is_(True))
    )
    return {channel_id: bot_id for channel_id, bot_id in rows}
