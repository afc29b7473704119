"""The outbound pipeline: agent sends become a queued message plus an outbox job (one transaction),
and outbox workers deliver them.

Guarantees: the same ``Idempotency-Key`` never makes a second message; a job lives until it is
sent, failed for a stated reason, or cancelled; a worker that dies mid-send leaves a lease that
expires so another picks the job up; the provider's message id is recorded in the transaction
that marks the job done, and receipts that arrived before it are applied then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from hub import schema
from hub.channel import Channel, HealthState
from hub.channels import ChannelService
from hub.errors import SendError, SendErrorClass
from hub.events import Store, Tx
from hub.groupcommit import GroupCommit
from hub.limits import Id, LongText, Name, ShortText, Text, Url, bounded_json
from hub.metrics import Metrics
from hub.models import (
    AttachmentKind,
    ContactRef,
    InteractiveChoice,
    MessageKind,
    MessageStatus,
    OutboundAttachment,
    OutboundMessage,
    StatusUpdate,
    Template,
    utcnow,
)
from hub.ratelimit import RateLimiter
from hub.records import apply_status, message_dict, message_row
from hub.worker import Worker

__all__ = [
    "OutboundRejected",
    "OutboxWorker",
    "SendRequest",
    "cancel_channel_queue",
    "cancel_message",
    "enqueue",
    "retry_message",
    "write_sends",
]

log = logging.getLogger("hub.outbound")
M = schema.messages
O = schema.outbox  # noqa: E741


class OutboundRejected(Exception):
    """A send request the hub refuses (422/404/409); ``errors`` carry field paths."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AttachmentKind
    url: Url | None = None
    upload_id: Id | None = None
    media_id: Id | None = None
    filename: Annotated[str, StringConstraints(max_length=255)] | None = None
    mime_type: Name | None = None
    size: int | None = Field(default=None, ge=0, le=2**53)
    caption: Text | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentIn:
        if sum(x is not None for x in (self.url, self.upload_id, self.media_id)) != 1:
            raise ValueError("give exactly one of url, upload_id, media_id")
        return self


class ReactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: Id
    emoji: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="empty string removes the reaction"
    )


class ChoiceIn(InteractiveChoice):
    """An offered button or list row, bounded (providers cap them far lower: WhatsApp 20-72)."""

    id: Id
    title: Name
    description: ShortText | None = None


class TemplateIn(Template):
    """A template to send; ``components`` is the provider's free-form shape, bounded as a whole."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    language: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    components: Annotated[list[dict[str, Any]], Field(max_length=20), bounded_json(32 * 1024)] = Field(
        default_factory=list
    )


class InteractiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    header: ShortText | None = None
    button: Name | None = Field(default=None, description="list menu label; omit for reply buttons")
    choices: list[ChoiceIn] = Field(min_length=1, max_length=100)


class SendRequest(BaseModel):
    """``POST /api/v1/conversations/{id}/messages``: what an agent sends."""

    model_config = ConfigDict(extra="forbid")

    text: LongText | None = None
    subject: Text | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    template: TemplateIn | None = None
    interactive: InteractiveIn | None = None
    reaction: ReactionIn | None = None
    reply_to_message_id: Id | None = None
    preview_url: bool = False

    def kind(self) -> MessageKind:
        if self.reaction is not None:
            return MessageKind.REACTION
        if self.template is not None:
            return MessageKind.TEMPLATE
        if self.interactive is not None:
            return MessageKind.INTERACTIVE
        if self.attachments:
            return MessageKind(self.attachments[0].kind.value)
        return MessageKind.TEXT

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def check_capabilities(channel_cls: type[Channel], req: SendRequest) -> list[dict[str, Any]]:
    """What in ``req`` the channel cannot send, as field errors (empty when all is fine)."""
    caps = channel_cls.capabilities
    errs: list[dict[str, Any]] = []
    kind = req.kind()
    parts = [req.text, req.attachments, req.template, req.interactive, req.reaction]
    if not any(p for p in parts):
        return [
            {
                "field": "text",
                "message": "a message needs text, attachments, a template, interactive choices or a reaction",
            }
        ]
    if req.reaction is not None and any(p for p in parts[:4]):
        errs.append({"field": "reaction", "message": "a reaction is sent on its own"})
    if req.template is not None and (req.text or req.attachments or req.interactive):
        errs.append(
            {
                "field": "template",
                "message": "a template carries its own content; put parameters in template.components",
            }
        )
    if kind not in caps.sendable_kinds() and not (kind is MessageKind.TEXT and caps.subject):
        errs.append(
            {
                "field": _kind_field(kind),
                "message": f"channel type {channel_cls.type_name!r} cannot send {kind.value} messages",
            }
        )
    if req.text is not None:
        if not req.text.strip() and not req.attachments:
            errs.append({"field": "text", "message": "text is empty"})
        if caps.max_text_length and len(req.text) > caps.max_text_length:
            errs.append(
                {
                    "field": "text",
                    "message": f"text is {len(req.text)} characters; this channel "
                    f"allows {caps.max_text_length}",
                }
            )
    if len(req.attachments) > caps.max_attachments:
        errs.append({"field": "attachments", "message": f"at most {caps.max_attachments} attachment(s)"})
    for i, att in enumerate(req.attachments):
        if att.kind not in caps.media:
            errs.append(
                {
                    "field": f"attachments.{i}.kind",
                    "message": f"this channel cannot send {att.kind.value} attachments",
                }
            )
        limit = caps.max_attachment_bytes.get(att.kind)
        if limit and att.size and att.size > limit:
            errs.append(
                {
                    "field": f"attachments.{i}.size",
                    "message": f"{att.size} bytes is over this channel's {att.kind.value} limit of "
                    f"{limit} bytes",
                }
            )
        if att.caption and not caps.captions:
            errs.append({"field": f"attachments.{i}.caption", "message": "this channel has no captions"})
    if req.interactive is not None:
        n = len(req.interactive.choices)
        cap = caps.max_interactive_rows if req.interactive.button else caps.max_interactive_buttons
        if n > cap:
            errs.append({"field": "interactive.choices", "message": f"{n} choices; at most {cap}"})
    if req.reply_to_message_id and not caps.replies:
        errs.append({"field": "reply_to_message_id", "message": "this channel cannot quote a message"})
    if req.subject and not caps.subject:
        errs.append({"field": "subject", "message": "this channel has no subject line"})
    return errs


def _kind_field(kind: MessageKind) -> str:
    return {
        MessageKind.TEMPLATE: "template",
        MessageKind.INTERACTIVE: "interactive",
        MessageKind.REACTION: "reaction",
        MessageKind.TEXT: "text",
    }.get(kind, "attachments")


async def enqueue(
    store: Store,
    channels: ChannelService,
    conversation_id: str,
    author: dict[str, Any],
    req: SendRequest,
    idempotency_key: str | None,
    uploads: dict[str, dict[str, Any]] | None = None,
    writer: GroupCommit[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store the message (queued) and its outbox job. Returns (message, created).

    ``writer`` (``send_writer(store)``) commits concurrent sends together; without it each send
    is its own transaction.
    """
    fingerprint = req.fingerprint()
    for attempt in range(2):
        try:
            return await _enqueue_once(
                store,
                channels,
                conversation_id,
                author,
                req,
                idempotency_key,
                fingerprint,
                uploads or {},
                writer or GroupCommit(store, write_sends),
            )
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its message.
            if attempt or not idempotency_key:
                raise
    raise AssertionError("unreachable")


# Built once: constructing a statement and its cache key cost as much as running it (measured).
_BY_IDEMPOTENCY_KEY = sa.select(M).where(
    M.c.author_id == sa.bindparam("author_id"), M.c.idempotency_key == sa.bindparam("key")
)
_TARGET = sa.select(M.c.external_id, M.c.conversation_id).where(M.c.id == sa.bindparam("id"))


async def _read_one(store: Store, statement: Any, params: dict[str, Any]) -> Any:
    async with store.db.read() as conn:
        return (await conn.execute(statement, params)).mappings().first()


async def _enqueue_once(
    store: Store,
    channels: ChannelService,
    conversation_id: str,
    author: dict[str, Any],
    req: SendRequest,
    key: str | None,
    fingerprint: str,
    uploads: dict[str, dict[str, Any]],
    writer: GroupCommit[dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    # Reads and validation first, outside the write transaction: on SQLite writers queue on one
    # lock, so it must be held for the writes alone. A plain text send reads nothing here (the
    # conversation's channel is cached). A concurrent request with the same key loses
    # the insert to the unique constraint, and `enqueue` answers it with the winner's message.
    if key:
        prior = await _read_one(store, _BY_IDEMPOTENCY_KEY, {"author_id": author["id"], "key": key})
        if prior is not None:
            if prior["request_hash"] != fingerprint or prior["conversation_id"] != conversation_id:
                raise OutboundRejected(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different message; use a new key",
                )
            return message_dict(prior), False
    channel_id = await channels.channel_of(conversation_id)
    if channel_id is None:
        raise OutboundRejected(404, "not_found", f"conversation {conversation_id} does not exist")
    row = channels.rows.get(channel_id)
    cls = channels.registry.get(row["type"]) if row else None
    if row is None or cls is None or not row["enabled"]:
        raise OutboundRejected(
            409,
            "channel_inactive",
            "the conversation's channel is disabled or its plugin is not installed",
        )
    errors = check_capabilities(cls, req)
    reply_ext = None
    if req.reply_to_message_id or req.reaction:
        target_id = req.reaction.message_id if req.reaction else req.reply_to_message_id
        target = await _read_one(store, _TARGET, {"id": target_id})
        field = "reaction.message_id" if req.reaction else "reply_to_message_id"
        if target is None or target["conversation_id"] != conversation_id:
            errors.append({"field": field, "message": "no such message in this conversation"})
        elif not target["external_id"]:
            errors.append({"field": field, "message": "that message has no provider id yet"})
        else:
            reply_ext = target["external_id"]
    attachments = []
    for i, att in enumerate(req.attachments):
        entry = att.model_dump(mode="json", exclude_none=True)
        if att.upload_id:
            up = uploads.get(att.upload_id)
            if up is None:
                errors.append({"field": f"attachments.{i}.upload_id", "message": "unknown upload"})
                continue
            entry.update({k: up[k] for k in ("size", "mime_type", "filename", "path") if up.get(k)})
            limit = cls.capabilities.max_attachment_bytes.get(att.kind)
            if limit and up["size"] > limit:
                errors.append(
                    {
                        "field": f"attachments.{i}.upload_id",
                        "message": f"{up['size']} bytes "
                        f"is over this channel's {att.kind.value} limit of {limit} bytes",
                    }
                )
        attachments.append(entry)
    if errors:
        raise OutboundRejected(422, "validation_failed", "the message cannot be sent on this channel", errors)
    kind = req.kind()
    content = {
        "attachments": attachments,
        "choices": [c.model_dump(mode="json") for c in req.interactive.choices] if req.interactive else [],
        "interactive_meta": req.interactive.model_dump(mode="json", exclude={"choices"})
        if req.interactive
        else None,
        "template": req.template.model_dump(mode="json") if req.template else None,
        "subject": req.subject,
        "preview_url": req.preview_url,
        "reaction": req.reaction.model_dump(mode="json") if req.reaction else None,
        "data": {},
    }
    text = req.interactive.body if req.interactive else (req.reaction.emoji if req.reaction else req.text)
    now = utcnow()
    msg = message_row(
        {
            "conversation_id": conversation_id,
            "channel_id": channel_id,
            "direction": "outbound",
            "kind": kind.value,
            "text": text,
            "content": content,
            "reply_to_message_id": None if req.reaction else req.reply_to_message_id,
            "reply_to_external_id": reply_ext,
            "sender": {"type": "user", "id": author["id"], "name": author.get("name") or author["email"]},
            "status": MessageStatus.QUEUED.value,
            "status_at": {"queued": now.isoformat()},
            "author_id": author["id"],
            "idempotency_key": key,
            "request_hash": fingerprint,
            "created_at": now,
        },
    )
    job = {
        "message_id": msg["id"],
        "channel_id": channel_id,
        "state": "pending",
        "attempts": 0,
        "due_at": now,
        "created_at": now,
        "updated_at": now,
    }
    await writer.submit({"message": msg, "job": job})
    return message_dict(msg), True


async def write_sends(tx: Tx, items: list[dict[str, Any]]) -> None:
    """Store agents' sends (message, outbox job, conversation clock, ``message.created``) in bulk."""
    msgs = [item["message"] for item in items]
    await tx.conn.execute(M.insert(), msgs)
    await tx.conn.execute(O.insert(), [item["job"] for item in items])
    await tx.conn.execute(
        schema.conversations.update()
        .where(schema.conversations.c.id == sa.bindparam("b_id"))
        .values(
            last_message_at=sa.bindparam("b_at", type_=schema.TS),
            updated_at=sa.bindparam("b_now", type_=schema.TS),
        ),
        [{"b_id": m["conversation_id"], "b_at": m["created_at"], "b_now": m["created_at"]} for m in msgs],
    )
    await tx.emit_many(
        [("message.created", message_dict(m), m["channel_id"], m["conversation_id"]) for m in msgs]
    )


async def retry_message(store: Store, message_id: str) -> dict[str, Any]:
    """An agent retries a failed outbound message: same message, new attempts."""
    async with store.tx() as tx:
        msg = (await tx.conn.execute(sa.select(M).where(M.c.id == message_id))).mappings().first()
        if msg is None:
            raise OutboundRejected(404, "not_found", f"message {message_id} does not exist")
        if msg["direction"] != "outbound" or msg["status"] != MessageStatus.FAILED.value:
            raise OutboundRejected(409, "not_retryable", "only a failed outbound message can be retried")
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
            raise OutboundRejected(404, "not_found", f"message {message_id} does not exist")
        job = (await tx.conn.execute(sa.select(O).where(O.c.message_id == message_id))).mappings().first()
        if msg["status"] != "queued" or job is None or job["state"] != "pending":
            raise OutboundRejected(
                409, "not_cancellable", "only a queued message not being sent can be cancelled"
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


async def _first_wait(state: RetryCallState) -> None:
    """The wait before the first retry (tenacity waits only between its own attempts)."""
    if state.attempt_number == 1:
        await asyncio.sleep(random.uniform(0, 0.2))


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SendError) and exc.error_class is SendErrorClass.RETRYABLE


class OutboxWorker(Worker):
    """Claims due jobs and sends them, ``concurrency`` at a time."""

    task_name = "hub-outbox"

    def __init__(
        self,
        store: Store,
        channels: ChannelService,
        *,
        concurrency: int = 64,
        lease: float = 60.0,
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
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.quick_retries = quick_retries
        self.poll_interval = poll_interval
        self.linger = linger
        self.limiter = RateLimiter()
        self._inflight: set[asyncio.Task[None]] = set()
        self._sent_writer: GroupCommit[tuple[dict[str, Any], dict[str, Any], str]] = GroupCommit(
            store, self._sent_many
        )
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
                loaded = await self._load([job["message_id"] for job in jobs]) if jobs else {}
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
        columns = (O.c.id, O.c.message_id, O.c.channel_id, O.c.attempts, O.c.created_at)
        # Two queries, each walking ix_outbox_state_due_at in order and stopping at the limit. One
        # query with an OR of both made SQLite read every due job and sort them for each claim: a
        # backlog of N jobs cost O(N) per claim (profiled as a third of the outbox's time).
        due = (
            sa.select(*columns)
            .where(O.c.state == "pending", O.c.due_at <= now, O.c.channel_id.in_(active))
            .order_by(O.c.due_at, O.c.id)
            .limit(limit)
        )
        expired = (
            sa.select(*columns)
            .where(O.c.state == "inflight", O.c.lease_until < now, O.c.channel_id.in_(active))
            .order_by(O.c.due_at, O.c.id)
            .limit(limit)
        )
        if not self.store.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
            expired = expired.with_for_update(skip_locked=True)
        async with self.store.db.write() as conn:
            # Jobs whose lease ran out first: they have waited longest.
            rows = list((await conn.execute(expired)).mappings().all())
            if len(rows) < limit:
                rows += (await conn.execute(due.limit(limit - len(rows)))).mappings().all()
            if rows:
                await conn.execute(
                    O.update()
                    .where(O.c.id.in_([r["id"] for r in rows]))
                    .values(
                        state="inflight",
                        lease_until=now + timedelta(seconds=self.lease),
                        attempts=O.c.attempts + 1,
                        updated_at=now,
                    )
                )
        return [dict(r) for r in rows]

    async def _deliver(
        self, job: dict[str, Any], loaded: tuple[dict[str, Any], dict[str, Any], list[str]] | None
    ) -> None:
        try:
            await self.deliver(job, loaded)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox job %s crashed; it is retried when its lease expires", job["id"])

    async def _load(
        self, message_ids: list[str]
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]]:
        """Each message with its conversation (contact inside) and the contact's ids: three queries."""
        async with self.store.db.read() as conn:
            msgs = {
                r["id"]: dict(r) for r in (await conn.execute(_MESSAGES, {"ids": message_ids})).mappings()
            }
            conv_ids = list({m["conversation_id"] for m in msgs.values()})
            convs = {}
            for r in (await conn.execute(_RECIPIENTS, {"ids": conv_ids})).mappings():
                convs[r["id"]] = {
                    "id": r["id"],
                    "contact_id": r["contact_id"],
                    "last_inbound_at": r["last_inbound_at"],
                    "contact": {
                        "id": r["contact_id"],
                        "name": r["name"],
                        "phone": r["phone"],
                        "email": r["email"],
                    },
                }
            contact_ids = list({c["contact_id"] for c in convs.values()})
            ids: dict[str, list[str]] = {}
            for identity, contact_id in await conn.execute(_IDENTITIES, {"ids": contact_ids}):
                ids.setdefault(contact_id, []).append(identity)
        return {
            mid: (msg, conv, ids.get(conv["contact_id"], []))
            for mid, msg in msgs.items()
            if (conv := convs.get(msg["conversation_id"])) is not None
        }

    async def deliver(
        self, job: dict[str, Any], loaded: tuple[dict[str, Any], dict[str, Any], list[str]] | None = None
    ) -> None:
        channel = self.channels.get(job["channel_id"])
        msg, conv, ids = loaded or (await self._load([job["message_id"]]))[job["message_id"]]
        if msg["status"] != MessageStatus.QUEUED.value:
            await self._finish(job, "done")  # sent before a crash, or cancelled meanwhile
            return
        if channel is None:
            await self._reschedule(job, 30.0, None, count=False)
            return
        out = self._outbound(msg, conv, ids)
        now = utcnow()
        window = channel.reply_window(conv["last_inbound_at"], now)
        if not window.permits(out.kind):
            closed = SendError(
                SendErrorClass.NEEDS_TEMPLATE,
                "the customer-service window is closed: only a template can be sent now",
                title="Reply window closed",
            )
            await self._fail(job, msg, closed)
            return
        limits = channel.rate_limits(out)
        wait = await self.limiter.acquire(limits, max_wait=2.0)
        if wait > 0:
            await self._reschedule(job, wait, None, count=False)
            return
        try:
            receipt = await self._send(channel, out)
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
        await self._record_sent(job, msg, receipt.external_id)
        self._count(channel, "sent")
        self.channels.report_health(job["channel_id"], HealthState.OK, None)
        self.sent += 1

    async def _send(self, channel: Channel, out: OutboundMessage) -> Any:
        """Send, with ``quick_retries`` jittered retries of a retryable failure inside this attempt.

        Most sends succeed the first time, so that try runs bare: tenacity's bookkeeping per call
        was a tenth of the outbox's CPU per send (profiled). A retryable failure enters tenacity.
        """
        try:
            return await self._send_once(channel, out)
        except SendError as exc:
            if not self.quick_retries or not _is_retryable(exc):
                raise
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.quick_retries),
            # Attempt n of these is try n + 1: its wait is drawn up to 0.2 * 2^n s, capped at 2 s.
            wait=wait_random_exponential(multiplier=0.4, max=2.0),
            retry=retry_if_exception(_is_retryable),
            before=_first_wait,
            reraise=True,
        ):
            with attempt:
                return await self._send_once(channel, out)
        raise AssertionError("unreachable")

    async def _send_once(self, channel: Channel, out: OutboundMessage) -> Any:
        try:
            # asyncio.timeout runs the send in this task; wait_for would start a task per send.
            async with asyncio.timeout(self.send_timeout):
                return await channel.send(out)
        except TimeoutError:
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"the provider did not answer within {self.send_timeout:.0f} s",
            ) from None

    def _outbound(self, msg: dict[str, Any], conv: dict[str, Any], ids: list[str]) -> OutboundMessage:
        content = msg["content"] or {}
        contact = conv["contact"]
        meta = content.get("interactive_meta") or {}
        reaction = content.get("reaction") or {}
        return OutboundMessage(
            id=msg["id"],
            channel_id=msg["channel_id"],
            conversation_id=msg["conversation_id"],
            recipient=ContactRef(
                ids=ids or [f"contact:{contact['id']}"],
                name=contact["name"],
                phone=contact["phone"],
                email=contact["email"],
            ),
            kind=MessageKind(msg["kind"]),
            text=meta.get("body") or (None if reaction else msg["text"]),
            subject=content.get("subject"),
            attachments=[
                OutboundAttachment(
                    kind=a["kind"],
                    url=a.get("url"),
                    media_id=a.get("media_id"),
                    path=a.get("path"),
                    mime_type=a.get("mime_type"),
                    filename=a.get("filename"),
                    size=a.get("size"),
                    caption=a.get("caption"),
                )
                for a in content.get("attachments", [])
            ],
            template=Template.model_validate(content["template"]) if content.get("template") else None,
            interactive=[InteractiveChoice.model_validate(c) for c in content.get("choices", [])],
            interactive_header=meta.get("header"),
            interactive_button=meta.get("button"),
            reply_to_external_id=msg["reply_to_external_id"],
            reaction_emoji=reaction.get("emoji") if reaction else None,
            preview_url=bool(content.get("preview_url")),
        )

    async def _record_sent(self, job: dict[str, Any], msg: dict[str, Any], external_id: str) -> None:
        """Record a send; sends that finish together are committed together."""
        await self._sent_writer.submit((job, msg, external_id))

    async def _sent_many(self, tx: Tx, items: list[tuple[dict[str, Any], dict[str, Any], str]]) -> None:
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

    async def _finish(self, job: dict[str, Any], state: str) -> None:
        async with self.store.db.write() as conn:
            await conn.execute(
                O.update()
                .where(O.c.id == job["id"])
                .values(state=state, lease_until=None, updated_at=utcnow())
            )

    async def _reschedule(
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

    async def _fail(self, job: dict[str, Any], msg: dict[str, Any], exc: SendError) -> None:
        async with self.store.tx() as tx:
            await tx.conn.execute(
                O.update()
                .where(O.c.id == job["id"])
                .values(state="failed", last_error=exc.as_dict(), lease_until=None, updated_at=utcnow())
            )
            await apply_status(tx, msg, MessageStatus.FAILED, utcnow(), exc.as_dict())

    def _count(self, channel: Channel, result: str) -> None:
        if self.metrics is not None:
            self.metrics.sends.labels(channel.type_name, result).inc()

    async def _on_error(
        self, job: dict[str, Any], msg: dict[str, Any], exc: SendError, limits: list[Any]
    ) -> None:
        cls = exc.error_class
        cid = job["channel_id"]
        age = utcnow() - job["created_at"]
        if cls is SendErrorClass.RATE_LIMITED:
            wait = exc.retry_after if exc.retry_after is not None else _backoff(job["attempts"])
            keys = [lim.key for lim in limits]
            scoped = (
                [k for k in keys if k.startswith("pair:")]
                if exc.scope == "recipient"
                else [k for k in keys if not k.startswith("pair:")]
            )
            for key in scoped or keys:
                self.limiter.penalize(key, wait)
            if exc.scope != "recipient":
                self.channels.report_health(cid, HealthState.RATE_LIMITED, exc.message)
            if age > self.max_age:
                await self._fail(job, msg, exc)
            else:
                await self._reschedule(job, wait, exc, count=False)
        elif cls is SendErrorClass.AUTH:
            await self._reschedule(job, 0.0, exc, count=False)
            await self.channels.set_send_paused(cid, True, exc.message)
        elif cls is SendErrorClass.RETRYABLE:
            if job["attempts"] >= self.max_attempts or age > self.max_age:
                await self._fail(job, msg, exc)
            else:
                self.channels.report_health(cid, HealthState.UNREACHABLE, exc.message)
                await self._reschedule(job, _backoff(job["attempts"]), exc, count=True)
        else:
            await self._fail(job, msg, exc)


# What the outbox reads for a batch of claimed jobs, built once (IN lists expand per call).
_MESSAGES = sa.select(M).where(M.c.id.in_(sa.bindparam("ids", expanding=True)))
_RECIPIENTS = (
    sa.select(
        schema.conversations.c.id,
        schema.conversations.c.contact_id,
        schema.conversations.c.last_inbound_at,
        schema.contacts.c.name,
        schema.contacts.c.phone,
        schema.contacts.c.email,
    )
    .join(schema.contacts, schema.contacts.c.id == schema.conversations.c.contact_id)
    .where(schema.conversations.c.id.in_(sa.bindparam("ids", expanding=True)))
)
_IDENTITIES = (
    sa.select(schema.contact_identities.c.identity, schema.contact_identities.c.contact_id)
    .where(schema.contact_identities.c.contact_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(schema.contact_identities.c.identity)
)


def _backoff(attempts: int) -> float:
    """Full-jitter exponential backoff: up to 2^attempts seconds, capped at 10 minutes."""
    return random.uniform(0.5, min(600.0, 2.0 ** max(attempts, 1)))
