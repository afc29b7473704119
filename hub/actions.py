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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints

from hub.access import Actor
from hub.bots.service import hand_over
from hub.channels import ChannelService
from hub.events import Store, Tx
from hub.limits import ATTRIBUTE_VALUE, Id, Label
from hub.models import utcnow
from hub.outbound import Draft, SendRefused, TxSendWriter, enqueue
from hub.services.conversations import access_conversation, apply_update
from hub.services.errors import Conflict, ServiceError
from hub.services.notes import add_note
from hub.services.quick_replies import QuickReplyService

__all__ = [
    "ActionContext",
    "ActionExecutor",
    "ActionResult",
    "ActionSpec",
    "ConversationRun",
]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    | HandOver,
    Field(discriminator="type"),
]
"""One action, by ``type``: send_text, send_quick_reply, add_label, remove_label, assign_agent,
assign_team, set_status, snooze, set_custom_attribute, add_note, hand_over."""


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
        return ActionResult(index, action.type, "done", None, data)

    async def _dispatch(self, ctx: ActionContext, action: ActionSpec) -> dict[str, Any]:
        if isinstance(action, SendText | SendQuickReply):
            return await self._send(ctx, action)
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

    async def _send(self, ctx: ActionContext, action: SendText | SendQuickReply) -> dict[str, Any]:
        ctx.actor.require("messages.send")
        if isinstance(action, SendQuickReply):
            text = await self.quick_replies.render(
                ctx.tx.conn, ctx.actor, action.quick_reply_id, ctx.conversation_id
            )
        else:
            await access_conversation(ctx.tx.conn, ctx.actor, ctx.conversation_id)
            text = action.text
        msg, _ = await enqueue(
            self.store,
            self.channels,
            ctx.conversation_id,
            {"id": ctx.actor.id[:32], "email": "", **dict(ctx.actor.user)},
            Draft(text=text),
            None,
            writer=TxSendWriter(ctx.tx),
        )
        ctx.sent.append(msg["id"])
        return {"message_id": msg["id"]}
