"""Echoes of the hub's own sends, matched to the message they echo instead of recorded twice.

A provider that carries a client id through a send and back on its echo (Messenger's
``metadata``) lets the channel's ``parse`` name the hub message an echo belongs to
(``InboundMessage.outbound_id``); without one (Instagram), an echo matches the single text the hub
is sending to that customer at that moment with the same content. The echo often arrives before
the send call has answered, so the message may have no provider id yet: the echo gives it one and
marks it sent, the receipts that came first are applied, and the outbox's later record of the
answer changes nothing. An echo of a message the hub does not know, or of none at all, goes on to
be recorded as an outbound message sent from another tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.channel import Channel
from hub.events import Tx
from hub.models import Direction, InboundMessage, MessageStatus
from hub.records import apply_pending_statuses, apply_status

__all__ = ["match_echoes"]

M = schema.messages


async def match_echoes(
    tx: Tx, items: Sequence[tuple[Channel, InboundMessage]]
) -> list[tuple[Channel, InboundMessage]]:
    """Apply the echoes that name a hub message; return the items left to record as messages."""
    rest: list[tuple[Channel, InboundMessage]] = []
    for channel, ev in items:
        if ev.direction is not Direction.OUTBOUND or not await _match(tx, channel.channel_id, ev):
            rest.append((channel, ev))
    return rest


async def _match(tx: Tx, cid: str, ev: InboundMessage) -> bool:
    known = await tx.conn.scalar(
        sa.select(M.c.id).where(M.c.channel_id == cid, M.c.external_id == ev.external_id)
    )
    if known is not None:
        return True  # a redelivered echo, or the outbox recorded the answer first: one effect
    if ev.outbound_id:
        query = sa.select(M).where(
            M.c.id == ev.outbound_id, M.c.channel_id == cid, M.c.direction == Direction.OUTBOUND.value
        )
        msg = (await tx.conn.execute(query)).mappings().first()
    else:
        msg = await _sending_twin(tx, cid, ev)
    if msg is None:
        return False
    if msg["external_id"] not in (None, ev.external_id):
        # The provider sent this hub message twice (a retry after a lost answer): the first copy
        # is the message; the second must not become a new one either.
        return True
    row = dict(msg)
    if MessageStatus(row["status"]) is MessageStatus.QUEUED:
        updated = await apply_status(
            tx, row, MessageStatus.SENT, ev.timestamp, extra={"external_id": ev.external_id}
        )
        row = updated or row
    else:
        # Failed after a timeout although the provider did send it, say: keep the status the
        # agent saw, but learn the provider id so receipts and replies find the message.
        await tx.conn.execute(M.update().where(M.c.id == row["id"]).values(external_id=ev.external_id))
        row["external_id"] = ev.external_id
    await apply_pending_statuses(tx, {ev.external_id: row})
    return True


async def _sending_twin(tx: Tx, cid: str, ev: InboundMessage) -> Any:
    """For a provider that carries no client id (Instagram): the one message this echo can be.

    That is a text the hub is sending right now (its outbox job in flight, no provider id yet) to
    the same customer, with the same kind and text. Anything less certain is not matched: the echo
    is then recorded as an outbound message, and the outbox records its own answer beside it.
    """
    if not ev.text:
        return None
    I = schema.contact_identities  # noqa: E741
    C = schema.conversations
    O = schema.outbox  # noqa: E741
    contacts = sa.select(I.c.contact_id).where(I.c.channel_id == cid, I.c.identity.in_(ev.contact.ids))
    conversations = sa.select(C.c.id).where(C.c.channel_id == cid, C.c.contact_id.in_(contacts))
    sending = sa.select(O.c.message_id).where(O.c.channel_id == cid, O.c.state == "inflight")
    rows = (
        (
            await tx.conn.execute(
                sa.select(M)
                .where(
                    M.c.channel_id == cid,
                    M.c.conversation_id.in_(conversations),
                    M.c.direction == Direction.OUTBOUND.value,
                    M.c.status == MessageStatus.QUEUED.value,
                    M.c.external_id.is_(None),
                    M.c.kind == ev.kind.value,
                    M.c.text == ev.text,
                    M.c.id.in_(sending),
                )
                .limit(2)
            )
        )
        .mappings()
        .all()
    )
    return rows[0] if len(rows) == 1 else None
