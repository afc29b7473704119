"""What an agent or an admin does to messages already queued: retry a failed one, cancel a queued
one, or fail a channel's whole queue when the channel goes away. Each is one transaction with its
``message.updated`` events."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.events import Store
from hub.models import MessageStatus, utcnow
from hub.outbound.refused import SendRefused
from hub.records import apply_status, message_dict

__all__ = ["cancel_channel_queue", "cancel_message", "retry_message"]

M = schema.messages
O = schema.outbox  # noqa: E741


async def retry_message(store: Store, message_id: str) -> dict[str, Any]:
    """An agent retries a failed outbound message: same message, new attempts."""
    async with store.tx() as tx:
        msg = (await tx.conn.execute(sa.select(M).where(M.c.id == message_id))).mappings().first()
        if msg is None:
            raise SendRefused("not_found", "not_found", f"message {message_id} does not exist")
        if msg["direction"] != "outbound" or msg["status"] != MessageStatus.FAILED.value:
            raise SendRefused("conflict", "not_retryable", "only a failed outbound message can be retried")
        now = utcnow()
        stamps = {"queued": now.isoformat()}
        await tx.conn.execute(
            M.update()
            .where(M.c.id == message_id)
            .values(status="queued", status_at=stamps, error=None, external_id=None, updated_at=now)
        )
        await tx.conn.execute(
            O.update()
            .where(O.c.message_id == message_id)
            .values(
                state="pending",
                attempts=0,
                due_at=now,
                lease_until=None,
                claim_token=None,
                unknown_since=None,
                last_error=None,
                created_at=now,
                updated_at=now,
            )
        )
        updated = {
            **dict(msg),
            "status": "queued",
            "status_at": stamps,
            "error": None,
            "external_id": None,
            "updated_at": now,
        }
        await tx.emit(
            "message.updated",
            message_dict(updated),
            channel_id=msg["channel_id"],
            conversation_id=msg["conversation_id"],
        )
    return message_dict(updated)


async def cancel_message(store: Store, message_id: str) -> dict[str, Any]:
    """An agent cancels a message that has not gone out yet."""
    async with store.tx() as tx:
        msg = (await tx.conn.execute(sa.select(M).where(M.c.id == message_id))).mappings().first()
        if msg is None:
            raise SendRefused("not_found", "not_found", f"message {message_id} does not exist")
        job = (await tx.conn.execute(sa.select(O).where(O.c.message_id == message_id))).mappings().first()
        if msg["status"] != "queued" or job is None or job["state"] != "pending":
            raise SendRefused(
                "conflict", "not_cancellable", "only a queued message not being sent can be cancelled"
            )
        await tx.conn.execute(
            O.update().where(O.c.id == job["id"]).values(state="cancelled", updated_at=utcnow())
        )
        updated = await apply_status(
            tx,
            dict(msg),
            MessageStatus.FAILED,
            utcnow(),
            {"class": "cancelled", "message": "cancelled by an agent", "provider_code": None, "title": None},
        )
    assert updated is not None
    return message_dict(updated)


async def cancel_channel_queue(tx: Any, channel_id: str, reason: str) -> int:
    """Fail every message still waiting on ``channel_id`` (class ``cancelled``); returns how many."""
    jobs = (
        (
            await tx.conn.execute(
                sa.select(O).where(O.c.channel_id == channel_id, O.c.state.in_(["pending", "inflight"]))
            )
        )
        .mappings()
        .all()
    )
    error = {"class": "cancelled", "message": reason, "provider_code": None, "title": None}
    for job in jobs:
        await tx.conn.execute(
            O.update().where(O.c.id == job["id"]).values(state="cancelled", updated_at=utcnow())
        )
        msg = (await tx.conn.execute(sa.select(M).where(M.c.id == job["message_id"]))).mappings().one()
        await apply_status(tx, dict(msg), MessageStatus.FAILED, utcnow(), error)
    return len(jobs)
