"""Normalized models: the one shape every channel's traffic takes inside the hub and towards the app.

Two families live here:

* what a channel's pure ``parse`` returns (``InboundMessage``, ``StatusUpdate``, ``ReactionUpdate``,
  ``WatermarkUpdate``, ``MessageEdit``, ``MessageDeletion``): provider facts, keyed by provider ids;
* what the app sees (``Message``, ``Conversation``, ``Contact``, ``Event``): hub records, keyed by hub ids.

This module imports nothing else of the hub, so plugins and the core can both depend on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "STATUS_RANK",
    "Attachment",
    "AttachmentKind",
    "AttachmentState",
    "Contact",
    "ContactRef",
    "Conversation",
    "Direction",
    "Event",
    "InboundMessage",
    "InteractiveChoice",
    "Message",
    "MessageAttachment",
    "MessageDeletion",
    "MessageEdit",
    "MessageError",
    "MessageKind",
    "MessagePreview",
    "MessageRevision",
    "MessageStatus",
    "OutboundAttachment",
    "OutboundMessage",
    "ParsedEvent",
    "Reaction",
    "ReactionUpdate",
    "ReplyWindowView",
    "SendContext",
    "SendReceipt",
    "Sender",
    "StatusUpdate",
    "Template",
    "WatermarkUpdate",
    "status_advances",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    """An outbound message offering buttons or a list."""
    INTERACTIVE_REPLY = "interactive_reply"
    """The customer picked a button or list row (id and title kept in ``interactive``)."""
    TEMPLATE = "template"
    REACTION = "reaction"
    """Outbound only: an agent reacting to a message. Inbound reactions attach to their target."""
    ORDER = "order"
    SYSTEM = "system"
    EMAIL = "email"
    UNSUPPORTED = "unsupported"
    """A type the channel does not understand; the raw element is kept in ``data``."""


class AttachmentKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    STICKER = "sticker"


class AttachmentState(StrEnum):
    PENDING = "pending"
    """Known from the webhook, not fetched yet."""
    READY = "ready"
    FAILED = "failed"


class MessageStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    """A voice note or video was played (WhatsApp): read, and then some."""
    FAILED = "failed"


STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.RECEIVED: 0,
    MessageStatus.QUEUED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
    MessageStatus.FAILED: 5,
}


def status_advances(current: MessageStatus | str, new: MessageStatus | str) -> bool:
    """True when ``new`` moves a message forward: sent < delivered < read < played; failed is terminal.

    A ``failed`` receipt wins over sent/delivered (the provider gave up), never over ``read`` or
    ``played`` (the customer saw it), and nothing leaves ``failed``.
    """
    cur, nxt = MessageStatus(current), MessageStatus(new)
    if cur is MessageStatus.FAILED:
        return False
    if nxt is MessageStatus.FAILED:
        return STATUS_RANK[cur] < STATUS_RANK[MessageStatus.READ]
    return STATUS_RANK[nxt] > STATUS_RANK[cur]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------------------------------
# What channels produce (parse) and consume (send)
# --------------------------------------------------------------------------------------------------


class ContactRef(_Model):
    """Who a provider says a message is from (or to), in the provider's own ids.

    ``ids`` are this channel's identities for one person, most stable first, each namespaced by the
    plugin (``"wa:15551234567"``, ``"bsuid:US.1234"``, ``"psid:..."``, ``"email:ann@example.com"``).
    The hub merges them: a contact found by any id gains the others. Empty ids are refused, so a
    provider's empty ``wa_id`` can never create a contact.
    """

    ids: list[str] = Field(min_length=1)
    """This channel's ids for the person, namespaced by the plugin, most stable first; never empty."""
    name: str | None = None
    """The display name the provider gave."""
    phone: str | None = None
    """A phone number, E.164 where the provider gives one."""
    email: str | None = None
    """An email address."""

    @field_validator("ids")
    @classmethod
    def _no_empty_ids(cls, ids: list[str]) -> list[str]:
        cleaned = [i for i in ids if i and i.split(":", 1)[-1].strip()]
        if not cleaned:
            raise ValueError("a contact needs at least one non-empty id")
        return list(dict.fromkeys(cleaned))


class Attachment(_Model):
    """A file carried by a message. ``url`` is where the app downloads it (the hub's own URL)."""

    kind: AttachmentKind
    """``image``, ``audio``, ``video``, ``file`` or ``sticker``."""
    mime_type: str | None = None
    """The MIME type the provider gave."""
    filename: str | None = None
    """The file name the provider gave."""
    size: int | None = None
    """Size in bytes, when known."""
    caption: str | None = None
    """The caption under it."""
    url: str | None = None
    """Where the app downloads it: the hub's own URL, set by the hub once fetched."""
    external_id: str | None = Field(default=None, description="The provider's media id")
    source_url: str | None = Field(default=None, description="A provider URL to fetch from")
    sha256: str | None = Field(default=None, description="Hex digest when the provider gave one")
    state: AttachmentState = AttachmentState.PENDING
    """``pending`` until the hub fetched it, then ``ready`` or ``failed``."""
    voice: bool = False
    """A voice note (recorded in the chat), not an audio file."""
    animated: bool = False
    """An animated sticker."""
    content_id: str | None = Field(default=None, description="Inline part id (email cid:)")


class InteractiveChoice(_Model):
    """A button or list row: offered outbound, or picked inbound (``interactive_reply``)."""

    id: str
    """The id the channel sends back when the row or button is picked."""
    title: str
    """What the customer sees."""
    description: str | None = None
    """A second line under the title (list rows)."""


class Template(_Model):
    """A provider-approved template. ``components`` use the provider's documented shape."""

    name: str = Field(min_length=1)
    """The template's name as the provider approved it."""
    language: str = Field(min_length=1)
    """Its language code (``en_US``)."""
    components: list[dict[str, Any]] = Field(default_factory=list)
    """Parameters in the provider's documented shape."""


class InboundMessage(_Model):
    """One message as a provider reported it.

    ``direction`` is ``outbound`` for a channel's echoes of the business's own sends (Messenger
    ``is_echo``, mail found in Sent): the hub matches those to its pending message by
    ``external_id`` first, else records them as outbound (a message the business sent from another
    device, such as WhatsApp ``smb_message_echoes``); ``contact`` is then the customer it went to.
    ``external_id`` is unique per channel: a second message with the same id is a duplicate.
    ``thread_refs`` are provider ids of earlier messages this one belongs with (email In-Reply-To /
    References): the hub puts the message in the conversation of the first one it knows.
    ``thread_id`` is the provider's conversation id when one contact can have several conversations
    on a channel (a group chat, a Telegram chat id): conversations are keyed by it when given. ``cc``
    are the other people the message was addressed to besides the business (email To/Cc minus the
    channel's own address); the hub keeps a conversation's latest participants. ``data`` holds
    kind-specific detail (location, shared contacts, referral, order, and the raw element of an
    ``unsupported`` message).
    """

    type: Literal["message"] = "message"
    external_id: str = Field(min_length=1)
    """The provider's id of the message, unique per channel: a second message with it is a duplicate."""
    contact: ContactRef
    """Who sent it (for ``direction=outbound``, the customer it went to)."""
    direction: Direction = Direction.INBOUND
    """``inbound``, or ``outbound`` for the business's own message sent elsewhere (echoes)."""
    kind: MessageKind
    """What it is: ``text``, ``image``, ..., ``unsupported`` for a type the channel does not know."""
    text: str | None = None
    """The text, or the caption of a single attachment."""
    subject: str | None = None
    """The subject (email)."""
    attachments: list[Attachment] = Field(default_factory=list)
    """Files it carries, each fetched later with ``fetch_media``."""
    interactive: InteractiveChoice | None = None
    """The button or list row picked (``interactive_reply``)."""
    reply_to_external_id: str | None = None
    """The provider's id of the message it quotes or replies to."""
    thread_refs: list[str] = Field(default_factory=list)
    """Provider ids of earlier messages it belongs with (email In-Reply-To, References)."""
    thread_id: str | None = None
    """The provider's conversation id where one contact has several (a group chat)."""
    cc: list[ContactRef] = Field(default_factory=list)
    """Others it was addressed to besides the business (email To and Cc)."""
    forwarded: bool = False
    """The provider says it was forwarded."""
    outbound_id: str | None = Field(
        default=None,
        description="For an echo of a message the hub sent: the hub's OutboundMessage.id, as the "
        "provider carried it back (Messenger metadata). The hub then updates that message instead "
        "of recording a second one, even when the echo beats the send call's answer.",
    )
    timestamp: AwareDatetime
    """When the provider says it was sent (timezone-aware)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific detail (location, contacts, referral, order; the raw element when unsupported)."""


class StatusUpdate(_Model):
    """A delivery receipt for one message the business sent, by the provider's message id."""

    type: Literal["status"] = "status"
    external_id: str = Field(min_length=1)
    """The provider's id of the message the business sent."""
    status: Literal[
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.PLAYED,
        MessageStatus.FAILED,
    ]
    """The new delivery status; applied only if it moves the message forward."""
    timestamp: AwareDatetime
    """When the provider says it happened."""
    recipient: ContactRef | None = None
    """Who the message went to, when the provider says."""
    error: dict[str, Any] | None = Field(
        default=None, description="For failed: class, provider_code, title, message"
    )
    client_ref: str | None = Field(
        default=None,
        description="The hub's message id (OutboundMessage.id) when the provider echoes the "
        "reference the send carried (channels with the client_reference capability)",
    )
    data: dict[str, Any] = Field(default_factory=dict)
    """Provider detail worth keeping (pricing, conversation)."""


class WatermarkUpdate(_Model):
    """Everything sent to ``contact`` up to ``watermark`` reached ``status`` (Messenger delivery/read)."""

    type: Literal["watermark"] = "watermark"
    contact: ContactRef
    """The customer whose messages it covers."""
    status: Literal[MessageStatus.DELIVERED, MessageStatus.READ]
    """``delivered`` or ``read``."""
    watermark: AwareDatetime
    """Every message sent to ``contact`` up to this time reached ``status``."""
    external_ids: list[str] = Field(default_factory=list)
    """Provider ids the provider listed explicitly, if any."""


class ReactionUpdate(_Model):
    """A reaction set on (``emoji`` given) or removed from (``emoji`` None) a message by a contact."""

    type: Literal["reaction"] = "reaction"
    target_external_id: str = Field(min_length=1)
    """The provider's id of the message reacted to."""
    contact: ContactRef
    """Who reacted."""
    emoji: str | None = None
    """The emoji set; None when the reaction was removed."""
    timestamp: AwareDatetime
    """When the provider says it happened."""
    external_id: str | None = None
    """The reaction's own provider id, if it has one."""

    @field_validator("emoji")
    @classmethod
    def _empty_is_removal(cls, emoji: str | None) -> str | None:
        return emoji or None


class MessageEdit(_Model):
    """A message's content replaced by its author: ``target_external_id`` is the message edited.

    The hub keeps the previous content in the message's edit history and emits ``message.updated``.
    ``direction`` is ``outbound`` for an echo of the business's own edit. An edit that arrives before
    its target is kept and applied when the target arrives.
    """

    type: Literal["edit"] = "edit"
    target_external_id: str = Field(min_length=1)
    """The provider's id of the message edited."""
    external_id: str | None = Field(default=None, description="The edit's own provider id, if any")
    contact: ContactRef | None = None
    """Who edited it, when the provider says."""
    direction: Direction = Direction.INBOUND
    """``outbound`` for an echo of the business's own edit."""
    kind: MessageKind = MessageKind.TEXT
    """The kind of the new content."""
    text: str | None = None
    """The new text."""
    attachments: list[Attachment] = Field(default_factory=list)
    """The new attachments."""
    timestamp: AwareDatetime
    """When the provider says it was edited."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific detail of the new content."""


class MessageDeletion(_Model):
    """A message withdrawn by its author (WhatsApp revoke, Messenger unsend).

    The hub leaves a tombstone: ``deleted_at`` set, content no longer shown, ``message.updated``
    emitted. A deletion that arrives before its target is applied when the target arrives.
    """

    type: Literal["deletion"] = "deletion"
    target_external_id: str = Field(min_length=1)
    """The provider's id of the message withdrawn."""
    external_id: str | None = None
    """The deletion's own provider id, if it has one."""
    contact: ContactRef | None = None
    """Who withdrew it, when the provider says."""
    direction: Direction = Direction.INBOUND
    """``outbound`` for an echo of the business's own deletion."""
    timestamp: AwareDatetime
    """When the provider says it was withdrawn."""


ParsedEvent = Annotated[
    InboundMessage | StatusUpdate | WatermarkUpdate | ReactionUpdate | MessageEdit | MessageDeletion,
    Field(discriminator="type"),
]


class OutboundAttachment(_Model):
    """A file to send: by the provider's media id, by a public ``url``, or by bytes the hub stored."""

    kind: AttachmentKind
    """``image``, ``audio``, ``video``, ``file`` or ``sticker``."""
    url: str | None = None
    """A public URL the provider can fetch."""
    media_id: str | None = None
    """A media id the provider already holds."""
    path: str | None = Field(default=None, description="Local file the hub stored from an upload")
    mime_type: str | None = None
    """Its MIME type."""
    filename: str | None = None
    """Its file name."""
    size: int | None = None
    """Its size in bytes."""
    caption: str | None = None
    """The caption under it."""


class SendContext(_Model):
    """What the hub knows about the conversation a message goes to, for providers that need it.

    ``thread_id`` is the conversation's provider id (a group chat, a Telegram chat id: send there, not
    to the recipient privately); ``subject`` the conversation's subject; ``cc`` its participants
    besides the recipient (email To/Cc); ``last_inbound_at`` the customer's last message (window
    policies such as Messenger's ``messaging_type``); ``author`` who is sending (Messenger's
    ``HUMAN_AGENT`` tag is only for a human agent).
    """

    thread_id: str | None = None
    """The conversation's provider id: send there, not to the recipient privately."""
    subject: str | None = None
    """The conversation's subject."""
    cc: list[ContactRef] = Field(default_factory=list)
    """The conversation's other participants (email To and Cc)."""
    last_inbound_at: AwareDatetime | None = None
    """The customer's last message (reply-window policies)."""
    author: Literal["agent", "bot", "automation", "system"] = "agent"
    """Who is sending: ``agent``, ``bot``, ``automation`` or ``system``."""


class OutboundMessage(_Model):
    """One message for a channel to send, already validated against its capability manifest.

    ``id`` is the hub's message id; channels that let a client id travel with the send (and come back
    on echoes) use it so a crash mid-send cannot create a second message. ``thread_refs`` are the
    provider ids of earlier messages of the conversation (email References); ``context`` is the
    conversation's context (``SendContext``), filled by the outbox.
    """

    id: str
    """The hub's id of the message: send it as the provider's client reference where there is one."""
    channel_id: str
    """The channel instance sending it."""
    conversation_id: str
    """The hub's conversation."""
    recipient: ContactRef
    """Who it goes to, in this channel's ids."""
    kind: MessageKind
    """What to send; always one of the channel's capabilities."""
    text: str | None = None
    """The text (or the caption, with one attachment)."""
    subject: str | None = None
    """The subject (email)."""
    attachments: list[OutboundAttachment] = Field(default_factory=list)
    """Files to send."""
    template: Template | None = None
    """The template (``kind=template``)."""
    interactive: list[InteractiveChoice] = Field(default_factory=list)
    """Buttons or list rows offered (``kind=interactive``)."""
    interactive_header: str | None = None
    """A header above the buttons or list."""
    interactive_button: str | None = Field(default=None, description="List menu button label")
    reply_to_external_id: str | None = None
    """The provider's id of the message it replies to."""
    reaction_emoji: str | None = None
    """The emoji (``kind=reaction``; empty removes the reaction)."""
    preview_url: bool = False
    """Ask the provider to show a link preview."""
    thread_refs: list[str] = Field(default_factory=list)
    """Provider ids of earlier messages of the conversation (email References)."""
    context: SendContext = Field(default_factory=SendContext)
    """What the hub knows of the conversation (thread, subject, cc, window, author)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Anything else the agent's client passed for this channel."""


class SendReceipt(_Model):
    """What a successful send returns: the provider's id for the new message."""

    external_id: str = Field(min_length=1)
    """The provider's id of the new message (statuses and echoes refer to it)."""
    status: Literal[MessageStatus.SENT, MessageStatus.QUEUED] = MessageStatus.SENT
    """``sent``, or ``queued`` when the provider only accepted it for later."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Provider detail worth keeping with the message."""


# --------------------------------------------------------------------------------------------------
# What the app sees
# --------------------------------------------------------------------------------------------------


class _View(BaseModel):
    """What the app receives: exactly these fields (``additionalProperties: false`` in the
    documents), so an app generated from them is told of every field the hub sends."""

    model_config = ConfigDict(extra="forbid")


class Reaction(_View):
    emoji: str
    by: str = Field(description="contact id or user id")
    at: datetime


class Contact(_View):
    id: str
    channel_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    identities: list[str] = Field(default_factory=list)


class MessageAttachment(Attachment):
    """An attachment as the app sees it. An agent's upload carries its ``upload_id`` and the hub's
    download ``url``; a file sent by provider media id carries ``media_id``."""

    upload_id: str | None = Field(default=None, description="the upload it was sent from")
    media_id: str | None = Field(default=None, description="the provider media id it was sent by")


class MessageRevision(_View):
    """A message's content before an edit replaced it, kept in ``Message.edits``."""

    kind: MessageKind
    text: str | None = None
    attachments: list[MessageAttachment] = Field(default_factory=list)
    replaced_at: datetime


class Sender(_View):
    """Who wrote a message: the customer (``contact``), an agent (``user``), a bot or the hub."""

    type: str | None = Field(default=None, description="contact, user, bot, automation or system")
    id: str | None = Field(default=None, description="the contact's or user's id")
    name: str | None = None


class MessageError(BaseModel):
    """Why a message failed. Channels may add provider-specific fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    error_class: str | None = Field(
        default=None,
        alias="class",
        description="retryable, rate_limited, needs_template, auth, recipient, permanent",
    )
    message: str | None = Field(default=None, description="what to show the agent")
    provider_code: str | int | None = None
    title: str | None = None


class Message(_View):
    """A message as the app receives it, whatever the channel.

    ``edits`` holds earlier contents, oldest first, and ``edited_at`` the latest edit. A deleted
    message is a tombstone: ``deleted_at`` set, ``text`` and ``attachments`` emptied.
    """

    id: str
    conversation_id: str
    channel_id: str
    direction: Direction
    kind: MessageKind
    text: str | None = None
    subject: str | None = None
    attachments: list[MessageAttachment] = Field(default_factory=list)
    interactive: InteractiveChoice | None = None
    choices: list[InteractiveChoice] = Field(default_factory=list)
    template: Template | None = None
    reply_to_message_id: str | None = None
    forwarded: bool = False
    reactions: list[Reaction] = Field(default_factory=list)
    sender: Sender = Field(default_factory=Sender)
    status: MessageStatus
    status_at: dict[str, datetime] = Field(default_factory=dict)
    error: MessageError | None = Field(default=None, description="with status failed: why")
    external_id: str | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="what the channel kept of the provider's message (free-form)"
    )
    edits: list[MessageRevision] = Field(default_factory=list)
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class MessagePreview(_View):
    """A conversation's last message as a list shows it. A deleted message shows no text."""

    id: str
    kind: MessageKind
    direction: Direction
    text: str | None = Field(
        default=None, description="The start of its text (or of its first caption), at most 200 characters"
    )
    sender: dict[str, Any] = Field(default_factory=dict)
    status: MessageStatus
    attachments: int = Field(default=0, description="How many files it carries")
    deleted: bool = Field(default=False, description="The message was deleted: it shows no text")
    edited: bool = False
    created_at: datetime


class ReplyWindowView(_View):
    open: bool
    closes_at: datetime | None = None
    outside: Literal["template", "tag", "none"] = "none"


class Conversation(_View):
    id: str
    channel_id: str
    contact: Contact
    status: Literal["open", "pending", "resolved", "snoozed"] = "open"
    snoozed_until: datetime | None = Field(
        default=None, description="A snoozed conversation reopens then, or when the customer writes"
    )
    assignee_id: str | None = None
    team: str | None = Field(default=None, description="The id of the team it is assigned to")
    priority: Literal["low", "medium", "high", "urgent"] | None = None
    labels: list[str] = Field(default_factory=list, description="The names of its labels, in name order")
    custom_attributes: dict[str, Any] = Field(default_factory=dict)
    attribute_problems: list[dict[str, str]] | None = Field(
        default=None,
        description="API reads: stored custom attribute values today's definitions no longer accept "
        "({key, message}); the values are kept",
    )
    subject: str | None = None
    thread_id: str | None = Field(
        default=None, description="The provider's conversation id (a group chat), when it has one"
    )
    participants: list[ContactRef] = Field(
        default_factory=list, description="The latest other recipients besides the business (email To/Cc)"
    )
    last_message_at: datetime | None = None
    last_inbound_at: datetime | None = None
    reply_window: ReplyWindowView | None = Field(
        default=None, description="Whether a free-form reply may be sent now (single-conversation reads)"
    )
    last_message: MessagePreview | None = Field(
        default=None, description="The newest message, for the list's preview line"
    )
    inbound_count: int = Field(default=0, description="Messages the customer sent in it so far")
    unread_count: int | None = Field(
        default=None,
        description="Customer messages you have not read (per user). Null in events, which every "
        "reader receives: add the inbound message.created events to the count you last read, and "
        "take conversation.read as your own read marker",
    )
    last_read_at: datetime | None = Field(
        default=None, description="When you last marked it read (per user; null in events)"
    )
    created_at: datetime
    updated_at: datetime


class Event(BaseModel):
    """One entry of the event log the app replays and streams. ``seq`` only ever grows."""

    seq: int
    type: str
    channel_id: str | None = None
    conversation_id: str | None = None
    data: dict[str, Any]
    created_at: datetime
