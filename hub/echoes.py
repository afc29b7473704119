"""Echoes of the hub's own sends, matched to the message they echo instead of recorded twice.

A provider that carries a client id through a send and back on its echo (Messenger's
``metadata``) lets the channel's ``parse`` name the hub message an echo belongs to
(``InboundMessage.outbound_id``). The echo often arrives before the send call has answered, so
the message may have no provider id yet: the echo gives it one and marks it sent, the receipts
that came first are applied, and the outbox's later record of the answer changes nothing. An echo
of a message the hub does not know, or of none at all, goes on to be recorded as an outbound
message sent from another tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.channel import Channel
from hub.events import Tx
from hub.models import Direction, InboundMessage, MessageStatus, StatusUpdate
from hub.records import apply_status

__all__ = ["apply_pending_statuses", "match_echoes"]

M = schema.messages
P = schema.pending_statuses


async def match_echoes(
    tx: Tx, items: Sequence[tuple[Channel, InboundMessage]]
) -> list[tuple[Channel, InboundMessage]]:
    """Apply the echoes that name a hub message; return the items left to record as messages."""
    rest: list[tuple[Channel, InboundMessage]] = []
    for channel, ev in items:
        if ev.direction is not Direction.OUTBOUND or not ev.outbound_id:
            rest.append((channel, ev))
        elif not await _match(tx, channel.channel_id, ev):
            rest.append((channel, ev))
    return rest


async def _match(tx: Tx, cid: str, ev: InboundMessage) -> bool:
    known = await tx.conn.scalar(
        sa.select(M.c.id).where(M.c.channel_id == cid, M.c.external_id == ev.external_id)
    )
    if known is not None:
        return True  # a redelivered echo, or the outbox recorded the answer first: one effect
    msg = (
        (
            await tx.conn.execute(
                sa.select(M).where(
                    M.c.id == ev.outbound_id, M.c.channel_id == cid, M.c.direction == Direction.OUTBOUND.value
                )
            )
        )
        .mappings()
        .first()
    )
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
    await apply_pending_statuses(tx, cid, {ev.external_id: row})
    return True


async def apply_pending_statuses(tx: Tx, cid: str, current: dict[str, dict[str, Any]]) -> None:
    """Apply receipts kept for provider ids that had no message yet (``current``: id -> row)."""
    pending = (
        (
            await tx.conn.execute(
                sa.select(P).where(P.c.channel_id == cid, P.c.external_id.in_(list(current))).order_by(P.c.id)
            )
        )
        .mappings()
        .all()
    )
    for p in pending:
        st = StatusUpdate.model_validate(p["update"])
        msg = current[p["external_id"]]
        current[p["external_id"]] = (
            await apply_status(tx, msg, MessageStatus(st.status), st.timestamp, st.error) or msg
        )
    if pending:
        await tx.conn.execute(P.delete().where(P.c.id.in_([p["id"] for p in pending])))
