"""Recording what became of a claimed job: sent (with the provider's id), done, back to pending,
or failed. Each write and its ``message.updated`` events are one transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.errors import SendError
from hub.events import Store, Tx
from hub.groupcommit import GroupCommit
from hub.models import MessageStatus, StatusUpdate, utcnow
from hub.records import apply_status, message_dict

__all__ = ["Recorder"]

M = schema.messages
O = schema.outbox  # noqa: E741

Sent = tuple[dict[str, Any], dict[str, Any], str]
"""A job, its message row, and the provider's id for the message."""


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sent_writer: GroupCommit[Sent] = GroupCommit(store, self._sent_many)

    async def sent(self, job: dict[str, Any], msg: dict[str, Any], external_id: str) -> None:
        """Record a send; sends that finish together are committed together."""
        await self._sent_writer.submit((job, msg, external_id))

    async def _sent_many(self, tx: Tx, items: list[Sent]) -> None:
        """Mark jobs done and messages sent (with the provider ids), then apply any receipt that
        arrived before the send call returned."""
        now = utcnow()
        P = schema.pending_statuses
        await tx.conn.execute(
            O.update()
            .where(O.c.id.in_([job["id"] for job, _, _ in items]))
            .values(state="done", updated_at=now, lease_until=None)
        )
        current: dict[str, dict[str, Any]] = {}
        params = []
        for _, msg, ext in items:
            stamps = {**(msg["status_at"] or {}), "sent": now.isoformat()}
            current[ext] = {
                **msg,
                "status": "sent",
                "status_at": stamps,
                "external_id": ext,
                "updated_at": now,
            }
            params.append({"b_id": msg["id"], "b_ext": ext, "b_stamps": stamps, "b_now": now})
        await tx.conn.execute(
            M.update()
            .where(M.c.id == sa.bindparam("b_id"))
            .values(
                status="sent",
                external_id=sa.bindparam("b_ext"),
                status_at=sa.bindparam("b_stamps", type_=sa.JSON),
                updated_at=sa.bindparam("b_now", type_=schema.TS),
            ),
            params,
        )
        await tx.emit_many(
            [
                ("message.updated", message_dict(m), m["channel_id"], m["conversation_id"])
                for m in current.values()
            ]
        )
        channel_ids = {m["channel_id"] for m in current.values()}
        pending = (
            (
                await tx.conn.execute(
                    sa.select(P)
                    .where(P.c.channel_id.in_(channel_ids), P.c.external_id.in_(list(current)))
                    .order_by(P.c.id)
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

    async def finish(self, job: dict[str, Any], state: str) -> None:
        async with self.store.db.write() as conn:
            await conn.execute(
                O.update()
                .where(O.c.id == job["id"])
                .values(state=state, lease_until=None, updated_at=utcnow())
            )

    async def reschedule(
        self, job: dict[str, Any], delay: float, error: SendError | None, *, count: bool
    ) -> None:
        values: dict[str, Any] = {
            "state": "pending",
            "due_at": utcnow() + timedelta(seconds=delay),
            "lease_until": None,
            "updated_at": utcnow(),
        }
        if not count:
            values["attempts"] = O.c.attempts - 1
        if error is not None:
            values["last_error"] = error.as_dict()
        async with self.store.db.write() as conn:
            await conn.execute(O.update().where(O.c.id == job["id"]).values(**values))

    async def fail(self, job: dict[str, Any], msg: dict[str, Any], exc: SendError) -> None:
        async with self.store.tx() as tx:
            await tx.conn.execute(
                O.update()
                .where(O.c.id == job["id"])
                .values(state="failed", last_error=exc.as_dict(), lease_until=None, updated_at=utcnow())
            )
            await apply_status(tx, msg, MessageStatus.FAILED, utcnow(), exc.as_dict())
