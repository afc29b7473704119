"""Deliveries of notifications through notifiers: durable jobs, claimed with a lease, retried with
backoff across attempts (and restarts), until sent or given up.

A claim is a conditional update of the job's lease, so several hub processes share the table
without sending a delivery twice while its lease holds. Within one attempt a notifier retries on
its own (tenacity); a failed attempt is due again after ``backoff(attempts)``; after
``max_attempts`` (or a permanent ``NotifyError``) the job is ``failed`` with its last error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.events import Store
from hub.models import utcnow
from hub.notify.notifier import Device, Notification, Notifier, NotifyError, Recipient
from hub.worker import Worker

__all__ = ["DeliveryWorker", "backoff"]

log = logging.getLogger("hub.notify")
ND = schema.notification_deliveries
NT = schema.notifications
U = schema.users
D = schema.devices


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: 2, 4, 8 ... up to 15 minutes, with jitter."""
    base = float(min(2**attempts, 900))
    return base * random.uniform(0.8, 1.2)


class DeliveryWorker(Worker):
    task_name = "hub-notification-deliveries"

    def __init__(
        self,
        store: Store,
        notifiers: dict[str, Notifier],
        public_url: str,
        *,
        max_attempts: int = 8,
        lease: float = 120.0,
        concurrency: int = 16,
        interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.store = store
        self.notifiers = notifiers
        self.public_url = public_url
        self.max_attempts = max_attempts
        self.lease = lease
        self.concurrency = concurrency
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                done = await self.step()
            except Exception:
                log.exception("notification deliveries: a pass failed; trying again in %s s", self.interval)
                done = 0
            if not done:
                await self.idle(self.interval)

    async def step(self) -> int:
        """Claim and deliver the due jobs (at most ``concurrency`` at a time); how many."""
        now = utcnow()
        due = sa.and_(
            ND.c.state == "pending",
            ND.c.due_at <= now,
            sa.or_(ND.c.lease_until.is_(None), ND.c.lease_until < now),
        )
        async with self.store.db.read() as conn:
            ids = list(
                await conn.scalars(
                    sa.select(ND.c.id).where(due).order_by(ND.c.due_at).limit(self.concurrency)
                )
            )
        claimed = []
        for job_id in ids:
            async with self.store.db.write() as conn:
                res = await conn.execute(
                    ND.update()
                    .where(ND.c.id == job_id, due)
                    .values(lease_until=now + timedelta(seconds=self.lease))
                )
            if res.rowcount:
                claimed.append(job_id)
        await asyncio.gather(*(self._deliver(job_id) for job_id in claimed))
        return len(claimed)

    async def _deliver(self, job_id: int) -> None:
        async with self.store.db.read() as conn:
            job = (await conn.execute(sa.select(ND).where(ND.c.id == job_id))).mappings().one()
            note = (
                (await conn.execute(sa.select(NT).where(NT.c.id == job["notification_id"]))).mappings().one()
            )
            user = (await conn.execute(sa.select(U).where(U.c.id == note["user_id"]))).mappings().one()
            devices = (
                await conn.execute(
                    sa.select(D).where(D.c.user_id == user["id"], D.c.provider == job["notifier"])
                )
            ).mappings()
            device_list = [
                Device(id=d["id"], provider=d["provider"], token=d["token"], platform=d["platform"])
                for d in devices
            ]
        notifier = self.notifiers.get(job["notifier"])
        attempts = job["attempts"] + 1
        if notifier is None:
            await self._finish(
                job_id, attempts, "failed", f"the notifier {job['notifier']!r} is not configured"
            )
            return
        conv = note["conversation_id"]
        notification = Notification(
            id=note["id"],
            delivery_id=f"{note['id']}.{job['notifier']}",
            event=note["event"],
            title=note["title"],
            body=note["body"],
            conversation_id=conv,
            channel_id=note["channel_id"],
            url=f"{self.public_url}/api/v1/conversations/{conv}" if conv else None,
            data=note["data"] or {},
            created_at=note["created_at"],
            user=Recipient(id=user["id"], email=user["email"], name=user["name"]),
            devices=device_list,
        )
        try:
            await notifier.deliver(notification)
        except NotifyError as exc:
            await self._failed(job_id, attempts, exc.message, exc.retryable)
        except Exception as exc:  # a notifier's bug: retried, and logged with its name
            log.exception("notifier %r failed on delivery %s", job["notifier"], job_id)
            await self._failed(job_id, attempts, f"{type(exc).__name__}: {exc}", True)
        else:
            await self._finish(job_id, attempts, "sent", None)

    async def _failed(self, job_id: int, attempts: int, error: str, retryable: bool) -> None:
        if retryable and attempts < self.max_attempts:
            due = utcnow() + timedelta(seconds=backoff(attempts))
            await self._update(
                job_id, attempts=attempts, due_at=due, lease_until=None, last_error=error[:2000]
            )
            log.info(
                "notification delivery %s failed (attempt %d), again at %s: %s", job_id, attempts, due, error
            )
        else:
            await self._finish(job_id, attempts, "failed", error)
            log.warning("notification delivery %s given up after %d attempt(s): %s", job_id, attempts, error)

    async def _finish(self, job_id: int, attempts: int, state: str, error: str | None) -> None:
        await self._update(job_id, attempts=attempts, state=state, lease_until=None, last_error=error)

    async def _update(self, job_id: int, **values: Any) -> None:
        async with self.store.db.write() as conn:
            await conn.execute(ND.update().where(ND.c.id == job_id).values(updated_at=utcnow(), **values))
