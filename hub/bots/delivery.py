"""Delivering the conversation's events to its bot: in order per conversation, durable, retried.

Only the oldest pending delivery of each conversation is due, so a bot sees a conversation's
events in the log's order even across retries; conversations do not wait for each other. A claim
is a conditional update of the delivery's lease, so several hub processes share the table
without delivering one twice while its lease holds.

A webhook bot gets each event POSTed to its URL, signed (``hub.bots.signing``), within its
``timeout_seconds``; a connection refused is tried again at once a few times (tenacity), and a
failed attempt is due again after ``backoff(attempts)`` (durable: a restart keeps it). A built-in
bot's flow runs here (``hub.bots.flows``) and its replies are enqueued as the bot.

A bot that fails (timeouts, errors, refusals, ``max_attempts`` used up) hands the conversation
over (``hand_over``, trigger ``failure``) with a private note that says why, so no customer is
left talking to a bot that is not there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from hub import schema
from hub.automations.guard import automatic_reason, automatic_sent
from hub.bots.flows import Flow, respond
from hub.bots.service import BotService, bot_actor, hand_over
from hub.bots.signing import signed_headers
from hub.channel import Capabilities
from hub.channels import ChannelService
from hub.events import Store
from hub.models import utcnow
from hub.outbound import SendRefused, TxSendWriter, enqueue
from hub.worker import Worker

__all__ = ["RATE_LIMIT", "RATE_WINDOW", "BotDeliveryWorker", "BotFailed", "backoff"]

log = logging.getLogger("hub.bots")
B = schema.bots
BV = schema.bot_conversations
BD = schema.bot_deliveries


# A built-in bot's own budget: a menu flow answers at once, so it allows more than rules do.
RATE_LIMIT = 6
RATE_WINDOW = timedelta(minutes=1)


class BotFailed(Exception):
    """One attempt failed: ``retryable`` says whether another attempt may help."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: 1, 2, 4 ... up to 5 minutes, with jitter. Short at first:
    a customer is waiting for the bot's answer."""
    return float(min(2 ** max(attempts - 1, 0), 300)) * random.uniform(0.8, 1.2)


class BotDeliveryWorker(Worker):
    task_name = "hub-bot-deliveries"

    def __init__(
        self,
        store: Store,
        bots: BotService,
        channels: ChannelService,
        http: httpx.AsyncClient,
        *,
        on_sent: Callable[[], None] | None = None,
        lease: float = 120.0,
        concurrency: int = 16,
        interval: float = 1.0,
        connect_retries: int = 3,
    ) -> None:
        super().__init__()
        self.store = store
        self.bots = bots
        self.channels = channels
        self.http = http
        self.on_sent = on_sent
        self.lease = lease
        self.concurrency = concurrency
        self.interval = interval
        self.connect_retries = connect_retries

    async def run(self) -> None:
        while True:
            try:
                done = await self.step()
            except Exception:
                log.exception("bot deliveries: a pass failed; trying again in %s s", self.interval)
                done = 0
            if not done:
                await self.idle(self.interval)

    async def step(self) -> int:
        """Claim and deliver the due head of each conversation's queue; how many."""
        now = utcnow()
        free = sa.or_(BD.c.lease_until.is_(None), BD.c.lease_until < now)
        heads = sa.select(sa.func.min(BD.c.id)).where(BD.c.state == "pending").group_by(BD.c.conversation_id)
        async with self.store.db.read() as conn:
            ids = list(
                await conn.scalars(
                    sa.select(BD.c.id)
                    .where(BD.c.id.in_(heads), BD.c.due_at <= now, free)
                    .order_by(BD.c.due_at, BD.c.id)
                    .limit(self.concurrency)
                )
            )
        claimed = []
        for job_id in ids:
            async with self.store.db.write() as conn:
                res = await conn.execute(
                    BD.update()
                    .where(BD.c.id == job_id, BD.c.state == "pending", free)
                    .values(lease_until=now + timedelta(seconds=self.lease))
                )
            if res.rowcount:
                claimed.append(job_id)
        await asyncio.gather(*(self._deliver(job_id) for job_id in claimed))
        return len(claimed)

    async def _deliver(self, job_id: int) -> None:
        async with self.store.db.read() as conn:
            job = (await conn.execute(sa.select(BD).where(BD.c.id == job_id))).mappings().one()
            bot = (await conn.execute(sa.select(B).where(B.c.id == job["bot_id"]))).mappings().first()
            held = (
                (await conn.execute(sa.select(BV).where(BV.c.conversation_id == job["conversation_id"])))
                .mappings()
                .first()
            )
        if bot is None or held is None or held["state"] != "active" or held["bot_id"] != bot["id"]:
            await self._update(job_id, state="dropped", lease_until=None, last_error="no longer the bot's")
            return
        attempts = job["attempts"] + 1
        try:
            if bot["kind"] == "builtin":
                await self._run_flow(job, bot, held, attempts)
                return
            await self._post(job, bot, attempts)
        except BotFailed as exc:
            await self._failed(job, bot, attempts, exc)
        except Exception as exc:  # a bug of ours: retried, logged, and in the end handed over
            log.exception("bot %s: delivery %s failed", bot["id"], job_id)
            await self._failed(job, bot, attempts, BotFailed(f"{type(exc).__name__}: {exc}"))
        else:
            await self._update(
                job_id, state="delivered", attempts=attempts, lease_until=None, last_error=None
            )

    # ---- webhook bots ----------------------------------------------------------------------------

    async def _post(self, job: Any, bot: Any, attempts: int) -> None:
        body = json.dumps(
            {"delivery_id": job["id"], "bot_id": bot["id"], "attempt": attempts, "event": job["payload"]},
            separators=(",", ":"),
        ).encode()
        timeout = float(bot["timeout_seconds"])
        secret = self.bots.signing_secret(bot)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.connect_retries),
                wait=wait_fixed(0.2),
                retry=retry_if_exception_type(httpx.ConnectError),
                reraise=True,
            ):
                with attempt:
                    resp = await self.http.post(
                        bot["webhook_url"],
                        content=body,
                        headers=signed_headers(secret, job["id"], body),
                        timeout=httpx.Timeout(timeout),
                    )
        except httpx.TimeoutException:
            raise BotFailed(f"no answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise BotFailed(f"could not reach {bot['webhook_url']}: {type(exc).__name__}") from None
        if resp.is_success:
            return
        retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
        raise BotFailed(f"its webhook answered HTTP {resp.status_code}", retryable)

    # ---- built-in bots ---------------------------------------------------------------------------

    def _capabilities(self, channel_id: str | None) -> Capabilities:
        row = self.channels.rows.get(channel_id or "")
        cls = self.channels.registry.get(row["type"]) if row else None
        return cls.capabilities if cls is not None else Capabilities()

    async def _run_flow(self, job: Any, bot: Any, held: Any, attempts: int) -> None:
        event = job["payload"]
        cid = job["conversation_id"]
        data = event["data"]
        # A customer's message only: never the bot's own, another bot's, a rule's, an auto-reply
        # or a bounce (the loop guard every automatic sender shares).
        if (
            event["type"] != "message.created"
            or data.get("direction") != "inbound"
            or automatic_reason(data) is not None
        ):
            await self._update(job["id"], state="delivered", attempts=attempts, lease_until=None)
            return
        flow = Flow.model_validate(bot["flow"])
        step = respond(
            flow, dict(held["flow_state"] or {}), event["data"], self._capabilities(event["channel_id"])
        )
        state = dict(step.state)
        actor = bot_actor(bot, None)
        drafts: list[Any] = []
        reason = step.handoff
        try:
            async with self.store.tx() as tx:
                # Automatic messages of any sender (this bot, rules) count against one budget per
                # conversation; a flow that would pass it hands over to a person instead.
                recent = await automatic_sent(tx.conn, cid, utcnow() - RATE_WINDOW)
                if recent + len(step.drafts) > RATE_LIMIT:
                    reason = "the bot reached its limit of automatic messages in this conversation"
                else:
                    drafts = list(step.drafts)
                for draft in drafts:
                    await enqueue(
                        self.store,
                        self.channels,
                        cid,
                        dict(actor.user),
                        draft,
                        None,
                        writer=TxSendWriter(tx),
                    )
                moved = await tx.conn.execute(
                    BV.update()
                    .where(BV.c.conversation_id == cid, BV.c.state == "active")
                    .values(flow_state=state)
                )
                await tx.conn.execute(
                    BD.update()
                    .where(BD.c.id == job["id"])
                    .values(state="delivered", attempts=attempts, lease_until=None, updated_at=utcnow())
                )
                if moved.rowcount and reason:
                    await hand_over(
                        tx,
                        cid,
                        trigger="bot",
                        reason=reason,
                        by=actor.ref,
                        note=f"{bot['name']} handed over: {reason}.",
                    )
        except SendRefused as exc:
            raise BotFailed(f"its reply was refused: {exc.message}", retryable=False) from None
        if drafts and self.on_sent is not None:
            self.on_sent()

    # ---- failures ----------------------------------------------------------------------------------

    async def _failed(self, job: Any, bot: Any, attempts: int, exc: BotFailed) -> None:
        if exc.retryable and attempts < bot["max_attempts"]:
            due = utcnow() + timedelta(seconds=backoff(attempts))
            await self._update(
                job["id"], attempts=attempts, due_at=due, lease_until=None, last_error=exc.message
            )
            log.info(
                "bot %s: delivery %s failed (attempt %d), again at %s: %s",
                bot["id"],
                job["id"],
                attempts,
                due,
                exc.message,
            )
            return
        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        reason = f"the bot failed: {exc.message} ({tries})"
        note = (
            f"{bot['name']} handed this conversation over because it failed to take the "
            f"{job['payload']['type']} event: {exc.message} ({tries}). Please answer the customer."
        )
        async with self.store.tx() as tx:
            await tx.conn.execute(
                BD.update()
                .where(BD.c.id == job["id"])
                .values(
                    state="failed",
                    attempts=attempts,
                    lease_until=None,
                    last_error=exc.message,
                    updated_at=utcnow(),
                )
            )
            hub_ref = {"type": "system", "id": "bots", "name": None}
            await hand_over(
                tx, job["conversation_id"], trigger="failure", reason=reason, by=hub_ref, note=note
            )
        log.warning("bot %s handed over conversation %s: %s", bot["id"], job["conversation_id"], reason)

    async def _update(self, job_id: int, **values: Any) -> None:
        async with self.store.db.write() as conn:
            await conn.execute(BD.update().where(BD.c.id == job_id).values(updated_at=utcnow(), **values))
