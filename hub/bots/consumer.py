"""Feeding bots from the event log: a consumer with a durable cursor, like an app.

It reads the events after its cursor (``cursors`` row ``_hub``/``bots``) and, in one transaction
per batch with the new cursor:

* a customer's new conversation on a channel with an enabled bot (created ``pending``) becomes the
  bot's (``bot_conversations``, ``active``);
* each event of a conversation a bot holds becomes a delivery for it (``bot_deliveries``), except
  the bot's own messages (a bot is never fed what it said itself);
* a human agent's reply, or an agent assigning the conversation, hands it over (``hand_over``):
  the bot gets none of the events after it, nor those not yet delivered.

The cursor moves by compare-and-set, so a crash neither skips nor repeats a batch, and two
processes never both handle one; the deliveries keep the log's order (their ids grow with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import jsontext, schema
from hub.access import system_actor
from hub.bots.service import hand_over, holding_bot, open_for_agents
from hub.events import Store, Tx
from hub.logcursor import LogConsumer, LogCursor
from hub.models import utcnow

__all__ = ["CURSOR", "WATCHED", "BotConsumer"]

log = logging.getLogger("hub.bots")
CURSOR = LogCursor("bots")
BV = schema.bot_conversations
BD = schema.bot_deliveries
WATCHED = ("conversation.created", "conversation.updated", "message.created", "message.updated")


def envelope(
    seq: int, type_: str, channel_id: str | None, conversation_id: str, data: Any, at: Any
) -> dict[str, Any]:
    """An event as ``GET /api/v1/events`` hands it out."""
    return {
        "seq": seq,
        "type": type_,
        "channel_id": channel_id,
        "conversation_id": conversation_id,
        "created_at": at if isinstance(at, str) else at.isoformat(),
        "data": data,
    }


class BotConsumer(LogConsumer):
    task_name = "hub-bots"
    cursor = CURSOR
    watched = WATCHED
    log = log

    def __init__(
        self,
        store: Store,
        *,
        on_deliveries: Callable[[], None] | None = None,
        batch_size: int = 200,
        interval: float = 1.0,
    ) -> None:
        super().__init__(store, batch_size=batch_size, interval=interval)
        self.on_deliveries = on_deliveries

    async def step(self) -> int:
        """Handle the next batch of events; how many events of interest it read (0: nothing new)."""
        batch = await self.next_batch()
        if batch is None:
            return 0
        queued = 0
        async with self.store.tx() as tx:
            if not await self.move(tx.conn, batch.start, batch.last):
                return 0  # another process handled this batch
            held = await _holders(tx.conn, {row.conversation_id for row in batch.rows if row.conversation_id})
            for seq, type_, channel_id, conversation_id, text, at in batch.rows:
                if conversation_id is None:
                    continue
                if conversation_id not in held and type_ != "conversation.created":
                    continue  # no bot holds it, nor can one start to (``_one``): not decoded
                queued += await self._one(
                    tx, held, envelope(seq, type_, channel_id, conversation_id, jsontext.loads(text), at)
                )
        if queued and self.on_deliveries is not None:
            self.on_deliveries()
        return len(batch.rows)

    async def _one(self, tx: Tx, held: dict[str, Any], event: dict[str, Any]) -> int:
        cid, data, type_ = event["conversation_id"], event["data"], event["type"]
        row = held.get(cid)
        if row is None and type_ == "conversation.created" and data.get("status") == "pending":
            bot_id = (await holding_bot(tx.conn, [event["channel_id"]])).get(event["channel_id"])
            if bot_id is None:
                # Its bot was disabled or removed in between: nobody would answer, so agents do.
                await open_for_agents(tx, system_actor("bots"), cid)
                return 0
            await tx.conn.execute(
                BV.insert().values(
                    conversation_id=cid, bot_id=bot_id, state="active", flow_state={}, created_at=utcnow()
                )
            )
            row = held[cid] = {"bot_id": bot_id, "state": "active"}
        if row is None or row["state"] != "active":
            return 0
        sender = data.get("sender") or {}
        if (
            type_ == "message.created"
            and data.get("direction") == "outbound"
            and sender.get("type") == "user"
        ):
            await self._takeover(tx, held, cid, "human_reply", "an agent replied to the customer", sender)
            return 0
        by = data.get("by") or {}
        if (
            type_ == "conversation.updated"
            and "assignee_id" in (data.get("changed") or ())
            and data.get("assignee_id")
            and by.get("type") == "user"
        ):
            await self._takeover(tx, held, cid, "agent", "an agent assigned the conversation", by)
            return 0
        if type_ == "message.created" and sender.get("type") == "bot" and sender.get("id") == row["bot_id"]:
            return 0  # its own message
        if type_ == "conversation.updated" and set(data.get("changed") or ()) <= {"last_message_at"}:
            return 0  # only the clock moved: the message's own event says it
        now = utcnow()
        await tx.conn.execute(
            BD.insert().values(
                bot_id=row["bot_id"],
                conversation_id=cid,
                seq=event["seq"],
                payload=event,
                state="pending",
                attempts=0,
                due_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        return 1

    async def _takeover(
        self, tx: Tx, held: dict[str, Any], cid: str, trigger: Any, reason: str, by: dict[str, Any]
    ) -> None:
        ref = {"type": by.get("type") or "user", "id": by.get("id") or "", "name": by.get("name")}
        await hand_over(tx, cid, trigger=trigger, reason=reason, by=ref)
        held[cid] = {"bot_id": held[cid]["bot_id"], "state": "handed_over"}


async def _holders(conn: AsyncConnection, conversation_ids: set[str]) -> dict[str, Any]:
    """The bot holding each of these conversations, if any, in one query per 500 (one per event
    was most of this consumer's cost under ingest, with no bot at all)."""
    held: dict[str, Any] = {}
    ids = sorted(conversation_ids)
    for i in range(0, len(ids), 500):
        rows = await conn.execute(
            sa.select(BV.c.conversation_id, BV.c.bot_id, BV.c.state).where(
                BV.c.conversation_id.in_(ids[i : i + 500])
            )
        )
        for cid, bot_id, state in rows:
            held[cid] = {"bot_id": bot_id, "state": state}
    return held
