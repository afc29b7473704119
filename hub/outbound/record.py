"""Recording what became of a claimed job: sent (with the provider's id), done, back to pending,
or failed. Each write and its ``message.updated`` events are one transaction.

Every write is fenced by the claim that made it: it applies only while the job is still
``inflight`` under the same ``claim_token``. A worker whose lease was taken over (it stalled past
the lease) or whose job was cancelled meanwhile (the channel was deleted) writes nothing, so a
terminal state stays terminal and two workers never both record a job.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.errors import SendError
from hub.events import Store, Tx
from hub.groupcommit import GroupCommit
from hub.models import MessageStatus, SendReceipt, utcnow
from hub.records import apply_pending_statuses, apply_status, message_dict

__all__ = ["Recorder"]

log = logging.getLogger("hub.outbound")
M = schema.messages
O = schema.outbox  # noqa: E741
P = schema.pending_statuses

Sent = tuple[dict[str, Any], dict[str, Any], SendReceipt]
"""A job, its message row, and the provider's receipt for the send."""


def held(job: dict[str, Any]) -> Any:
    """The condition that the job is still under the claim that ``job`` was read with."""
    return sa.and_(O.c.id == job["id"], O.c.claim_token == job["claim_token"], O.c.state == "inflight")


def _lost(job: dict[str, Any], what: str) -> None:
    log.warning(
        "outbox job %s (message %s) lost its claim before %s (its lease was taken over, or the job "
        "was cancelled); nothing recorded",
        job["id"],
        job["message_id"],
        what,
    )


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sent_writer: GroupCommit[Sent] = GroupCommit(store, self._sent_many)

    async def sent(self, job: dict[str, Any], msg: dict[str, Any], receipt: SendReceipt) -> None:
        """Record a send; sends that finish together are committed together."""
        await self._sent_writer.submit((job, msg, receipt))

    async def _sent_many(self, tx: Tx, items: list[Sent]) -> None:
        """Mark jobs done and messages sent (with the provider ids), then apply any receipt that
        arrived before the send call returned. Jobs no longer held are left alone."""
        now = utcnow()
        won = set(
            (
                await tx.conn.execute(
                    O.update()
                    .where(
                        sa.tuple_(O.c.id, O.c.claim_token).in_(
                            [(job["id"], job["claim_token"]) for job, _, _ in items]
                        ),
                        O.c.state == "inflight",
                    )
                    .values(state="done", updated_at=now, lease_until=None)
                    .returning(O.c.id)
                )
            ).scalars()
        )
        for job, _, _ in items:
            if job["id"] not in won:
                _lost(job, "recording its send")
        items = [item for item in items if item[0]["id"] in won]
        if not items:
            return
        # An echo of the send (``hub.echoes``) may have recorded it first, and receipts may have
        # moved it on since: such a message is left as it is, never set back to "sent".
        recorded = set(
            await tx.conn.scalars(
                sa.select(M.c.id).where(
                    M.c.id.in_([msg["id"] for _, msg, _ in items]), M.c.status != MessageStatus.QUEUED.value
                )
            )
        )
        items = [item for item in items if item[1]["id"] not in recorded]
        if not items:
            return
        taken = await self._taken_ids(tx, items)
        current: dict[str, dict[str, Any]] = {}
        params = []
        with_data = []
        for _, msg, receipt in items:
            ext: str | None = receipt.external_id
            if ext in taken or ext in current:
                # The provider answered with an id another message holds. The send happened:
                # record it (without the id, which must stay unique) and never send again.
                log.warning(
                    "channel %s answered the send of message %s with provider id %r, which message "
                    "%s already holds; recorded as sent without a provider id",
                    msg["channel_id"],
                    msg["id"],
                    ext,
                    taken.get(ext or "") or current[ext or ""]["id"],
                )
                ext = None
            status = MessageStatus(receipt.status).value
            stamps = dict(msg["status_at"] or {})
            if status == MessageStatus.SENT.value:
                stamps["sent"] = now.isoformat()
            content = msg["content"] or {}
            if receipt.data:
                content = {**content, "data": {**(content.get("data") or {}), **receipt.data}}
                with_data.append({"b_id": msg["id"], "b_content": content})
            row = {
                **msg,
                "status": status,
                "status_at": stamps,
                "external_id": ext,
                "content": content,
                "updated_at": now,
            }
            current[ext if ext is not None else f"\0{msg['id']}"] = row
            params.append(
                {
                    "b_id": msg["id"],
                    "b_status": status,
                    "b_ext": ext,
                    "b_stamps": stamps,
                    "b_now": now,
                }
            )
        await tx.conn.execute(
            M.update()
            .where(M.c.id == sa.bindparam("b_id"))
            .values(
                status=sa.bindparam("b_status"),
                external_id=sa.bindparam("b_ext"),
                status_at=sa.bindparam("b_stamps", type_=sa.JSON),
                updated_at=sa.bindparam("b_now", type_=schema.TS),
            ),
            params,
        )
        if with_data:  # rare: most receipts carry no data, and rewriting content costs a JSON dump
            await tx.conn.execute(
                M.update()
                .where(M.c.id == sa.bindparam("b_id"))
                .values(content=sa.bindparam("b_content", type_=sa.JSON)),
                with_data,
            )
        await tx.emit_many(
            [
                ("message.updated", message_dict(m), m["channel_id"], m["conversation_id"])
                for m in current.values()
            ]
        )
        await self._apply_pending(tx, {ext: m for ext, m in current.items() if m["external_id"]})

    @staticmethod
    async def _taken_ids(tx: Tx, items: list[Sent]) -> dict[str, str]:
        """Provider ids of ``items`` that another message of the same channel already holds."""
        ours = {msg["id"] for _, msg, _ in items}
        out: dict[str, str] = {}
        for channel_id in {msg["channel_id"] for _, msg, _ in items}:
            exts = [r.external_id for _, m, r in items if m["channel_id"] == channel_id]
            rows = await tx.conn.execute(
                sa.select(M.c.id, M.c.external_id).where(
                    M.c.channel_id == channel_id, M.c.external_id.in_(exts)
                )
            )
            out.update({ext: mid for mid, ext in rows if mid not in ours})
        return out

    @staticmethod
    async def _apply_pending(tx: Tx, current: dict[str, dict[str, Any]]) -> None:
        """Apply the receipts stored for provider ids before the send recorded them."""
        await apply_pending_statuses(tx, current)

    async def finish(self, job: dict[str, Any], state: str) -> bool:
        """End a job without a send (its message is no longer queued). False: claim lost."""
        async with self.store.db.write() as conn:
            result = await conn.execute(
                O.update().where(held(job)).values(state=state, lease_until=None, updated_at=utcnow())
            )
        if result.rowcount == 0:
            _lost(job, f"marking it {state}")
        return bool(result.rowcount)

    async def reschedule(
        self,
        job: dict[str, Any],
        delay: float,
        error: SendError | None,
        *,
        count: bool,
        unknown_since: Any = None,
    ) -> bool:
        """Back to pending, due in ``delay`` s. ``count=False`` gives the attempt back."""
        values: dict[str, Any] = {
            "state": "pending",
            "due_at": utcnow() + timedelta(seconds=delay),
            "lease_until": None,
            "claim_token": None,
            "updated_at": utcnow(),
        }
        if not count:
            values["attempts"] = O.c.attempts - 1
        if error is not None:
            values["last_error"] = error.as_dict()
        if unknown_since is not None:
            values["unknown_since"] = unknown_since
        async with self.store.db.write() as conn:
            result = await conn.execute(O.update().where(held(job)).values(**values))
        if result.rowcount == 0:
            _lost(job, "rescheduling it")
        return bool(result.rowcount)

    async def fail(self, job: dict[str, Any], msg: dict[str, Any], exc: SendError) -> bool:
        """Fail the job and its message, with the error the app shows."""
        async with self.store.tx() as tx:
            result = await tx.conn.execute(
                O.update()
                .where(held(job))
                .values(state="failed", last_error=exc.as_dict(), lease_until=None, updated_at=utcnow())
            )
            if result.rowcount == 0:
                _lost(job, "failing it")
                return False
            await apply_status(tx, msg, MessageStatus.FAILED, utcnow(), exc.as_dict())
        return True
