"""The Echo channel: a toy provider with signed webhooks and a small JSON send API.

Inbound, Echo POSTs ``{"updates": [...]}`` where each update is
``{"kind": "message", "message_id", "sender": {"id", "name"}, "text", "sent_at"}`` (ISO 8601) or
``{"kind": "receipt", "message_id", "state": "delivered" | "read", "at"}``, signed with
``x-echo-signature: v1=<hex HMAC-SHA256 of the raw body>`` keyed by the shared signing secret.

Outbound, ``POST {api_base}/v1/messages`` with ``Authorization: Bearer <api_token>`` and
``{"to", "text", "client_ref"}`` answers ``{"id": ...}``, or an error
``{"error": {"code", "message"}}`` with an HTTP status the channel classifies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from hub.channel import Capabilities, Channel, ChannelSettings, RawEvent, constant_time_hmac_check
from hub.errors import BadPayload, SendError, SendErrorClass
from hub.models import (
    ContactRef,
    InboundMessage,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    ParsedEvent,
    SendReceipt,
    StatusUpdate,
)

__all__ = ["EchoChannel", "EchoSettings"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-echo-signature"
_RECEIPTS = {"delivered": MessageStatus.DELIVERED, "read": MessageStatus.READ}
# HTTP status -> what the outbox should do (statuses not listed: 5xx retryable, 4xx permanent).
_STATUS_CLASSES = {
    401: SendErrorClass.AUTH,
    403: SendErrorClass.AUTH,
    404: SendErrorClass.RECIPIENT,
    410: SendErrorClass.RECIPIENT,
    429: SendErrorClass.RATE_LIMITED,
}


class EchoSettings(ChannelSettings):
    api_token: SecretStr
    """Bearer token for the send API (Echo dashboard → API tokens)."""
    signing_secret: SecretStr
    """Key of the webhook signature (Echo dashboard → Webhooks)."""
    api_base: str = "https://api.echo.invalid"


class EchoChannel(Channel):
    type_name: ClassVar[str] = "echo"
    display_name: ClassVar[str] = "Echo"
    Settings: ClassVar[type[ChannelSettings]] = EchoSettings
    capabilities: ClassVar[Capabilities] = Capabilities(text=True, max_text_length=2000)

    settings: EchoSettings

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        secret = self.settings.signing_secret.get_secret_value().encode()
        constant_time_hmac_check(secret, body, headers.get(SIGNATURE_HEADER), prefix="v1=")

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        try:
            doc = json.loads(raw.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise BadPayload(f"Echo webhook body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("updates"), list):
            raise BadPayload('Echo webhook body must be an object with an "updates" list')
        events: list[ParsedEvent] = []
        for update in doc["updates"]:
            try:
                event = _parse_update(update)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("echo: skipped an unreadable update: %s", type(exc).__name__)
                continue
            if event is not None:
                events.append(event)
        return events

    async def send(self, message: OutboundMessage) -> SendReceipt:
        token = self.settings.api_token.get_secret_value()
        try:
            response = await self.context.http.post(
                f"{self.settings.api_base}/v1/messages",
                headers={"authorization": f"Bearer {token}"},
                json={
                    "to": message.recipient.ids[0].removeprefix("echo:"),
                    "text": message.text,
                    "client_ref": message.id,
                },
            )
        except httpx.TransportError as exc:  # timeouts included
            raise SendError(SendErrorClass.RETRYABLE, f"Echo unreachable: {type(exc).__name__}") from None
        if response.is_success:
            return SendReceipt(external_id=str(response.json()["id"]))
        raise _classify(response)


def _classify(response: httpx.Response) -> SendError:
    try:
        error: dict[str, Any] = response.json().get("error") or {}
    except ValueError:
        error = {}
    code = error.get("code")
    if code == "window_closed":
        error_class = SendErrorClass.NEEDS_TEMPLATE
    elif response.status_code in _STATUS_CLASSES:
        error_class = _STATUS_CLASSES[response.status_code]
    else:
        error_class = SendErrorClass.RETRYABLE if response.status_code >= 500 else SendErrorClass.PERMANENT
    retry_after = response.headers.get("retry-after")
    return SendError(
        error_class,
        f"Echo answered {response.status_code}: {error.get('message', response.reason_phrase)}",
        provider_code=code,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def _parse_update(update: Mapping[str, Any]) -> ParsedEvent | None:
    kind = update.get("kind")
    if kind == "message":
        sender = update["sender"]
        return InboundMessage(
            external_id=update["message_id"],
            contact=ContactRef(ids=[f"echo:{sender['id']}"], name=sender.get("name")),
            kind=MessageKind.TEXT,
            text=update["text"],
            timestamp=datetime.fromisoformat(update["sent_at"]),
        )
    if kind == "receipt":
        return StatusUpdate(
            external_id=update["message_id"],
            status=_RECEIPTS[update["state"]],  # type: ignore[arg-type]
            timestamp=datetime.fromisoformat(update["at"]),
        )
    # An update kind Echo added after this plugin was written: keep it for the agent to see.
    sender = (update.get("sender") or {}).get("id")
    if not sender or not update.get("message_id"):
        log.info("echo: skipped an update of unknown kind %r", kind)
        return None
    return InboundMessage(
        external_id=update["message_id"],
        contact=ContactRef(ids=[f"echo:{sender}"]),
        kind=MessageKind.UNSUPPORTED,
        timestamp=datetime.fromisoformat(update["sent_at"]),
        data={"update": dict(update)},
    )
