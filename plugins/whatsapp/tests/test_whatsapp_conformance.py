"""The hub's reusable conformance suite (``hub.testing.conformance``) run against this channel."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import ChannelFactory
from hub_whatsapp import WhatsAppChannel
from wa_support import ACCESS_TOKEN, APP_SECRET, PNID, VERIFY_TOKEN, WA, load, sign

from hub.errors import SendErrorClass
from hub.models import (
    Attachment,
    AttachmentKind,
    ContactRef,
    Direction,
    InboundMessage,
    MessageDeletion,
    MessageEdit,
    MessageKind,
    OutboundMessage,
    ReactionUpdate,
)
from hub.testing.conformance import (
    BatchCase,
    ChannelConformance,
    HandshakeCase,
    ParseCase,
    SendHarness,
    UnknownCase,
)
from hub.testing.fake_graph import FakeGraph

KERRY = ContactRef(ids=[f"wa:{WA}"], name="Kerry Fisher", phone=WA)
CUSTOMER = ContactRef(ids=[f"wa:{WA}"], phone=WA)  # an echo names the customer by number only
TS = datetime.fromtimestamp(1749416383, UTC)
SETTINGS: dict[str, Any] = {
    "phone_number_id": PNID,
    "access_token": ACCESS_TOKEN,
    "app_secret": APP_SECRET,
    "verify_token": VERIFY_TOKEN,
}


class TestWhatsAppConformance(ChannelConformance):
    channel_cls = WhatsAppChannel
    settings = SETTINGS
    cases = [
        ParseCase(
            "text",
            load("text"),
            [
                InboundMessage(
                    external_id="wamid.TEXT1",
                    contact=KERRY,
                    kind=MessageKind.TEXT,
                    text="Hello, is the shop open today?",
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "escaped_unicode",
            load("escaped_unicode"),
            [
                InboundMessage(
                    external_id="wamid.ESC1",
                    contact=KERRY.model_copy(update={"name": "José Müller"}),
                    kind=MessageKind.TEXT,
                    text="Olá! Grüße aus Köln — 你好 😀👍🏽",
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "image",
            load("image"),
            [
                InboundMessage(
                    external_id="wamid.IMG1",
                    contact=KERRY,
                    kind=MessageKind.IMAGE,
                    attachments=[
                        Attachment(
                            kind=AttachmentKind.IMAGE,
                            mime_type="image/jpeg",
                            caption="The broken part",
                            external_id="1003383421387256",
                            source_url="https://lookaside.fbsbx.com/whatsapp_business/attachments/"
                            "?mid=1003383421387256&ext=1&hash=abc",
                            # The webhook's base64 digest, as hex (the media endpoint's form).
                            sha256=hashlib.sha256(b"image-bytes").hexdigest(),
                        )
                    ],
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "reaction",
            load("reaction"),
            [
                ReactionUpdate(
                    target_external_id="wamid.OUT1",
                    contact=KERRY,
                    emoji="\U0001f44d",
                    timestamp=TS,
                    external_id="wamid.REA1",
                )
            ],
        ),
    ]
    # Meta's webhook reference: ``type: "edit"`` / ``"revoke"`` messages, and the business's own
    # edits and revokes from the WhatsApp Business app under ``smb_message_echoes``.
    edits = [
        ParseCase(
            "edit_text",
            load("edit_text"),
            [
                MessageEdit(
                    target_external_id="wamid.TEXT1",
                    external_id="wamid.EDIT1",
                    contact=KERRY,
                    kind=MessageKind.TEXT,
                    text="Hello, is the shop open tomorrow?",
                    timestamp=datetime.fromtimestamp(1749416390, UTC),
                )
            ],
        ),
        ParseCase(
            "edit_image",
            load("edit_image"),
            [
                MessageEdit(
                    target_external_id="wamid.IMG1",
                    external_id="wamid.EDIT2",
                    contact=KERRY,
                    kind=MessageKind.IMAGE,
                    attachments=[
                        Attachment(
                            kind=AttachmentKind.IMAGE,
                            mime_type="image/jpeg",
                            caption="the blue one, not the red",
                            external_id="1003383421387256",
                            source_url="https://lookaside.fbsbx.com/whatsapp_business/attachments/"
                            "?mid=1003383421387256",
                            sha256=hashlib.sha256(b"").hexdigest(),
                        )
                    ],
                    timestamp=datetime.fromtimestamp(1749416391, UTC),
                )
            ],
        ),
        ParseCase(
            "revoke",
            load("revoke"),
            [
                MessageDeletion(
                    target_external_id="wamid.TEXT1",
                    external_id="wamid.REVOKE1",
                    contact=KERRY,
                    timestamp=datetime.fromtimestamp(1749416395, UTC),
                )
            ],
        ),
        ParseCase(
            "echo_revoke",
            load("echo_revoke"),
            [
                MessageDeletion(
                    target_external_id="wamid.ECHO1",
                    external_id="wamid.ECHO3",
                    contact=CUSTOMER,
                    direction=Direction.OUTBOUND,
                    timestamp=datetime.fromtimestamp(1749416420, UTC),
                )
            ],
        ),
    ]
    batch = BatchCase(body=load("batch"), count=7)
    unknown = UnknownCase(body=load("unknown_type"))
    handshake = HandshakeCase(
        query={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "0123"},
        answer="0123",
        refused=[
            {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "0123"},
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        ],
    )
    # The escaped body is pure ASCII, so name a body with raw UTF-8 for the re-serialization check.
    non_ascii_body = load("text").replace(b"Hello,", "Olá,".encode())

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": sign(body)}

    @pytest.fixture
    async def send_harness(self, make_channel: ChannelFactory) -> AsyncIterator[SendHarness]:
        async with FakeGraph(access_token=ACCESS_TOKEN) as graph:
            # The timeout is short for the hang scenario, yet long enough that a busy CI machine
            # never turns a scripted answer into a timeout (0.3 s once did).
            channel = await make_channel(api_base_url=graph.base_url, request_timeout=3.0)
            path = f"{PNID}/messages"

            def failing(status: int, code: int, **kw: Any) -> Any:
                return lambda: graph.fail(path, status, code=code, message=f"(#{code})", **kw)

            def hang() -> None:
                graph.latency = 5.0

            def revoke_token() -> None:
                graph.access_token = "a-token-meta-revoked"  # every call now gets 401, code 190

            yield SendHarness(
                channel=channel,
                message=OutboundMessage(
                    id="m1",
                    channel_id="wa-1",
                    conversation_id="c1",
                    recipient=ContactRef(ids=[f"wa:{WA}"]),
                    kind=MessageKind.TEXT,
                    text="hello",
                ),
                errors={
                    SendErrorClass.RETRYABLE: failing(503, 131016),
                    SendErrorClass.RATE_LIMITED: failing(429, 130429, headers={"Retry-After": "3"}),
                    SendErrorClass.NEEDS_TEMPLATE: failing(400, 131047),
                    SendErrorClass.AUTH: failing(401, 190),
                    SendErrorClass.RECIPIENT: failing(400, 131026),
                    SendErrorClass.PERMANENT: failing(400, 131009),
                },
                timeout=hang,
                bad_credentials=revoke_token,
            )
