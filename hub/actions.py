"""The action executor: an action spec becomes one service call on one conversation, with a result.

Macros run it (``hub.services.macros``); so can anything else that acts on conversations for
someone (an automation rule acting as ``rule:ID``). Every action goes through the same function
the API uses (``apply_update``, ``enqueue``, ``add_note``), inside the caller's transaction and as
the caller's ``Actor``, so permissions, scope and events are the API's own:

* ``ActionExecutor.apply(ctx, action, index)`` applies one action inside ``ctx.tx`` and returns an
  ``ActionResult`` (``done`` or ``failed`` with the reason). An action checks before it writes, so
  a failed one has written nothing and the caller may go on or roll back;
* ``ActionExecutor.run(actor, conversation_id, actions)`` applies a list all together in one
  transaction: the first failure rolls the others back (``rolled_back``; the rest ``skipped``).

Sends are enqueued inside the transaction (``TxSendWriter``); ``on_sent`` wakes the outbox once it
has committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from hub import schema
from hub.access import Actor
from hub.automations.registry import PLUGIN_ACTIONS, PluginActionType
from hub.bots.service import hand_over
from hub.channels import ChannelService
from hub.db import new_id
from hub.events import Store, Tx
from hub.limits import ATTRIBUTE_VALUE, Id, Label
from hub.models import utcnow
from hub.notify.service import notification_dict
from hub.outbound import Draft, SendRefused, TxSendWriter, enqueue
from hub.records import fetch_conversation
from hub.routing import route, route_to_team
from hub.services.conversations import access_conversation, apply_update
from hub.services.errors import Conflict, Invalid, ServiceError
from hub.services.notes import add_note
from hub.services.quick_replies import QuickReplyService

__all__ = [
    "PLUGIN_ACTIONS",
    "SEND_ACTIONS",
    "ActionContext",
    "ActionExecutor",
    "ActionResult",
    "ActionSpec",
    "ConversationRun",
    "PluginActionType",
    "post_signed",
]

_C = schema.conversations


class _Action(BaseModel):
    # Strict: JSON's types as the document says them ("5" is not a number of minutes).
    model_config = ConfigDict(extra="forbid", strict=True)


class SendText(_Action):
    type: Literal["send_text"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=65_536)]


class SendQuickReply(_Action):
    type: Literal["send_quick_reply"]
    quick_reply_id: Id


class AddLabel(_Action):
    type: Literal["add_label"]
    label: Label


class RemoveLabel(_Action):
    type: Literal["remove_label"]
    label: Label


class AssignAgent(_Action):
    type: Literal["assign_agent"]
    user_id: Id | None = Field(description="null unassigns")


class AssignTeam(_Action):
    type: Literal["assign_team"]
    team_id: Id | None = Field(description="null clears the team")


class SetStatus(_Action):
    type: Literal["set_status"]
    status: Literal["open", "pending", "resolved"]


class Snooze(_Action):
    type: Literal["snooze"]
    minutes: int = Field(ge=1, le=525_600, description="it reopens by itself after this long")


class SetAttribute(_Action):
    type: Literal["set_custom_attribute"]
    key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    # Strict: "42" stays a string, and a long string is refused rather than read as a number.
    value: (
        Annotated[str, StringConstraints(max_length=ATTRIBUTE_VALUE, strict=True)]
        | StrictInt
        | StrictFloat
        | StrictBool
        | None
    )


class AddNote(_Action):
    type: Literal["add_note"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=65_536)]
    mention_ids: list[Id] = Field(default_factory=list, max_length=50)


class SendTemplate(_Action):
    """A WhatsApp (or other channel's) approved template: the only message outside the window."""

    type: Literal["send_template"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    language: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=20)


class SetPriority(_Action):
    type: Literal["set_priority"]
    priority: Literal["none", "low", "medium", "high", "urgent"] | None = Field(description="null: none")


class AssignByPolicy(_Action):
    """Assign through the assignment policy (hub.routing): the team's when ``team_id`` is given,
    else the channel's; nobody eligible leaves it as it is."""

    type: Literal["assign_by_policy"]
    team_id: Id | None = None


# No spaces or controls, listed rather than written \s (engines disagree on \s; see hub.limits).
_URL_PATTERN = (
    r"^https?://[^\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
)


class CallWebhook(_Action):
    """POST the conversation (and what triggered the call) to ``url`` once the change commits,
    signed like the hub's webhook notifier: ``X-Hub-Signature-256: sha256=HMAC(secret,
    timestamp + "." + body)`` with ``X-Hub-Timestamp``."""

    type: Literal["call_webhook"]
    url: Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=_URL_PATTERN)]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] = Field(
        description="the signing secret (write-only: reads show it masked)"
    )


class NotifyUsers(_Action):
    """An in-app notification to each user (``notification.created``) about the conversation."""

    type: Literal["notify_users"]
    user_ids: list[Id] = Field(min_length=1, max_length=50)
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PluginAction(_Action):
    """An action a plugin registered (``hub_register_automation_actions``), by name."""

    type: Literal["plugin"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    settings: dict[str, Any] = Field(default_factory=dict)


class HandOver(_Action):
    """Take the conversation from its bot (``hub.bots``): it gets none of its events after this."""

    type: Literal["hand_over"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None, description="kept as a private note"
    )


ActionSpec = Annotated[
    SendText
    | SendQuickReply
    | AddLabel
    | RemoveLabel
    | AssignAgent
    | AssignTeam
    | SetStatus
    | Snooze
    | SetAttribute
    | AddNote
    | SendTemplate
    | SetPriority
    | AssignByPolicy
    | CallWebhook
    | NotifyUsers
    | PluginAction
    | HandOver,
    Field(discriminator="type"),
]
"""One action, by ``type``: send_text, send_quick_reply, send_template, add_label, remove_label,
assign_agent, assign_team, assign_by_policy, set_status, snooze, set_priority,
set_custom_attribute, add_note, call_webhook, notify_users, plugin, hand_over."""

SEND_ACTIONS = frozenset({"send_text", "send_quick_reply", "send_template"})


@dataclass
class ActionResult:
    index: int
    type: str
    status: Literal["done", "failed", "rolled_back", "skipped"]
    detail: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "status": self.status,
            "detail": self.detail,
            **self.data,
        }


@dataclass
class ActionContext:
    """One conversation being acted on: the caller's transaction and actor."""

    tx: Tx
    actor: Actor
    conversation_id: str
    sent: list[str] = field(default_factory=list)
    """Ids of the messages enqueued in ``tx`` (wake the outbox once it commits)."""
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Work that must wait until ``tx`` commits (a webhook call); the caller runs it."""


@dataclass
class ConversationRun:
    conversation_id: str
    status: Literal["done", "failed"]
    actions: list[ActionResult]

    def public(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "status": self.status,
            "actions": [a.public() for a in self.actions],
        }


class _RollBack(Exception):
    pass


class ActionExecutor:
    def __init__(
        self,
        store: Store,
        channels: ChannelService,
        quick_replies: QuickReplyService,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.quick_replies = quick_replies
        self.on_sent = on_sent

    async def run(self, actor: Actor, conversation_id: str, actions: Sequence[ActionSpec]) -> ConversationRun:
        """Apply ``actions`` in order, all together: one transaction for the conversation."""
        results: list[ActionResult] = []
        sent: list[str] = []
        try:
            async with self.store.tx() as tx:
                ctx = ActionContext(tx, actor, conversation_id)
                for index, action in enumerate(actions):
                    result = await self.apply(ctx, action, index)
                    results.append(result)
                    if result.status == "failed":
                        raise _RollBack
                sent = ctx.sent
                later = ctx.after_commit
        except _RollBack:
            for r in results[:-1]:
                r.status, r.detail = "rolled_back", "undone: a later action of the run failed"
            for index in range(len(results), len(actions)):
                results.append(
                    ActionResult(index, actions[index].type, "skipped", "not run: an earlier action failed")
                )
            return ConversationRun(conversation_id, "failed", results)
        if sent and self.on_sent is not None:
            self.on_sent()
        for work in later:
            spawn(work())
        return ConversationRun(conversation_id, "done", results)

    async def apply(self, ctx: ActionContext, action: ActionSpec, index: int) -> ActionResult:
        """Apply one action inside ``ctx.tx`` as ``ctx.actor``; a refusal is a ``failed`` result
        with the service's reason (nothing written)."""
        try:
            data = await self._dispatch(ctx, action)
        except ServiceError as exc:
            details = "".join(
                f"; {d['field']}: {d['message']}" for d in exc.details or [] if isinstance(d, dict)
            )
            return ActionResult(index, action.type, "failed", exc.message + details)
        except SendRefused as exc:
            details = "".join(f"; {e['field']}: {e['message']}" for e in exc.errors or [])
            return ActionResult(index, action.type, "failed", exc.message + details)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return ActionResult(index, action.type, "failed", f"invalid settings: {problems}")
        return ActionResult(index, action.type, "done", None, data)

    async def _dispatch(self, ctx: ActionContext, action: ActionSpec) -> dict[str, Any]:
        if isinstance(action, SendText | SendQuickReply | SendTemplate):
            return await self._send(ctx, action)
        if isinstance(action, AssignByPolicy):
            return await self._assign_by_policy(ctx, action)
        if isinstance(action, CallWebhook):
            return await self._webhook(ctx, action)
        if isinstance(action, NotifyUsers):
            return await self._notify(ctx, action)
        if isinstance(action, PluginAction):
            kind = PLUGIN_ACTIONS.get(action.name)
            if kind is None:
                raise Invalid("name", f"no installed plugin provides the action {action.name!r}")
            settings = kind.settings.model_validate(action.settings).model_dump(mode="json")
            return await kind.apply(ctx, settings)
        if isinstance(action, AddNote):
            note = await add_note(ctx.tx, ctx.actor, ctx.conversation_id, action.text, action.mention_ids)
            return {"note_id": note["id"]}
        if isinstance(action, HandOver):
            return await self._hand_over(ctx, action)
        conv = await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
        changes: dict[str, Any]
        if isinstance(action, AddLabel):
            changes = {"labels": [*conv["labels"], action.label]}
        elif isinstance(action, RemoveLabel):
            changes = {"labels": [x for x in conv["labels"] if x != action.label]}
        elif isinstance(action, AssignAgent):
            changes = {"assignee_id": action.user_id}
        elif isinstance(action, AssignTeam):
            changes = {"team": action.team_id}
        elif isinstance(action, SetStatus):
            changes = {"status": action.status}
        elif isinstance(action, Snooze):
            changes = {"status": "snoozed", "snoozed_until": utcnow() + timedelta(minutes=action.minutes)}
        elif isinstance(action, SetPriority):
            changes = {"priority": None if action.priority == "none" else action.priority}
        else:
            changes = {"custom_attributes": {**conv["custom_attributes"], action.key: action.value}}
        fresh = await apply_update(ctx.tx, ctx.actor, ctx.conversation_id, changes)
        return {"conversation": {k: fresh.get(k) for k in ("status", "assignee_id", "team", "labels")}}

    async def _hand_over(self, ctx: ActionContext, action: HandOver) -> dict[str, Any]:
        ctx.actor.require("conversations.update")
        await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
        trigger: Any = "bot" if ctx.actor.kind == "bot" else "agent"
        reason = action.reason or "taken over from the bot"
        event = await hand_over(
            ctx.tx,
            ctx.conversation_id,
            trigger=trigger,
            reason=reason,
            by=ctx.actor.ref,
            note=action.reason and f"Handed over: {action.reason}",
        )
        if event is None:
            raise Conflict("no bot holds this conversation")
        return {"handed_over": True}

    async def _send(
        self, ctx: ActionContext, action: SendText | SendQuickReply | SendTemplate
    ) -> dict[str, Any]:
        ctx.actor.require("messages.send")
        if isinstance(action, SendQuickReply):
            text = await self.quick_replies.render(
                ctx.tx.conn, ctx.actor, action.quick_reply_id, ctx.conversation_id
            )
            draft = Draft(text=text)
        elif isinstance(action, SendTemplate):
            await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
            draft = Draft.model_validate(
                {
                    "template": {
                        "name": action.name,
                        "language": action.language,
                        "components": action.components,
                    }
                }
            )
        else:
            await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
            draft = Draft(text=action.text)
        msg, _ = await enqueue(
            self.store,
            self.channels,
            ctx.conversation_id,
            {"id": ctx.actor.id[:32], "email": "", **dict(ctx.actor.user)},
            draft,
            None,
            writer=TxSendWriter(ctx.tx),
        )
        ctx.sent.append(msg["id"])
        return {"message_id": msg["id"]}

    async def _assign_by_policy(self, ctx: ActionContext, action: AssignByPolicy) -> dict[str, Any]:
        ctx.actor.require("conversations.assign")
        before = await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
        row = dict(
            (await ctx.tx.conn.execute(sa.select(_C).where(_C.c.id == ctx.conversation_id))).mappings().one()
        )
        if action.team_id is not None:
            known = await ctx.tx.conn.scalar(
                sa.select(schema.teams.c.id).where(schema.teams.c.id == action.team_id)
            )
            if known is None:
                raise Invalid("team_id", f"team {action.team_id} does not exist")
            await route_to_team(ctx.tx, row, action.team_id)
        else:
            row["assignee_id"] = None  # choose afresh, as for a new conversation
            await route(ctx.tx, [row])
        fresh = await fetch_conversation(ctx.tx.conn, ctx.conversation_id)
        assert fresh is not None
        changed = sorted(k for k in ("assignee_id", "team") if fresh[k] != before[k])
        if changed:
            await ctx.tx.emit(
                "conversation.updated",
                {**fresh, "changed": changed, "by": ctx.actor.ref},
                channel_id=fresh["channel_id"],
                conversation_id=ctx.conversation_id,
            )
        return {"assignee_id": fresh["assignee_id"], "team": fresh["team"], "changed": changed}

    async def _webhook(self, ctx: ActionContext, action: CallWebhook) -> dict[str, Any]:
        conv = await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
        body = json.dumps(
            {"type": "automation.webhook", "by": ctx.actor.ref, "conversation": conv},
            separators=(",", ":"),
            default=str,
        ).encode()

        async def call() -> None:
            await post_signed(action.url, action.secret, body)

        ctx.after_commit.append(call)
        return {"queued": True}

    async def _notify(self, ctx: ActionContext, action: NotifyUsers) -> dict[str, Any]:
        conv = await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
        U = schema.users
        known = set(
            (
                await ctx.tx.conn.execute(
                    sa.select(U.c.id).where(U.c.id.in_(action.user_ids), U.c.active.is_(True))
                )
            )
            .scalars()
            .all()
        )
        missing = [u for u in action.user_ids if u not in known]
        if missing:
            raise Invalid("user_ids", f"no active user {missing[0]}")
        now = utcnow()
        ids = []
        for user_id in dict.fromkeys(action.user_ids):
            row = {
                "id": new_id("ntf_"),
                "user_id": user_id,
                "event": "automation",
                "title": action.title,
                "body": None,
                "conversation_id": ctx.conversation_id,
                "channel_id": conv["channel_id"],
                "data": {"by": ctx.actor.ref},
                "in_app": True,
                "read_at": None,
                "created_at": now,
            }
            await ctx.tx.conn.execute(schema.notifications.insert().values(**row))
            await ctx.tx.emit("notification.created", notification_dict(row))
            ids.append(row["id"])
        return {"notification_ids": ids}


log = logging.getLogger("hub.actions")
_TASKS: set[asyncio.Task[None]] = set()


def spawn(work: Awaitable[None]) -> None:
    """Run after-commit work in the background (kept referenced until it ends)."""

    async def guarded() -> None:
        try:
            await work
        except Exception:
            log.exception("an action's after-commit work failed")

    task = asyncio.ensure_future(guarded())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def post_signed(url: str, secret: str, body: bytes, attempts: int = 3) -> int:
    """POST ``body`` signed with ``secret``; retried on errors and 5xx; the final status.
    Raises ``WebhookFailed`` when every attempt failed."""
    last = ""
    for attempt in range(attempts):
        timestamp = str(int(time.time()))
        signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Timestamp": timestamp,
            "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "hub-automations",
        }
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
                response = await client.post(url, content=body, headers=headers)
            if response.status_code < 500:
                if response.status_code >= 400:
                    raise WebhookFailed(f"{url} answered {response.status_code}")
                return response.status_code
            last = f"{url} answered {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{url}: {type(exc).__name__}"
        await asyncio.sleep(0.5 * 2**attempt)
    raise WebhookFailed(last)


class WebhookFailed(Exception):
    pass
