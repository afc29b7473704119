"""The event catalogue: each event type's ``data`` shape, selected by ``type``.

An app generated from ``/openapi.json`` (``EventPage.events``) or ``/asyncapi.json`` (the stream's
``event`` frame) gets one class per event type. Every type the hub emits must be here: with
``check_events`` on (the test suites turn it on) ``Tx.emit`` refuses a type that is missing or
data that does not match, so a new event type cannot ship undocumented.

Adding a type is one line in ``CATALOGUE``: its name and the pydantic model of its ``data``::

    "ticket.escalated": TicketOut,
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from hub.bots.models import BotDeleted, BotOut, HandedOver
from hub.models import Contact, Conversation, Message
from hub.web.schemas import (
    ActorRef,
    AttributeProblem,
    ChannelIdentity,
    ChannelMembersOut,
    ChannelOut,
    ContactOut,
    PresenceOut,
    RoleOut,
    TeamOut,
    UserOut,
)

__all__ = [
    "CATALOGUE",
    "AnyEvent",
    "EventPage",
    "EventTypeUnknown",
    "check_event",
    "event_adapter",
    "event_models",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Changed(_Strict):
    """Who made a change and which fields it changed."""

    changed: list[str] | None = Field(default=None, description="the fields this change set")
    by: ActorRef | None = Field(default=None, description="who made it (absent: the customer or provider)")


class ConversationChange(Conversation, Changed):
    """A conversation as it is after the change."""


class ContactChange(Contact, Changed):
    """A contact after the change; the contacts API's fields when the change came through it."""

    channel_identities: list[ChannelIdentity] | None = None
    labels: list[str] | None = None
    custom_attributes: dict[str, Any] | None = None
    attribute_problems: list[AttributeProblem] | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ContactMerged(_Strict):
    id: str = Field(description="the contact kept")
    merged_id: str = Field(description="the contact folded into it (deleted)")
    contact: ContactOut
    by: ActorRef


class ChannelDeleted(_Strict):
    id: str
    type: str
    deleted: Literal[True]


class ChannelMembersChange(ChannelMembersOut, Changed):
    pass


class TeamChange(TeamOut, Changed):
    pass


class TeamDeleted(_Strict):
    id: str
    deleted: Literal[True]
    by: ActorRef


class UserChange(UserOut, Changed):
    pass


class RoleChange(RoleOut, Changed):
    pass


class RoleDeleted(_Strict):
    name: str
    deleted: Literal[True]
    by: ActorRef


class AccessChanged(_Strict):
    user_ids: list[str] | None = Field(description="whose access changed; null: everyone's")
    reason: str = Field(description="what changed, e.g. deactivated, role, team, channel_members, logout")


class ConfigChanged(_Strict):
    """A configuration resource changed (hub.services.config): refetch it if your ETag differs."""

    resource: str = Field(
        description="the resource: labels, teams, custom_attributes, channels, business_hours, ..."
    )
    etag: str | None = Field(description="its new ETag (unquoted); null when it differs per user")
    user_id: str | None = Field(default=None, description="the one user it changed for, if so")
    user_ids: list[str] | None = Field(default=None, description="the users it changed for, if some")
    by: ActorRef | None = None


class ConversationRead(_Strict):
    """A user's read marker moved: only that user's streams receive it (their other devices)."""

    conversation_id: str
    user_id: str
    unread_count: int = Field(description="your unread count now: 0")
    read_count: int = Field(description="the conversation's inbound_count you have read up to")
    last_read_message_id: str | None
    read_at: datetime


class ResourceChanged(_Strict):
    """A configuration resource the app caches changed (quick replies, macros, preferences)."""

    resource: str = Field(description="quick_replies, macros or notification_preferences")
    etag: str | None = Field(description="its new ETag, or null: revalidate with If-None-Match")
    by: ActorRef
    user_id: str | None = Field(default=None, description="set when it concerns this user only")


class NoteOut(_Strict):
    """A private note on a conversation (never sent to the customer)."""

    id: str
    conversation_id: str
    channel_id: str
    author: ActorRef
    text: str
    mentions: list[str] = Field(description="the users it mentions")
    created_at: str
    by: ActorRef


class NotificationCreated(_Strict):
    """An in-app notification for one user (only that user receives this event)."""

    id: str
    user_id: str
    event: str = Field(description="conversation_created, assigned, new_message, mention or snooze_ended")
    title: str
    body: str | None
    conversation_id: str | None
    channel_id: str | None
    data: dict[str, Any]
    read_at: str | None
    created_at: str | None


class NotificationsRead(_Strict):
    """Notifications of one user marked read (only that user receives this event)."""

    user_id: str
    ids: list[str]
    read_at: str


class BotChange(BotOut):
    """A bot created or changed (never its token or signing secret)."""

    by: ActorRef


class BotRemoved(BotDeleted):
    by: ActorRef


# The catalogue: event type -> the model of its data. One line per type.
CATALOGUE: dict[str, Any] = {
    "message.created": Message,
    "message.updated": Message,
    "conversation.created": ConversationChange,
    "conversation.updated": ConversationChange,
    "conversation.read": ConversationRead,
    "contact.updated": ContactChange,
    "contact.merged": ContactMerged,
    "channel.updated": Union[ChannelOut, ChannelDeleted],  # noqa: UP007 (a runtime value)
    "channel.members_updated": ChannelMembersChange,
    "team.updated": Union[TeamChange, TeamDeleted],  # noqa: UP007
    "user.updated": UserChange,
    "role.updated": Union[RoleChange, RoleDeleted],  # noqa: UP007
    "access.changed": AccessChanged,
    "presence.updated": PresenceOut,
    "config.updated": Union[ConfigChanged, ResourceChanged],  # noqa: UP007
    "note.created": NoteOut,
    "notification.created": NotificationCreated,
    "notification.updated": NotificationsRead,
    "bot.updated": Union[BotChange, BotRemoved],  # noqa: UP007
    "conversation.handed_over": HandedOver,
}


class EventBase(_Strict):
    seq: int = Field(description="the event's position in the log; only ever grows")
    channel_id: str | None = Field(description="the channel it belongs to (null: the organisation's)")
    conversation_id: str | None
    created_at: datetime


def _class_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type)) + "Event"


def event_models() -> dict[str, type[BaseModel]]:
    """One envelope model per type: ``{"seq", "type": <the type>, "data": <its model>, ...}``."""
    return {
        name: create_model(
            _class_name(name),
            __base__=EventBase,
            __doc__=f"A {name} event.",
            type=(Literal[name], ...),  # type: ignore[arg-type]  # a runtime literal
            data=(data, ...),
        )
        for name, data in CATALOGUE.items()
    }


_MODELS = event_models()
AnyEvent = Annotated[Union[tuple(_MODELS.values())], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)  # type: ignore[arg-type]
_DATA = {name: TypeAdapter(data) for name, data in CATALOGUE.items()}


class EventPage(_Strict):
    events: list[AnyEvent]  # type: ignore[valid-type]
    last_seq: int = Field(description="continue from here (after=last_seq), past events you may not see")
    has_more: bool


def event_adapter() -> TypeAdapter[Any]:
    """Validates a whole event (as ``GET /api/v1/events`` and the stream hand it out)."""
    return _ADAPTER


class EventTypeUnknown(ValueError):
    pass


def check_event(type_: str, data: Any) -> None:
    """Raise when ``type_`` is not in the catalogue or ``data`` does not match its schema (as JSON
    would carry it: the same check an app's generated client makes)."""
    adapter = _DATA.get(type_)
    if adapter is None:
        raise EventTypeUnknown(
            f"event type {type_!r} has no schema: add it to CATALOGUE in hub/web/event_catalogue.py"
        )
    try:
        adapter.validate_json(_dump(data))
    except ValidationError as exc:
        raise ValueError(f"{type_} event data does not match its schema in the catalogue: {exc}") from None


def _dump(data: Any) -> str:
    from hub.events import dump

    return dump(data)
