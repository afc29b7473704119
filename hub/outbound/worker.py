"""The outbox worker: claims due jobs under a lease, sends them, ``concurrency`` at a time, and
records what became of each. The sends of one conversation go out one at a time, in order: a job is
claimed only once every earlier job of its conversation is finished.

A worker that dies mid-send leaves a lease that expires, so another picks the job up; the
provider's message id is recorded in the transaction that marks the job done, and receipts that
arrived before it are applied then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.channel import Channel, HealthState
from hub.channels import ChannelService
from hub.errors import SendError, SendErrorClass
from hub.events import Store
from hub.metrics import Metrics
from hub.models import MessageStatus, SendReceipt, utcnow
from hub.outbound.load import Loaded, load, outbound_message
from hub.outbound.policy import on_send_error
from hub.outbound.record import Recorder
from hub.outbound.send import send_with_retries
from hub.ratelimit import limiter_for
from hub.worker import Worker

__all__ = ["OutboxWorker"]

log = logging.getLogger("hub.outbound")
O = schema.outbox  # noqa: E741
P = schema.pending_statuses


class OutboxWorker(Worker):
    """Claims due jobs and sends them, ``concurrency`` at a time.

    Each claim leases its jobs for ``lease`` seconds under a token of its own, and the lease is
    renewed every third of it while the send is in flight: only a dead (or stalled) process's lease
    runs out. Every write about a job is conditional on that token (``hub.outbound.record``). A job
    taken back from an expired lease may have reached the provider: on a channel with the
    ``client_reference`` capability the worker waits up to ``grace`` seconds for a status naming
    the message, and records the send from it instead of sending again.
    """

    task_name = "hub-outbox"

    def __init__(
        self,
        store: Store,
        channels: ChannelService,
        *,
        concurrency: int = 64,
        lease: float = 30.0,
        grace: float = 30.0,
        send_timeout: float = 30.0,
        max_attempts: int = 8,
        max_age: timedelta = timedelta(hours=24),
        quick_retries: int = 2,
        poll_interval: float = 1.0,
        linger: float = 0.02,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.metrics = metrics
        self.store = store
        self.channels = channels
        self.concurrency = concurrency
        self.lease = lease
        self.grace = grace
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.quick_retries = quick_retries
        self.poll_interval = poll_interval
        self.linger = linger
        # Shared by every process on PostgreSQL: together they keep the provider's limits.
        self.limiter = limiter_for(store.db)
        self._inflight: set[asyncio.Task[None]] = set()
        # Jobs this worker holds (id -> claim token): renewed, and never claimed back by itself.
        self._held: dict[int, str] = {}
        self._renewer: asyncio.Task[None] | None = None
        self.recorder = Recorder(store)
        self.sent = 0

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let sends in flight finish (up to ``grace`` s), then cancel the rest.

        Cancelling a send mid-call could leave a message the provider accepted but the hub never
        recorded, to be sent again after the lease expires; waiting avoids that on a normal stop.
        """
        await super().stop()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for t in list(self._inflight):
            t.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def start(self) -> None:
        await super().start()
        self._renewer = asyncio.create_task(self._renew_leases(), name="hub-outbox-leases")

    async def _renew_leases(self) -> None:
        """Every third of the lease, extend the leases of the jobs whose sends are in flight."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing outbox leases failed; retrying in %.0f s", self.lease / 3)

    async def renew(self) -> int:
        """Extend the lease of every job held; returns how many are still held."""
        held = dict(self._held)
        if not held:
            return 0
        async with self.store.db.write() as conn:
            result = await conn.execute(
                O.update()
                .where(
                    O.c.id.in_(list(held)),
                    O.c.claim_token.in_(set(held.values())),
                    O.c.state == "inflight",
                )
                .values(lease_until=utcnow() + timedelta(seconds=self.lease))
            )
        return int(result.rowcount)

    async def run(self) -> None:
        while True:
            try:
                free = self.concurrency - len(self._inflight)
                jobs = await self.claim(free) if free > 0 else []
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming outbox jobs failed")
                jobs = []
            try:
                loaded = (
                    await load(self.store, [job["message_id"] for job in jobs], self._threaded())
                    if jobs
                    else {}
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loading claimed outbox jobs failed; each loads its own")
                loaded = {}
            for job in jobs:
                task = asyncio.create_task(self._deliver(job, loaded.get(job["message_id"])))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            # Either every slot is busy (a finished send wakes us) or nothing more is due now (new
            # work wakes us, and the poll catches jobs whose time came).
            await self.idle(self.poll_interval)
            if self._inflight and self.linger:
                # Sends are in flight, so this is a busy outbox: let new jobs gather for a moment
                # and claim them together. Woken by each agent's send, it claimed one or two jobs
                # at a time, paying a claim, a load and a commit per job (profiled: 4 ms of CPU a
                # send with the API busy, against 1.4 ms when the jobs came in batches). An idle
                # outbox claims at once, so a lone send never waits.
                await asyncio.sleep(self.linger)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        # Claim in batches: waking for every finished send makes a claim (a write transaction and
        # three loads) per job under load.
        if len(self._inflight) <= self.concurrency * 3 // 4:
            self.notify()

    def _threaded(self) -> set[str]:
        """The channels whose sends are threaded by earlier provider ids (email)."""
        return {cid for cid, inst in self.channels.instances.items() if inst.threaded}

    def _sendable_channels(self) -> list[str]:
        return [
            cid
            for cid, row in self.channels.rows.items()
            if cid in self.channels.instances and not row.get("send_paused")
        ]

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` due jobs (or jobs whose lease expired) and lease them to this worker."""
        active = self._sendable_channels()
        if not active or limit <= 0:
            return []
        now = utcnow()
        columns = (O.c.id, O.c.message_id, O.c.channel_id, O.c.attempts, O.c.created_at, O.c.unknown_since)
        # Two queries, each walking ix_outbox_state_due_at in order and stopping at the limit. One
        # query with an OR of both made SQLite read every due job and sort them for each claim: a
        # backlog of N jobs cost O(N) per claim (profiled as a third of the outbox's time).
        # A conversation's sends go out one at a time, in order: a job waits while an earlier job
        # of its conversation is pending (due later: a retry, a rate limit) or in flight, here or
        # in another process (that one's claim holds the row locked, or has committed it
        # inflight; either way this one sees it unfinished).
        earlier = O.alias("earlier")
        first_of_conversation = ~sa.exists().where(
            earlier.c.conversation_id == O.c.conversation_id,
            earlier.c.state.in_(("pending", "inflight")),
            earlier.c.id < O.c.id,
        )
        due = (
            sa.select(*columns)
            .where(
                O.c.state == "pending",
                O.c.due_at <= now,
                O.c.channel_id.in_(active),
                first_of_conversation,
            )
            .order_by(O.c.due_at, O.c.id)
            .limit(limit)
        )
        expired = (
            sa.select(*columns)
            .where(
                O.c.state == "inflight",
                O.c.lease_until < now,
                O.c.channel_id.in_(active),
                # A lease of this worker's own that ran out (the database stalled past it) is
                # not taken back: its send is still in flight here.
                O.c.id.not_in(list(self._held)),
                first_of_conversation,
            )
            .order_by(O.c.due_at, O.c.id)
            .limit(limit)
        )
        if not self.store.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
            expired = expired.with_for_update(skip_locked=True)
        token = secrets.token_hex(16)
        async with self.store.db.write() as conn:
            # Jobs whose lease ran out first: they have waited longest. Their process died (or
            # stalled) mid-send, so whether the provider got the message is unknown.
            taken_back = [
                {**r, "unknown_since": r["unknown_since"] or now}
                for r in (await conn.execute(expired)).mappings()
            ]
            rows = list(taken_back)
            if len(rows) < limit:
                rows += [dict(r) for r in (await conn.execute(due.limit(limit - len(rows)))).mappings()]
            if rows:
                await conn.execute(
                    O.update()
                    .where(O.c.id.in_([r["id"] for r in rows]))
                    .values(
                        state="inflight",
                        lease_until=now + timedelta(seconds=self.lease),
                        claim_token=token,
                        attempts=O.c.attempts + 1,
                        updated_at=now,
                    )
                )
            if taken_back:
                await conn.execute(
                    O.update()
                    .where(O.c.id.in_([r["id"] for r in taken_back]), O.c.unknown_since.is_(None))
                    .values(unknown_since=now)
                )
        for r in rows:
            r["claim_token"] = token
            self._held[r["id"]] = token
        return rows

    async def _deliver(self, job: dict[str, Any], loaded: Loaded | None) -> None:
        try:
            await self.deliver(job, loaded)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox job %s crashed; it is retried when its lease expires", job["id"])
        finally:
            self._held.pop(job["id"], None)

    async def deliver(self, job: dict[str, Any], loaded: Loaded | None = None) -> None:
        channel = self.channels.get(job["channel_id"])
        msg, conv, ids = (
            loaded or (await load(self.store, [job["message_id"]], self._threaded()))[job["message_id"]]
        )
        if msg["status"] != MessageStatus.QUEUED.value:
            await self.recorder.finish(job, "done")  # sent before a crash, or cancelled meanwhile
            return
        if channel is None:
            await self.recorder.reschedule(job, 30.0, None, count=False)
            return
        if job.get("unknown_since") is not None and channel.capabilities.client_reference:
            if await self._await_reference(job, msg):
                return
        out = outbound_message(msg, conv, ids)
        now = utcnow()
        window = channel.reply_window(conv["last_inbound_at"], now)
        if not window.permits(out.kind):
            closed = SendError(
                SendErrorClass.NEEDS_TEMPLATE,
                "the customer-service window is closed: only a template can be sent now"
                if window.outside == "template"
                else "the reply window is closed: the customer has to write first",
                title="Reply window closed",
            )
            await self.recorder.fail(job, msg, closed)
            return
        limits = channel.rate_limits(out)
        wait = await self.limiter.acquire(limits, max_wait=2.0)
        if wait > 0:
            await self.recorder.reschedule(job, wait, None, count=False)
            return
        try:
            receipt = await send_with_retries(
                channel, out, quick_retries=self.quick_retries, per_try=self.send_timeout
            )
        except SendError as exc:
            self._count(channel, exc.error_class.value)
            await self._on_error(job, msg, exc, limits)
            return
        except Exception as exc:  # a plugin bug: keep the message, retry later
            log.exception("channel %s send raised %s", job["channel_id"], type(exc).__name__)
            await self._on_error(
                job, msg, SendError(SendErrorClass.RETRYABLE, f"plugin error: {type(exc).__name__}"), limits
            )
            return
        await self.recorder.sent(job, msg, receipt)
        self._count(channel, "sent")
        self.channels.report_health(job["channel_id"], HealthState.OK, None)
        self.sent += 1

    async def _await_reference(self, job: dict[str, Any], msg: dict[str, Any]) -> bool:
        """For a send of unknown outcome: record it from a status that names the message, or wait
        out the rest of the grace period for one. False when the grace is over: send again."""
        async with self.store.db.read() as conn:
            external_id = await conn.scalar(
                sa.select(P.c.external_id)
                .where(
                    P.c.channel_id == job["channel_id"],
                    P.c.update["client_ref"].as_string() == msg["id"],
                )
                .limit(1)
            )
        if external_id is not None:
            log.info(
                "message %s reached the provider before a crash (status for %s); not sent again",
                msg["id"],
                external_id,
            )
            await self.recorder.sent(job, msg, SendReceipt(external_id=external_id))
            return True
        remaining = (job["unknown_since"] + timedelta(seconds=self.grace) - utcnow()).total_seconds()
        if remaining > 0:
            await self.recorder.reschedule(job, min(remaining, 1.0), None, count=False)
            return True
        log.info(
            "no status named message %s within %.0f s of a crash; sending it again", msg["id"], self.grace
        )
        return False

    def _count(self, channel: Channel, result: str) -> None:
        if self.metrics is not None:
            self.metrics.sends.labels(channel.type_name, result).inc()

    async def _on_error(
        self, job: dict[str, Any], msg: dict[str, Any], exc: SendError, limits: list[Any]
    ) -> None:
        outcome = on_send_error(
            exc,
            attempts=job["attempts"],
            age=utcnow() - job["created_at"],
            limit_keys=[lim.key for lim in limits],
            max_attempts=self.max_attempts,
            max_age=self.max_age,
        )
        cid = job["channel_id"]
        for key in outcome.penalize:
            await self.limiter.block(key, outcome.delay)
        if outcome.health is not None:
            self.channels.report_health(cid, outcome.health, exc.message)
        if outcome.action == "fail":
            await self.recorder.fail(job, msg, exc)
        elif outcome.action == "pause":
            await self.recorder.reschedule(job, 0.0, exc, count=False)
            await self.channels.set_send_paused(cid, True, exc.message)
        else:
            await self.recorder.reschedule(job, outcome.delay, exc, count=outcome.counts)
