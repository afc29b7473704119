"""``MessengerChannel`` and ``InstagramChannel``: one Facebook Page, one Instagram account."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Literal

from hub_meta import check_signature, health_of, verify_handshake
from hub_meta.upload import read_stored

from hub.channel import (
    Capabilities,
    Channel,
    ChannelContext,
    ChannelSettings,
    Health,
    HealthState,
    MediaContent,
    RateLimit,
    RawEvent,
    ReplyWindow,
)
from hub.errors import SendError, SendErrorClass
from hub.models import ContactRef, OutboundMessage, ParsedEvent, SendReceipt, utcnow

from .graph import MessengerGraph
from .parse import parse_body
from .policy import messaging_type, reply_window
from .send import ATTACHMENT_TYPES, build_message_body, build_sender_action, recipient_id
from .settings import INSTAGRAM_CAPABILITIES, MESSENGER_CAPABILITIES, InstagramSettings, MessengerSettings

__all__ = ["InstagramChannel", "MessengerChannel"]


class MessengerChannel(Channel):
    """A Facebook Page on the Messenger Platform (webhooks in, Send API out)."""

    type_name: ClassVar[str] = "messenger"
    display_name: ClassVar[str] = "Facebook Messenger"
    Settings: ClassVar[type[ChannelSettings]] = MessengerSettings
    capabilities: ClassVar[Capabilities] = MESSENGER_CAPABILITIES
    mode: ClassVar[Literal["push", "pull"]] = "push"
    webhook_fields: ClassVar[tuple[str, ...]] = ("verify_token",)

    id_prefix: ClassVar[str] = "psid:"
    profile_fields: ClassVar[str] = "first_name,last_name,name"
    account_fields: ClassVar[str] = "id,name"
    button_template: ClassVar[bool] = True
    templates: ClassVar[frozenset[str]] = frozenset({"generic", "button"})
    sends_metadata: ClassVar[bool] = True
    """Messenger echoes ``message.metadata``; Instagram documents no such field."""

    settings: MessengerSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, context: ChannelContext) -> None:
        model = type(self).Settings
        if not isinstance(settings, model):
            settings = model.model_validate(settings.model_dump())
        super().__init__(channel_id, settings, context)
        self.graph = MessengerGraph(context.http, self.settings, context.log, self.type_name)
        # user id -> name (None: the profile had none, or it could not be read).
        self._names: dict[str, str | None] = {}

    # ---- inbound -------------------------------------------------------------------------------

    def verify_handshake(self, query: Mapping[str, str]) -> str | None:
        return verify_handshake(query, self.settings.verify_token)

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        check_signature(body, headers, self.settings.app_secret.get_secret_value())

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        return parse_body(
            raw.body,
            platform=self.type_name,
            account_id=self.settings.account_id,
            log=self.context.log,
            received_at=raw.received_at,
        )

    async def fetch_profile(self, contact: ContactRef) -> ContactRef | None:
        """The customer's name from their profile, fetched once per id and cached.

        Called by the hub after a message is stored (never from ``parse``); a failure is logged,
        remembered, and never holds a message back.
        """
        try:
            user_id = recipient_id(contact, self.id_prefix)
        except SendError:
            return None
        if user_id not in self._names:
            try:
                profile = await self.graph.profile(user_id, self.profile_fields)
            except SendError as exc:
                self.context.log.info("%s: no profile for %s: %s", self.type_name, user_id, exc.message)
                self._names[user_id] = None
            else:
                name = profile.get("name") or " ".join(
                    str(p) for p in (profile.get("first_name"), profile.get("last_name")) if p
                )
                self._names[user_id] = str(name).strip() or profile.get("username") or None
        name = self._names[user_id]
        return contact.model_copy(update={"name": name}) if name else None

    # ---- outbound ------------------------------------------------------------------------------

    def reply_window(self, last_inbound_at: datetime | None, now: datetime) -> ReplyWindow:
        return reply_window(last_inbound_at, now)

    async def _upload_local(self, message: OutboundMessage) -> str | None:
        """Upload a hub-stored file first; the send then names its attachment id."""
        if len(message.attachments) != 1:
            return None
        att = message.attachments[0]
        if not att.path or att.media_id or att.url:
            return None
        kind = ATTACHMENT_TYPES.get(att.kind)
        if kind is None:
            return None
        stored = await read_stored(att, kind)
        return await self.graph.upload_attachment(kind, stored.data, stored.mime_type, stored.filename)

    def _body(self, message: OutboundMessage, attachment_id: str | None) -> dict[str, object]:
        ctx = message.context
        return build_message_body(
            message,
            id_prefix=self.id_prefix,
            window=messaging_type(ctx.last_inbound_at, ctx.author, utcnow()),
            attachment_id=attachment_id,
            button_template=self.button_template,
            templates=self.templates,
            metadata=self.sends_metadata,
        )

    async def send(self, message: OutboundMessage) -> SendReceipt:
        has_file = any(a.path and not (a.media_id or a.url) for a in message.attachments)
        self._body(message, "pending" if has_file else None)  # refuse before uploading anything
        body = self._body(message, await self._upload_local(message))
        result = await self.graph.post_message(body)
        mid = result.get("message_id")
        if not mid:
            raise SendError(
                SendErrorClass.RETRYABLE, "the Send API accepted the send but returned no message_id"
            )
        return SendReceipt(external_id=str(mid), data={"messaging_type": body["messaging_type"]})

    async def sender_action(self, contact: ContactRef, action: str) -> None:
        """Show ``typing_on`` / ``typing_off`` or mark the conversation seen (``mark_seen``)."""
        await self.graph.post_message(build_sender_action(contact, self.id_prefix, action))

    async def mark_read(self, external_id: str, contact: ContactRef) -> None:
        await self.sender_action(contact, "mark_seen")

    def rate_limits(self, message: OutboundMessage) -> list[RateLimit]:
        rate = float(self.settings.messages_per_second)
        return [RateLimit(f"{self.type_name}:{self.settings.account_id}", rate=rate, burst=rate)]

    # ---- optional ------------------------------------------------------------------------------

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        if not source_url:
            raise SendError(SendErrorClass.PERMANENT, "the attachment has no URL to download from")
        return await self.graph.download(source_url)

    async def health_check(self) -> Health:
        try:
            await self.graph.account(self.settings.account_id, self.account_fields)
        except SendError as exc:
            return health_of(exc)
        return Health(state=HealthState.OK)


class InstagramChannel(MessengerChannel):
    """An Instagram professional account's Direct messages, through its linked Facebook Page."""

    type_name: ClassVar[str] = "instagram"
    display_name: ClassVar[str] = "Instagram Direct"
    Settings: ClassVar[type[ChannelSettings]] = InstagramSettings
    capabilities: ClassVar[Capabilities] = INSTAGRAM_CAPABILITIES

    id_prefix: ClassVar[str] = "igsid:"
    profile_fields: ClassVar[str] = "name,username"
    account_fields: ClassVar[str] = "id,username"
    button_template: ClassVar[bool] = False
    templates: ClassVar[frozenset[str]] = frozenset({"generic"})
    sends_metadata: ClassVar[bool] = False
