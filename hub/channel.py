"""The ``Channel`` base class that every channel plugin subclasses, and the small types around it.

A plugin declares a subclass with a type name, a ``Settings`` model and a capability manifest, and
registers it from its ``hub_register_channels`` hook. The hub builds one instance per configured
channel (``Channel(channel_id, settings, context)``) and calls:

* ``verify_handshake(query)`` for ``GET /webhooks/{id}`` (subscription handshake);
* ``authenticate(body, headers)`` for every ``POST /webhooks/{id}`` before anything is stored;
* ``delivery_key(body, headers)`` to recognise a provider's retry of the same delivery;
* ``parse(raw)`` -> normalized events. **Pure**: no I/O, so fixtures test it and replays re-run it;
* ``send(message)`` -> ``SendReceipt`` or a classified ``SendError``;
* optionally ``fetch_media``, ``ingest`` and ``resync`` (pull channels), ``health_check``,
  ``reply_window``, ``rate_limits``, ``fetch_profile``, ``joins_thread`` and ``contact_for``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.errors import BadSignature
from hub.manifest import deprecated
from hub.models import (
    AttachmentKind,
    ContactRef,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    ParsedEvent,
    SendReceipt,
    utcnow,
)

__all__ = [
    "HEALTH_ACTIONS",
    "SECRET_SETTING_NAMES",
    "Capabilities",
    "Channel",
    "ChannelContext",
    "ChannelRegistrar",
    "ChannelSettings",
    "Health",
    "HealthState",
    "Inbox",
    "MediaContent",
    "RateLimit",
    "RawEvent",
    "ReplyWindow",
    "ReplyWindowPolicy",
    "constant_time_hmac_check",
]


SECRET_SETTING_NAMES = ("secret", "password", "access_token", "api_key", "private_key", "app_token")
"""Parts of a setting's name that say it holds a credential, which must then be a ``SecretStr``."""


# The SecretStr fields of each settings class (``ChannelSettings.secret_fields``).
_SECRET_FIELDS: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


class ChannelSettings(BaseModel):
    """Base of a channel's settings model.

    Unknown fields are refused when an admin writes settings (a typo must not pass silently); use
    ``SecretStr`` for credentials, which the hub encrypts at rest and never returns. Settings stored
    by an older plugin version stay readable after an upgrade: see ``load_stored``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @classmethod
    def load_stored(cls, data: Mapping[str, Any]) -> Self:
        """Validate settings read back from storage, dropping fields this version no longer knows."""
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        return cls.model_validate(known)

    @classmethod
    def secret_fields(cls) -> list[str]:
        """Names of the fields typed ``SecretStr`` (optional or not)."""
        names = _SECRET_FIELDS.get(cls)
        if names is None:  # a class's fields do not change: worked out once (every webhook asks)
            names = _SECRET_FIELDS[cls] = tuple(
                name
                for name, info in cls.model_fields.items()
                if info.annotation is SecretStr or SecretStr in getattr(info.annotation, "__args__", ())
            )
        return list(names)


class ReplyWindowPolicy(BaseModel):
    """When free-form replies are allowed. ``hours=None`` means always."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float | None = None
    outside: Literal["template", "tag", "none"] = "none"
    """What still goes out once the window closed: templates only, tagged messages, or nothing."""


class Capabilities(BaseModel):
    """What a channel can carry, published to the app and enforced on every outbound message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: bool = True
    max_text_length: int | None = None
    media: frozenset[AttachmentKind] = frozenset()
    max_attachment_bytes: dict[AttachmentKind, int] = Field(default_factory=dict)
    max_attachments: int = 1
    captions: bool = False
    reactions: bool = False
    templates: bool = False
    interactive: bool = False
    max_interactive_buttons: int = 3
    max_interactive_rows: int = 10
    replies: bool = False
    read_receipts: bool = False
    location: bool = False
    subject: bool = False
    client_reference: bool = False
    """``send`` passes ``OutboundMessage.id`` to the provider, and the provider's statuses carry it
    back (``StatusUpdate.client_ref``): after a crash mid-send the outbox waits for such a status
    instead of sending again."""
    reply_window: ReplyWindowPolicy = ReplyWindowPolicy()

    def sendable_kinds(self) -> set[MessageKind]:
        kinds: set[MessageKind] = set()
        if self.text:
            kinds.add(MessageKind.TEXT)
        kinds.update(MessageKind(k.value) for k in self.media)
        if self.templates:
            kinds.add(MessageKind.TEMPLATE)
        if self.interactive:
            kinds.add(MessageKind.INTERACTIVE)
        if self.reactions:
            kinds.add(MessageKind.REACTION)
        if self.location:
            kinds.add(MessageKind.LOCATION)
        if self.subject:
            kinds.add(MessageKind.EMAIL)
        return kinds


class HealthState(StrEnum):
    OK = "ok"
    CONNECTING = "connecting"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    PAUSED = "paused"
    UNKNOWN = "unknown"


HEALTH_ACTIONS: dict[HealthState, str] = {
    HealthState.OK: "Nothing to do.",
    HealthState.CONNECTING: "Wait: the hub is connecting to the provider.",
    HealthState.AUTH_FAILED: "Update the channel's credentials; sending is paused and the queue kept.",
    HealthState.RATE_LIMITED: "Wait: the provider is throttling this channel; messages stay queued.",
    HealthState.UNREACHABLE: "Check the provider's status and the network; the hub keeps retrying.",
    HealthState.PAUSED: "Enable the channel or fix its settings to resume.",
    HealthState.UNKNOWN: "Wait for the first contact with the provider.",
}


class Health(BaseModel):
    """One channel's health in the vocabulary shared by every channel."""

    state: HealthState = HealthState.UNKNOWN
    last_error: str | None = None
    since: datetime = Field(default_factory=utcnow)

    @property
    def action(self) -> str:
        return HEALTH_ACTIONS[self.state]

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "action": self.action,
            "last_error": self.last_error,
            "since": self.since.isoformat(),
        }


@dataclass(frozen=True)
class ReplyWindow:
    """Whether a conversation may get a free-form reply now, and until when."""

    open: bool
    closes_at: datetime | None = None
    outside: Literal["template", "tag", "none"] = "none"

    def permits(self, kind: MessageKind) -> bool:
        if self.open:
            return True
        if self.outside == "template":
            return kind is MessageKind.TEMPLATE
        return self.outside == "tag"


@dataclass(frozen=True)
class RateLimit:
    """A token bucket the outbox takes one token from before a send.

    ``key`` scopes it (``"number:123"``, ``"pair:123:456"``); ``rate`` is tokens per second and
    ``burst`` the bucket size. When a provider still throttles, the outbox backs off that key alone.
    """

    key: str
    rate: float
    burst: float = 1.0


@dataclass(frozen=True)
class RawEvent:
    """What reached the hub from a provider, exactly as it arrived (body bytes, lower-cased headers)."""

    channel_id: str
    """The id of the channel instance the delivery reached."""
    body: bytes
    """The request body, byte for byte (hash these bytes for signatures)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The request headers, names in lower case."""
    received_at: datetime = field(default_factory=utcnow)
    """When the hub received it (for display; parse must not depend on the clock)."""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class MediaContent:
    """Bytes fetched from a provider for one attachment.

    ``sha256_hex`` is the file's hex SHA-256 when the channel computed it already; left empty, the
    hub computes it in a worker thread (hashing megabytes on the event loop would stall it).
    """

    data: bytes
    """The file's bytes."""
    mime_type: str | None = None
    """Its MIME type, as the provider gave it."""
    filename: str | None = None
    """Its file name, when the provider gave one."""
    sha256_hex: str = ""
    """Hex SHA-256 of ``data``; computed when left empty."""


class Inbox(Protocol):
    """The durable inbox a pull channel's ingest loop hands raw items to."""

    async def put(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> bool:
        """Store one raw item durably; returns False when ``key`` was already stored.

        ``cursor=(name, value)`` is saved in the same transaction, so the item and the position
        after it are committed together and an outage is caught up exactly once.
        """
        ...

    async def get_cursor(self, name: str) -> str | None:
        """The value last saved for ``name`` on this channel, or None."""
        ...

    async def set_cursor(self, name: str, value: str) -> None:
        """Save a cursor value on its own (e.g. a new UIDVALIDITY with nothing to store)."""
        ...


class ChannelContext(Protocol):
    """What the hub lends a channel instance: the shared HTTP client, a logger, its health."""

    http: httpx.AsyncClient
    log: logging.Logger
    public_url: str

    def set_health(self, state: HealthState, error: str | None = None) -> None:
        """Report this channel's state; the hub records and publishes a change once."""
        ...


def constant_time_hmac_check(
    secret: bytes, body: bytes, signature_header: str | None, *, prefix: str = "sha256="
) -> None:
    """Check ``prefix`` + lower-case hex HMAC-SHA256 of the raw ``body``; raise ``BadSignature``.

    The digest is computed over the bytes as received, never over re-serialized JSON, and compared
    in constant time.
    """
    if not signature_header:
        raise BadSignature("signature header missing")
    if not signature_header.startswith(prefix):
        raise BadSignature(f"signature header must start with {prefix!r}")
    given = signature_header[len(prefix) :].strip().lower()
    if len(given) != 64 or any(c not in "0123456789abcdef" for c in given):
        raise BadSignature("signature is not a hex SHA-256 digest")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise BadSignature("signature does not match the body")


class Channel:
    """Base class of every channel type. Subclass it, set the class attributes, override methods.

    Class attributes:

    * ``type_name``: the unique type (``"whatsapp"``), lower case, used in config and the API;
    * ``display_name``: shown to admins;
    * ``Settings``: a ``ChannelSettings`` subclass;
    * ``capabilities``: a ``Capabilities`` manifest;
    * ``mode``: ``"push"`` (webhooks) or ``"pull"`` (an ``ingest`` loop);
    * ``webhook_fields``: settings that the admin copies into the provider's dashboard, shown
      beside the webhook URL (``("verify_token",)``);
    * ``threaded``: True when one contact can have several conversations on the channel, each a
      thread of its own (email): a message that joins no known thread through its
      ``thread_refs`` starts a new conversation, and the outbox fills ``OutboundMessage.thread_refs``
      with the conversation's provider ids, oldest first.
    """

    type_name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    capabilities: ClassVar[Capabilities] = Capabilities()
    mode: ClassVar[Literal["push", "pull"]] = "push"
    webhook_fields: ClassVar[tuple[str, ...]] = ()
    threaded: ClassVar[bool] = False

    def __init__(self, channel_id: str, settings: ChannelSettings, context: ChannelContext) -> None:
        self.channel_id = channel_id
        self.settings = settings
        self.context = context

    # ---- inbound -------------------------------------------------------------------------------

    def verify_handshake(self, query: Mapping[str, str]) -> str | None:
        """Answer a subscription handshake (``GET /webhooks/{id}``).

        Return the exact text to answer with 200, or None to refuse with 403. The default refuses.
        """
        return None

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise ``BadSignature`` unless the request is authentic. ``headers`` keys are lower case.

        The default accepts everything: override it for any channel whose provider signs requests.
        """

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        """A key equal for every copy of one provider delivery. The default hashes the body."""
        return hashlib.sha256(body).hexdigest()

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        """Turn one raw delivery into normalized events. Pure: no I/O, no clock, no randomness.

        Process every element of a batched payload. An element of an unknown type becomes an
        ``unsupported`` message (or is skipped with a log line), never an exception. Raise
        ``BadPayload`` only when the body as a whole cannot be read.
        """
        raise NotImplementedError

    # ---- outbound ------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Send one message; return the provider's receipt or raise a classified ``SendError``.

        Network failures and timeouts must surface as ``SendError(RETRYABLE)``.
        """
        raise NotImplementedError

    async def mark_read(self, external_id: str, contact: ContactRef) -> None:
        """Tell the provider an agent read an inbound message (read receipts). Optional."""

    def reply_window(self, last_inbound_at: datetime | None, now: datetime) -> ReplyWindow:
        """Whether a free-form reply is allowed now, from the channel's ``reply_window`` policy."""
        policy = self.capabilities.reply_window
        if policy.hours is None:
            return ReplyWindow(open=True)
        if last_inbound_at is None:
            return ReplyWindow(open=False, outside=policy.outside)
        closes = last_inbound_at + timedelta(hours=policy.hours)
        return ReplyWindow(open=now < closes, closes_at=closes, outside=policy.outside)

    def rate_limits(self, message: OutboundMessage) -> list[RateLimit]:
        """The token buckets a send of ``message`` draws from. The default: none."""
        return []

    # ---- optional ------------------------------------------------------------------------------

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        """Download one inbound attachment's bytes. Raise ``SendError`` (classified) on failure."""
        raise NotImplementedError

    async def ingest(self, inbox: Inbox) -> None:
        """Pull channels: run until cancelled, handing raw items to ``inbox``. Reconnect on errors."""
        raise NotImplementedError

    async def resync(self, inbox: Inbox, since: date) -> dict[str, int]:
        """Pull channels: fetch everything since ``since`` again into ``inbox`` (an admin's action).

        Items already stored are recognised by their key and count once. Returns counts for the
        admin (``{"found": n, "new": m}``); raise ``SendError`` (classified) when the provider fails.
        """
        raise NotImplementedError

    def joins_thread(self, conversation_subject: str | None, message: InboundMessage) -> bool:
        """Whether ``message`` belongs in the conversation its ``thread_refs`` found.

        Called only when a reference matched; ``conversation_subject`` is that conversation's
        subject. Return False to start a new conversation instead (email compares subjects so a
        reply that changed topic is not merged). The default: always join.
        """
        return True

    def contact_for(self, address: str, name: str | None = None) -> ContactRef:
        """The contact an agent addresses to start a conversation (an email address, a number).

        Raise ``ValueError`` with a message for the agent when ``address`` is not one this channel
        can reach. The default: the channel cannot start conversations.
        """
        raise NotImplementedError

    async def health_check(self) -> Health:
        """Ask the provider whether the credentials work. The default reports ``unknown``."""
        return Health(state=HealthState.UNKNOWN)

    async def fetch_profile(self, contact: ContactRef) -> ContactRef | None:
        """Look up a customer's name the webhook did not give (Messenger's user profile). Optional.

        The hub calls it after storing an inbound message from a contact without a name, once per
        contact and process, never before the message is published; return the contact with
        ``name`` set, or None. Cache what you fetched, and let a failure return None: it is logged
        and never holds a message back.
        """
        return None

    def setup_instructions(self, webhook_url: str) -> dict[str, str]:
        """What the admin copies into the provider's dashboard."""
        info = {"webhook_url": webhook_url} if self.mode == "push" else {}
        for name in self.webhook_fields:
            value = getattr(self.settings, name, None)
            if value is not None:
                info[name] = str(value)
        return info

    def secret_values(self) -> list[str]:
        """The values of this instance's ``SecretStr`` settings (for redaction; never log them)."""
        values = []
        for name in type(self.settings).secret_fields():
            value = getattr(self.settings, name, None)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values

    @classmethod
    def supports(cls, method: str) -> bool:
        """True when this channel type overrides the optional method ``method``."""
        return getattr(cls, method) is not getattr(Channel, method)


class ChannelRegistrar:
    """What ``hub_register_channels`` receives as ``register``: call ``register.add(ChannelSubclass)``.

    Calling it directly (``register(ChannelSubclass)``, the plugin API 1.0 form) still works, with a
    deprecation warning naming the plugin, until plugin API 2.0.
    """

    def __init__(self, add: Callable[[type[Channel]], None], plugin: str | None = None) -> None:
        self._add = add
        self.plugin = plugin
        """The name of the plugin whose hook holds this registrar."""
        self.deprecations: list[str] = []
        """Deprecated uses seen, each with what to do instead (``hub plugins`` shows them)."""

    def add(self, channel_cls: type[Channel]) -> None:
        """Validate and register one channel type.

        Raises ``PluginLoadError``, which stops the start-up, for an invalid class (type name,
        ``Settings`` model, capabilities) or a type name another plugin already registered.
        """
        self._add(channel_cls)

    def __call__(self, channel_cls: type[Channel]) -> None:
        if not self.deprecations:
            self.deprecations.append(
                deprecated(
                    self.plugin or channel_cls.__module__,
                    "register(ChannelClass) in hub_register_channels",
                    "call register.add(ChannelClass) instead",
                    since="1.1",
                    removed_in="2.0",
                )
            )
        self.add(channel_cls)
