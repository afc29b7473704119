"""``WhatsAppChannel``: the WhatsApp Cloud API as a hub channel."""

from __future__ import annotations

from collections.abc import Mapping
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
)
from hub.errors import SendError, SendErrorClass
from hub.models import ContactRef, OutboundMessage, ParsedEvent, SendReceipt

from .graph import GraphClient
from .parse import parse_body
from .send import MEDIA_TYPES, build_message_body, build_read_body, recipient_key
from .settings import CAPABILITIES
from .settings import Settings as WhatsAppSettings

__all__ = ["WhatsAppChannel"]


class WhatsAppChannel(Channel):
    """One WhatsApp Business phone number on Meta's Cloud API (webhooks in, Graph API out)."""

    type_name: ClassVar[str] = "whatsapp"
    display_name: ClassVar[str] = "WhatsApp (Cloud API)"
    Settings: ClassVar[type[ChannelSettings]] = WhatsAppSettings
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    mode: ClassVar[Literal["push", "pull"]] = "push"
    webhook_fields: ClassVar[tuple[str, ...]] = ("verify_token",)

    settings: WhatsAppSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, context: ChannelContext) -> None:
        if not isinstance(settings, WhatsAppSettings):
            settings = WhatsAppSettings.model_validate(settings.model_dump())
        super().__init__(channel_id, settings, context)
        self.graph = GraphClient(context.http, settings, context.log)

    # ---- inbound -------------------------------------------------------------------------------

    def verify_handshake(self, query: Mapping[str, str]) -> str | None:
        return verify_handshake(query, self.settings.verify_token)

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        check_signature(body, headers, self.settings.app_secret.get_secret_value())

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        return parse_body(
            raw.body,
            phone_number_id=self.settings.phone_number_id,
            log=self.context.log,
            received_at=raw.received_at,
        )

    # ---- outbound ------------------------------------------------------------------------------

    async def _upload_local(self, message: OutboundMessage) -> str | None:
        """Upload a hub-stored file first; Meta then takes the media by id."""
        if len(message.attachments) != 1 or not message.attachments[0].path:
            return None
        att = message.attachments[0]
        if att.media_id or att.url:
            return None
        stored = await read_stored(att, MEDIA_TYPES[att.kind])
        return await self.graph.upload_media(stored.data, stored.mime_type, stored.filename)

    async def send(self, message: OutboundMessage) -> SendReceipt:
        build_message_body(message, media_id="pending" if self._has_path(message) else None)
        media_id = await self._upload_local(message)
        body = build_message_body(message, media_id=media_id)
        result = await self.graph.post_message(body)
        sent = [m for m in result.get("messages") or [] if isinstance(m, Mapping) and m.get("id")]
        if not sent:
            raise SendError(
                SendErrorClass.RETRYABLE, "the Graph API accepted the send but returned no message id"
            )
        data: dict[str, object] = {}
        if sent[0].get("message_status"):  # e.g. "accepted", "held_for_quality_assessment"
            data["message_status"] = sent[0]["message_status"]
        if media_id:
            data["media_id"] = media_id
        return SendReceipt(external_id=str(sent[0]["id"]), data=data)

    @staticmethod
    def _has_path(message: OutboundMessage) -> bool:
        return any(a.path and not (a.media_id or a.url) for a in message.attachments)

    async def mark_read(self, external_id: str, contact: ContactRef) -> None:
        await self.graph.post_message(build_read_body(external_id))

    def rate_limits(self, message: OutboundMessage) -> list[RateLimit]:
        number = self.settings.phone_number_id
        mps = float(self.settings.messages_per_second)
        limits = [RateLimit(f"number:{number}", rate=mps, burst=mps)]
        user = recipient_key(message.recipient)
        if user:
            limits.append(
                RateLimit(
                    f"pair:{number}:{user}",
                    rate=1.0 / self.settings.pair_interval_seconds,
                    burst=float(self.settings.pair_burst),
                )
            )
        return limits

    # ---- optional ------------------------------------------------------------------------------

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        return await self.graph.download_media(attachment_external_id or None, source_url)

    async def health_check(self) -> Health:
        try:
            await self.graph.phone_number_info()
        except SendError as exc:
            return health_of(exc)
        return Health(state=HealthState.OK)
