"""``FakeChannel``: a complete, deliberately simple channel for the hub's tests and as an example.

It has everything a real channel has (signed webhooks, a subscription handshake, batched payloads,
a pure parser, a classified ``send``) and no provider: sends are recorded, and failures are
scripted, so outbox tests can drive every ``SendErrorClass``.

Webhook format (``POST /webhooks/{channel_id}``, JSON, UTF-8)::

    {"events": [
      {"type": "message", "id": "m1", "from": "alice", "name": "Alice", "text": "hi",
       "ts": 1700000000, "reply_to": "m0",
       "attachment": {"kind": "image", "url": "https://...", "mime_type": "image/png",
                      "filename": "a.png", "caption": "look"}},
      {"type": "status", "id": "fake-out-42", "status": "delivered", "ts": 1700000001,
       "to": "alice", "error": {"code": 131, "title": "..."}},
      {"type": "reaction", "id": "r1", "target": "m1", "from": "alice", "emoji": "👍",
       "ts": 1700000002},
      {"type": "edit", "id": "e1", "target": "m1", "from": "alice", "text": "hi!", "ts": 1700000003},
      {"type": "delete", "id": "d1", "target": "m1", "from": "alice", "ts": 1700000004},
      {"type": "anything else", ...}
    ]}

* A message may also carry ``thread`` (its ``thread_id``), ``refs`` (``thread_refs``), ``cc`` (a
  list of senders, as ``from``) and ``direction`` (``outbound`` for the business's own message sent
  elsewhere; ``from`` is then the customer). An edit or delete may carry ``direction`` too; an
  edit may carry ``attachment`` as a message does.

* ``ts`` is Unix seconds (int, float or a string of digits); ``name``, ``reply_to``,
  ``attachment`` (its ``kind`` one of ``AttachmentKind``), ``to``, ``error`` and the reaction's
  ``id`` are optional; an empty or missing ``emoji`` removes a reaction.
* A message with ``attachment`` and no ``text`` has the attachment's kind, else it is ``text``.
* An element of another type, or a known type missing what it needs, becomes an ``unsupported``
  message that keeps the element in ``data["element"]``; when it names no sender it is skipped
  with a log line. A body that is not a JSON object with an ``events`` list is ``BadPayload``.
* Signature: header ``x-fake-signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed by the
  ``secret`` setting (see ``sign``). Delivery key: header ``x-fake-delivery`` when present, else
  the body's digest.
* Handshake: ``GET ?mode=subscribe&verify_token=<verify_token>&challenge=<text>`` answers
  ``<text>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from hub.channel import (
    Capabilities,
    Channel,
    ChannelRegistrar,
    ChannelSettings,
    Health,
    HealthState,
    MediaContent,
    RateLimit,
    RawEvent,
    constant_time_hmac_check,
)
from hub.errors import BadPayload, SendError, SendErrorClass
from hub.hookspecs import hookimpl
from hub.models import (
    Attachment,
    AttachmentKind,
    ContactRef,
    Direction,
    InboundMessage,
    MessageDeletion,
    MessageEdit,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    ParsedEvent,
    ReactionUpdate,
    SendReceipt,
    StatusUpdate,
)

__all__ = [
    "SIGNATURE_HEADER",
    "FakeChannel",
    "FakePlugin",
    "FakeSettings",
    "fake_plugin",
    "sign",
    "webhook_body",
]

log = logging.getLogger("hub.testing.fake_channel")

SIGNATURE_HEADER = "x-fake-signature"
DELIVERY_HEADER = "x-fake-delivery"

# What a scripted failure may be: a classified error, a class (a canned message is made up), or any
# other exception, raised where a real channel would call its provider and classified from there.
Scripted = SendError | SendErrorClass | str | BaseException


def sign(secret: str | bytes, body: bytes) -> dict[str, str]:
    """The headers a FakeChannel configured with ``secret`` accepts for ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return {SIGNATURE_HEADER: "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}


def webhook_body(*events: Mapping[str, Any]) -> bytes:
    """A webhook body carrying ``events``, non-ASCII kept as UTF-8 (as many providers send it)."""
    return json.dumps({"events": list(events)}, ensure_ascii=False).encode()


class FakeSettings(ChannelSettings):
    secret: SecretStr
    """Key of the webhook signature."""
    verify_token: str
    """What the subscription handshake must present."""
    fail_with: SendErrorClass | None = None
    """Every send fails with this class (an outage or revoked credentials that lasts)."""
    rate: float | None = None
    """Sends per second the outbox may make on this channel; None for no limit."""
    burst: float = 1.0
    latency: float = 0.0
    """Seconds each send takes, to test timeouts and concurrency."""
    api_base: str | None = None
    """A provider API to call (a ``FakeProvider``): ``send`` POSTs ``{api_base}/messages`` and
    ``health_check`` GETs ``{api_base}/me`` through the lent HTTP client. None: no provider calls."""


class FakeChannel(Channel):
    """A channel with no provider: sends are recorded in ``sent``, failures scripted.

    ``sent`` and the failure script belong to the class, because the hub builds instances itself;
    ``isolated()`` gives a subclass with its own, so tests never share them.
    """

    type_name: ClassVar[str] = "fake"
    display_name: ClassVar[str] = "Fake (tests)"
    Settings: ClassVar[type[ChannelSettings]] = FakeSettings
    capabilities: ClassVar[Capabilities] = Capabilities(
        text=True,
        max_text_length=4096,
        media=frozenset({AttachmentKind.IMAGE, AttachmentKind.FILE}),
        max_attachment_bytes={AttachmentKind.IMAGE: 5_000_000, AttachmentKind.FILE: 20_000_000},
        captions=True,
        reactions=True,
        templates=True,
        replies=True,
    )
    webhook_fields: ClassVar[tuple[str, ...]] = ("verify_token",)

    sent: ClassVar[list[OutboundMessage]] = []
    """Every message handed to ``send`` (including those that failed), in order."""
    _script: ClassVar[deque[Scripted]] = deque()

    settings: FakeSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, context: Any) -> None:
        super().__init__(channel_id, settings, context)
        self._health: HealthState | None = None

    # ---- test controls -------------------------------------------------------------------------

    @classmethod
    def isolated(cls) -> type[FakeChannel]:
        """A subclass (same type name) with its own ``sent`` list and failure script."""
        return type(cls.__name__, (cls,), {"sent": [], "_script": deque()})

    @classmethod
    def script_errors(cls, *failures: Scripted) -> None:
        """Make the next sends fail, one failure per send, in order.

        Each is a ``SendError`` (raised as is), a ``SendErrorClass`` or its value (raised with a
        canned message), or any other exception (``TimeoutError()``, ``httpx.ConnectError(...)``),
        raised where a provider call would be and classified the way a real channel must.
        """
        cls._script.extend(failures)

    @classmethod
    def reset(cls) -> None:
        cls.sent.clear()
        cls._script.clear()

    # ---- inbound -------------------------------------------------------------------------------

    def verify_handshake(self, query: Mapping[str, str]) -> str | None:
        token = query.get("verify_token", "")
        if query.get("mode") != "subscribe" or "challenge" not in query:
            return None
        if not hmac.compare_digest(token.encode(), self.settings.verify_token.encode()):
            return None
        return query["challenge"]

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        secret = self.settings.secret.get_secret_value().encode()
        constant_time_hmac_check(secret, body, headers.get(SIGNATURE_HEADER))

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        delivery = headers.get(DELIVERY_HEADER)
        return f"delivery:{delivery}" if delivery else super().delivery_key(body, headers)

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        try:
            doc = json.loads(raw.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadPayload(f"fake webhook body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            raise BadPayload('fake webhook body must be an object with an "events" list')
        events: list[ParsedEvent] = []
        for element in doc["events"]:
            event = self._parse_element(element)
            if event is not None:
                events.append(event)
        return events

    def _parse_element(self, element: Any) -> ParsedEvent | None:
        if not isinstance(element, dict):
            log.info("fake channel %s: skipped a non-object element", self.channel_id)
            return None
        parser = _ELEMENT_PARSERS.get(element.get("type"))
        if parser is not None:
            try:
                return parser(element)
            except (KeyError, TypeError, ValueError) as exc:
                return _unsupported(element, f"{type(exc).__name__}: {exc}")
        return _unsupported(element, "unknown element type")

    # ---- outbound ------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendReceipt:
        type(self).sent.append(message)
        try:
            await self._call_provider()
            if self.settings.api_base is not None:
                await self._post(message)
        except SendError as exc:
            self._report(HealthState.AUTH_FAILED if exc.error_class is SendErrorClass.AUTH else None)
            raise
        except (TimeoutError, OSError) as exc:
            # What every real channel must do with transport failures: retryable, never a crash.
            raise SendError(SendErrorClass.RETRYABLE, f"provider unreachable: {exc!r}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("httpx"):
                raise SendError(SendErrorClass.RETRYABLE, f"provider unreachable: {exc!r}") from None
            raise
        self._report(HealthState.OK)
        return SendReceipt(external_id=f"fake-out-{message.id}")

    async def _call_provider(self) -> None:
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)
        script = type(self)._script
        failure: Scripted | None = script.popleft() if script else None
        if failure is None and self.settings.fail_with is not None:
            failure = self.settings.fail_with
        if failure is None:
            return
        if isinstance(failure, BaseException):
            raise failure
        error_class = SendErrorClass(failure)
        raise SendError(
            error_class,
            f"scripted {error_class.value} failure",
            provider_code=f"fake_{error_class.value}",
            title=error_class.value.replace("_", " "),
            retry_after=1.0 if error_class is SendErrorClass.RATE_LIMITED else None,
        )

    def _report(self, state: HealthState | None) -> None:
        if state is not None and state is not self._health:
            self._health = state
            self.context.set_health(state)

    def rate_limits(self, message: OutboundMessage) -> list[RateLimit]:
        if self.settings.rate is None:
            return []
        return [RateLimit(f"channel:{self.channel_id}", self.settings.rate, self.settings.burst)]

    async def _post(self, message: OutboundMessage) -> None:
        body = {"to": message.recipient.ids[0], "text": message.text, "client_ref": message.id}
        response = await self.context.http.post(f"{self.settings.api_base}/messages", json=body)
        if response.is_success:
            return
        error_class = _STATUS_CLASSES.get(response.status_code)
        if error_class is None:
            retryable = response.status_code >= 500
            error_class = SendErrorClass.RETRYABLE if retryable else SendErrorClass.PERMANENT
        after = response.headers.get("retry-after")
        raise SendError(
            error_class,
            f"the provider answered {response.status_code}",
            provider_code=str(response.status_code),
            retry_after=float(after) if after and after.isdigit() else None,
        )

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        """GET the attachment's ``url`` (or ``{api_base}/media/{id}``) through the lent client."""
        if source_url is None and self.settings.api_base is not None and attachment_external_id:
            source_url = f"{self.settings.api_base}/media/{attachment_external_id}"
        if source_url is None:
            raise SendError(SendErrorClass.PERMANENT, "the attachment has no URL to fetch it from")
        try:
            response = await self.context.http.get(source_url)
        except httpx.TransportError as exc:
            raise SendError(SendErrorClass.RETRYABLE, f"media unreachable: {type(exc).__name__}") from None
        if not response.is_success:
            raise SendError(SendErrorClass.RETRYABLE, f"media answered {response.status_code}")
        return MediaContent(response.content, mime_type=response.headers.get("content-type"))

    async def health_check(self) -> Health:
        if self.settings.fail_with is SendErrorClass.AUTH:
            return Health(state=HealthState.AUTH_FAILED, last_error="scripted auth failure")
        if self.settings.api_base is None:
            return Health(state=HealthState.OK)
        try:
            response = await self.context.http.get(f"{self.settings.api_base}/me")
        except httpx.TransportError as exc:
            return Health(state=HealthState.UNREACHABLE, last_error=type(exc).__name__)
        if response.status_code in (401, 403):
            return Health(state=HealthState.AUTH_FAILED, last_error="the provider refused the credentials")
        if not response.is_success:
            return Health(
                state=HealthState.UNREACHABLE, last_error=f"the provider answered {response.status_code}"
            )
        return Health(state=HealthState.OK)


_STATUS_CLASSES = {
    401: SendErrorClass.AUTH,
    403: SendErrorClass.AUTH,
    404: SendErrorClass.RECIPIENT,
    429: SendErrorClass.RATE_LIMITED,
}


# ---- the element parsers (pure functions of one element) ----------------------------------------


def _ts(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"ts must be Unix seconds, got {value!r}")
    return datetime.fromtimestamp(float(value), UTC)


def _contact(element: Mapping[str, Any], key: str = "from") -> ContactRef:
    who = element[key]
    if not isinstance(who, str) or not who:
        raise ValueError(f"{key!r} must be a non-empty string")
    return ContactRef(ids=[f"fake:{who}"], name=element.get("name") or None)


def _content(element: Mapping[str, Any]) -> tuple[MessageKind, list[Attachment]]:
    attachments: list[Attachment] = []
    kind = MessageKind.TEXT
    if (att := element.get("attachment")) is not None:
        att_kind = AttachmentKind(att["kind"])
        attachments.append(
            Attachment(
                kind=att_kind,
                source_url=att.get("url"),
                mime_type=att.get("mime_type"),
                filename=att.get("filename"),
                caption=att.get("caption"),
                external_id=att.get("id"),
            )
        )
        if element.get("text") is None:
            kind = MessageKind(att_kind.value)
    return kind, attachments


def _message(element: Mapping[str, Any]) -> InboundMessage:
    kind, attachments = _content(element)
    return InboundMessage(
        external_id=str(element["id"]),
        contact=_contact(element),
        direction=Direction(element.get("direction", "inbound")),
        kind=kind,
        text=element.get("text"),
        subject=element.get("subject"),
        attachments=attachments,
        reply_to_external_id=element.get("reply_to"),
        thread_id=element.get("thread"),
        thread_refs=list(element.get("refs", [])),
        cc=[_contact({"from": who}) for who in element.get("cc", [])],
        timestamp=_ts(element["ts"]),
    )


def _edit(element: Mapping[str, Any]) -> MessageEdit:
    kind, attachments = _content(element)
    return MessageEdit(
        target_external_id=str(element["target"]),
        external_id=element.get("id"),
        contact=_contact(element) if element.get("from") else None,
        direction=Direction(element.get("direction", "inbound")),
        kind=kind,
        text=element.get("text"),
        attachments=attachments,
        timestamp=_ts(element["ts"]),
    )


def _deletion(element: Mapping[str, Any]) -> MessageDeletion:
    return MessageDeletion(
        target_external_id=str(element["target"]),
        external_id=element.get("id"),
        contact=_contact(element) if element.get("from") else None,
        direction=Direction(element.get("direction", "inbound")),
        timestamp=_ts(element["ts"]),
    )


def _status(element: Mapping[str, Any]) -> StatusUpdate:
    status = MessageStatus(element["status"])
    if status not in (
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.PLAYED,
        MessageStatus.FAILED,
    ):
        raise ValueError(f"not a delivery status: {status.value}")
    return StatusUpdate(
        external_id=str(element["id"]),
        status=status,
        timestamp=_ts(element["ts"]),
        recipient=_contact(element, "to") if element.get("to") else None,
        error=element.get("error"),
        client_ref=element.get("client_ref"),
    )


def _reaction(element: Mapping[str, Any]) -> ReactionUpdate:
    return ReactionUpdate(
        target_external_id=str(element["target"]),
        contact=_contact(element),
        emoji=element.get("emoji") or None,
        timestamp=_ts(element["ts"]),
        external_id=element.get("id"),
    )


def _unsupported(element: Mapping[str, Any], reason: str) -> InboundMessage | None:
    who = element.get("from")
    if not isinstance(who, str) or not who:
        log.info("fake channel: skipped an element with no sender (%s)", reason)
        return None
    external_id = element.get("id")
    if not isinstance(external_id, str) or not external_id:
        # Deterministic, so a redelivery of the same element is recognised as a duplicate.
        canonical = json.dumps(element, sort_keys=True, ensure_ascii=False).encode()
        external_id = "unsupported:" + hashlib.sha256(canonical).hexdigest()[:24]
    try:
        when = _ts(element.get("ts"))
    except ValueError:
        when = datetime(1970, 1, 1, tzinfo=UTC)  # no clock in parse: a fixed, visible placeholder
    return InboundMessage(
        external_id=external_id,
        contact=ContactRef(ids=[f"fake:{who}"]),
        kind=MessageKind.UNSUPPORTED,
        timestamp=when,
        data={"element": dict(element), "reason": reason},
    )


_ELEMENT_PARSERS: dict[Any, Callable[[Mapping[str, Any]], ParsedEvent]] = {
    "message": _message,
    "status": _status,
    "reaction": _reaction,
    "edit": _edit,
    "delete": _deletion,
}


class FakePlugin:
    """A plugin object registering one FakeChannel class (``load_plugins(extra=[("fake", p)])``)."""

    def __init__(self, channel_cls: type[FakeChannel] = FakeChannel) -> None:
        self.channel_cls = channel_cls

    @hookimpl
    def hub_register_channels(self, register: ChannelRegistrar) -> None:
        register.add(self.channel_cls)

    def channels(self) -> Iterable[type[Channel]]:
        return (self.channel_cls,)


fake_plugin = FakePlugin()
"""Registers ``FakeChannel`` itself; the ``fake_channel_plugin`` fixture gives an isolated one."""
