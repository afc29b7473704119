"""Quick replies (canned responses): a short code and a text with placeholders, searched by code and
text, rendered for one conversation when an agent previews or sends one.

Placeholders are ``{{contact.name}}``, ``{{contact.email}}``, ``{{contact.phone}}``,
``{{agent.name}}``, ``{{agent.email}}`` and ``{{conversation.custom_attributes.KEY}}``. A text
with any other ``{{...}}`` is refused when it is written (422 naming ``text``), so rendering never
meets one it does not know; a value that is missing (a contact without a name) renders empty.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.services.conversations import access_conversation
from hub.services.errors import Conflict, Invalid, NotFound

__all__ = [
    "PLACEHOLDERS",
    "TEXT_PATTERN",
    "QuickReplyService",
    "announce_config",
    "placeholder_problems",
    "render_text",
]

Q = schema.quick_replies
PLACEHOLDERS = ("contact.name", "contact.email", "contact.phone", "agent.name", "agent.email")
_KNOWN = (
    r"contact\.(?:name|email|phone)|agent\.(?:name|email)"
    r"|conversation\.custom_attributes\.[A-Za-z0-9_.-]{1,64}"
)
# A text is characters other than braces (and NUL), and placeholders: braces appear in nothing else.
# The same expression, in JavaScript's syntax, is the pattern the API document publishes.
TEXT_PATTERN = "^(?:[^{}\\u0000]|\\{\\{ *(?:" + _KNOWN + ") *\\}\\})*$"
_TEXT = re.compile("(?:[^{}\x00]|\\{\\{ *(?:" + _KNOWN + ") *\\}\\})*")
_LOOSE = re.compile(r"\{\{([^{}]*)\}\}")
_PLACEHOLDER = re.compile(r"\{\{ *([^{} ]+) *\}\}")
_ATTRIBUTE = re.compile(r"^conversation\.custom_attributes\.([A-Za-z0-9_.-]{1,64})$")


def placeholder_problems(text: str) -> list[str]:
    """What is wrong with the placeholders of ``text`` (empty when the text is valid)."""
    if _TEXT.fullmatch(text):
        return []
    known = ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS) + ", {{conversation.custom_attributes.KEY}}"
    problems = []
    for match in _LOOSE.finditer(text):
        name = match.group(1).strip()
        if name not in PLACEHOLDERS and not _ATTRIBUTE.match(name):
            problems.append(f"unknown placeholder {{{{{name}}}}}; known: {known}")
    return problems or [f"{{ and }} appear only in placeholders: {known}"]


def render_text(text: str, conversation: dict[str, Any], agent: dict[str, Any]) -> str:
    """``text`` with each placeholder replaced by the conversation's (or the agent's) value."""
    contact = conversation.get("contact") or {}
    attributes = conversation.get("custom_attributes") or {}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        attr = _ATTRIBUTE.match(name)
        if attr is not None:
            got = attributes.get(attr.group(1))
        else:
            owner, _, key = name.partition(".")
            got = (contact if owner == "contact" else agent).get(key)
        if got is None:
            return ""
        if isinstance(got, bool):
            return "true" if got else "false"
        return str(got)

    return _PLACEHOLDER.sub(value, text)


async def announce_config(tx: Tx, resource: str, by: dict[str, Any], user_id: str | None = None) -> None:
    """``config.updated`` for a workspace resource the app caches, so it refetches that one."""
    data: dict[str, Any] = {"resource": resource, "etag": None, "by": by}
    if user_id is not None:
        data["user_id"] = user_id
    await tx.emit("config.updated", data)


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "code": row["code"],
        "text": row["text"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _checked_text(text: str) -> str:
    problems = placeholder_problems(text)
    if problems:
        raise Invalid("text", "; ".join(problems))
    return text


class QuickReplyService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def search(self, actor: Actor, query: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Every quick reply (or those whose code or text contains ``query``), by code."""
        stmt = sa.select(Q).order_by(Q.c.code).limit(limit)
        if query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            stmt = stmt.where(
                sa.or_(Q.c.code.ilike(pattern, escape="\\"), Q.c.text.ilike(pattern, escape="\\"))
            )
        async with self.store.db.read() as conn:
            return [_public(r) for r in (await conn.execute(stmt)).mappings()]

    async def get(self, actor: Actor, quick_reply_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            return await _fetch(conn, quick_reply_id)

    async def create(self, actor: Actor, code: str, text: str) -> dict[str, Any]:
        actor.require("config.manage")
        now = utcnow()
        row = {"id": new_id("qr_"), "code": code.lower(), "text": _checked_text(text)}
        try:
            async with self.store.tx() as tx:
                await self._unique(tx.conn, row["code"], None)
                await tx.conn.execute(Q.insert().values(**row, created_at=now, updated_at=now))
                await announce_config(tx, "quick_replies", actor.ref)
        except IntegrityError:  # two admins creating the same code at once
            raise Conflict(f"a quick reply with the code {code!r} exists") from None
        return _public({**row, "created_at": now, "updated_at": now})

    async def update(
        self, actor: Actor, quick_reply_id: str, code: str | None, text: str | None
    ) -> dict[str, Any]:
        actor.require("config.manage")
        values: dict[str, Any] = {}
        async with self.store.tx() as tx:
            await _fetch(tx.conn, quick_reply_id)  # absent is a 404 whatever the body says
            if code is not None:
                values["code"] = code.lower()
            if text is not None:
                values["text"] = _checked_text(text)
            if values:
                if "code" in values:
                    await self._unique(tx.conn, values["code"], quick_reply_id)
                values["updated_at"] = utcnow()
                await tx.conn.execute(Q.update().where(Q.c.id == quick_reply_id).values(**values))
                await announce_config(tx, "quick_replies", actor.ref)
            return await _fetch(tx.conn, quick_reply_id)

    async def delete(self, actor: Actor, quick_reply_id: str) -> None:
        actor.require("config.manage")
        async with self.store.tx() as tx:
            res = await tx.conn.execute(Q.delete().where(Q.c.id == quick_reply_id))
            if not res.rowcount:
                raise NotFound(f"quick reply {quick_reply_id} does not exist")
            await announce_config(tx, "quick_replies", actor.ref)

    async def render(
        self, conn: AsyncConnection, actor: Actor, quick_reply_id: str, conversation_id: str
    ) -> str:
        """The quick reply's text for this conversation, as ``actor`` would send it (NotFound for
        a conversation outside the actor's scope; ``Invalid`` naming ``quick_reply_id`` for an
        unknown quick reply)."""
        conv = await access_conversation(conn, actor, conversation_id)
        row = (await conn.execute(sa.select(Q).where(Q.c.id == quick_reply_id))).mappings().first()
        if row is None:
            raise Invalid("quick_reply_id", "no such quick reply")
        problems = placeholder_problems(row["text"])
        if problems:  # written before a placeholder was withdrawn: refuse rather than send "{{...}}"
            raise Invalid("quick_reply_id", "; ".join(problems))
        return render_text(row["text"], conv, dict(actor.user))

    async def preview(self, actor: Actor, quick_reply_id: str, conversation_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            await _fetch(conn, quick_reply_id)  # an unknown quick reply is a 404 here
            text = await self.render(conn, actor, quick_reply_id, conversation_id)
        return {"quick_reply_id": quick_reply_id, "conversation_id": conversation_id, "text": text}

    async def _unique(self, conn: AsyncConnection, code: str, other_than: str | None) -> None:
        stmt = sa.select(Q.c.id).where(Q.c.code == code)
        if other_than is not None:
            stmt = stmt.where(Q.c.id != other_than)
        if await conn.scalar(stmt) is not None:
            raise Conflict(f"a quick reply with the code {code!r} exists")


async def _fetch(conn: AsyncConnection, quick_reply_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(Q).where(Q.c.id == quick_reply_id))).mappings().first()
    if row is None:
        raise NotFound(f"quick reply {quick_reply_id} does not exist")
    return _public(row)
