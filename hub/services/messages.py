"""Messages as an actor reads and sends them: history, one message, attachments, sends, retries
and cancels, each within the actor's scope (a message outside it answers as absent)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.access import Actor
from hub.channels import ChannelService
from hub.events import Store
from hub.groupcommit import GroupCommit
from hub.media import MediaStore
from hub.outbound import Draft, cancel_message, enqueue, retry_message
from hub.records import message_dict
from hub.services.conversations import BadCursor, access_conversation
from hub.services.errors import NotFound
from hub.services.quick_replies import QuickReplyService

__all__ = ["MessageService"]

C = schema.conversations
M = schema.messages


class MessageService:
    def __init__(
        self,
        store: Store,
        channels: ChannelService,
        media: MediaStore,
        writer: GroupCommit[dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.media = media
        self.writer = writer

    async def history(
        self,
        actor: Actor,
        conversation_id: str,
        *,
        before: str | None,
        limit: int,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the conversation's messages, oldest first: the newest ones, those older than
        ``before`` or those newer than ``after`` (each a message id of this conversation; any
        other value is a 400). Returns (page, the ``before`` of the next older page)."""
        async with self.store.db.read() as conn:
            await self._check_conversation(conn, actor, conversation_id)
            if before and after:
                raise BadCursor("give before or after, not both")
            for name, cursor in (("before", before), ("after", after)):
                if cursor and not await conn.scalar(
                    sa.select(M.c.id).where(M.c.id == cursor, M.c.conversation_id == conversation_id)
                ):
                    raise BadCursor(f"{name} is not a message of this conversation")
            stmt = sa.select(M).where(M.c.conversation_id == conversation_id).limit(limit + 1)
            if after:
                stmt = stmt.where(M.c.id > after).order_by(M.c.id)
            else:
                stmt = stmt.order_by(M.c.id.desc())
            if before:
                stmt = stmt.where(M.c.id < before)
            rows = (await conn.execute(stmt)).mappings().all()
        page = [message_dict(r) for r in rows[:limit]]
        if after:
            return page, None
        page.reverse()
        return page, page[0]["id"] if len(rows) > limit else None

    async def get(self, actor: Actor, message_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(M).where(M.c.id == message_id))).mappings().first()
            if row is None or not await self._sees(conn, actor, row["conversation_id"]):
                raise NotFound(f"message {message_id} does not exist")
        return message_dict(row)

    async def attachment(self, actor: Actor, message_id: str, index: int) -> dict[str, Any]:
        """A stored attachment's file (``path``), ``mime_type`` and ``filename``; NotFound outside
        the scope, for an index the message does not have, or a file not stored (yet)."""
        msg = await self.get(actor, message_id)  # the scope first: absent and not yours look alike
        atts = msg["attachments"]
        if not 0 <= index < len(atts):
            raise NotFound("no such attachment")
        path = await self.media.path_for(message_id, index)
        if path is None:
            raise NotFound("the attachment is not stored (yet)")
        att = atts[index]
        return {"path": path, "mime_type": att.get("mime_type"), "filename": att.get("filename")}

    async def send(
        self,
        actor: Actor,
        conversation_id: str,
        req: Draft,
        idempotency_key: str | None,
        uploads: dict[str, dict[str, Any]],
        *,
        quick_reply_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Enqueue ``req``; with ``quick_reply_id`` its text is that quick reply rendered for the
        conversation and the sender (``hub.services.quick_replies``)."""
        actor.require("messages.send")
        if quick_reply_id is not None:
            async with self.store.db.read() as conn:
                text = await QuickReplyService(self.store).render(
                    conn, actor, quick_reply_id, conversation_id
                )
            req = req.model_copy(update={"text": text})
        else:
            await self._check_scope_fast(actor, conversation_id)
        return await enqueue(
            self.store,
            self.channels,
            conversation_id,
            dict(actor.user),
            req,
            idempotency_key,
            uploads,
            writer=self.writer,
        )

    async def retry(self, actor: Actor, message_id: str) -> dict[str, Any]:
        actor.require("messages.send")
        await self.get(actor, message_id)
        return await retry_message(self.store, message_id)

    async def cancel(self, actor: Actor, message_id: str) -> dict[str, Any]:
        actor.require("messages.send")
        await self.get(actor, message_id)
        return await cancel_message(self.store, message_id)

    # ---- scope ----------------------------------------------------------------------------------

    async def _check_scope_fast(self, actor: Actor, conversation_id: str) -> None:
        """The send path's check: the cached channel of the conversation is enough for a role that
        reads every conversation of its channels (no read per send); others read the row."""
        if actor.reads_all:
            channel_id = await self.channels.channel_of(conversation_id)
            if channel_id is None or not actor.sees_channel(channel_id):
                raise NotFound(f"conversation {conversation_id} does not exist")
            return
        async with self.store.db.read() as conn:
            await self._check_conversation(conn, actor, conversation_id)

    async def _check_conversation(self, conn: Any, actor: Actor, conversation_id: str) -> None:
        if actor.all_channels and actor.reads_all:
            if await conn.scalar(sa.select(C.c.id).where(C.c.id == conversation_id)) is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            return
        await access_conversation(conn, actor, conversation_id)

    async def _sees(self, conn: Any, actor: Actor, conversation_id: str) -> bool:
        if actor.all_channels and actor.reads_all:
            return True
        row = (
            (
                await conn.execute(
                    sa.select(C.c.channel_id, C.c.assignee_id, C.c.team).where(C.c.id == conversation_id)
                )
            )
            .mappings()
            .first()
        )
        return row is not None and actor.sees_conversation(row)
