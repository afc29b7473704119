"""The hub's reusable conformance suite (``hub.testing.conformance``) run against both channel
types, with the send checks against a FakeGraph on loopback driven by the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fb_support import (
    IGSID,
    PAGE_TOKEN,
    PSID,
    TS,
    VERIFY_TOKEN,
    instagram_settings,
    load,
    messenger_settings,
    sign,
)
from hub_facebook import InstagramChannel, MessengerChannel

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
    SendContext,
    utcnow,
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

MAKE = Callable[..., Awaitable[MessengerChannel]]
HANDSHAKE = HandshakeCase(
    query={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    answer="1158201444",
    refused=[
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
    ],
)
CUSTOMER = ContactRef(ids=[f"psid:{PSID}"])
IG_CUSTOMER = ContactRef(ids=[f"igsid:{IGSID}"])
EDITED_AT = datetime(2025, 12, 5, 16, 1, tzinfo=UTC)  # 1764950460000 ms


def _harness(make: MAKE, type_name: str, recipient: ContactRef) -> Any:
    """A send harness on FakeGraph, with one scripted Meta error for every class."""

    async def build() -> AsyncIterator[SendHarness]:
        async with FakeGraph(access_token=PAGE_TOKEN) as graph:
            channel = await make(type_name, api_base_url=graph.base_url, request_timeout=3.0)

            def failing(status: int, code: int, subcode: int | None = None, **kw: Any) -> Any:
                return lambda: graph.fail("me/messages", status, code=code, subcode=subcode, **kw)

            def hang() -> None:
                graph.latency = 5.0

            def revoke_token() -> None:
                graph.access_token = "a-token-meta-revoked"  # every call now gets 401, code 190

            yield SendHarness(
                channel=channel,
                message=OutboundMessage(
                    id="msg_conf",
                    channel_id="fb-1",
                    conversation_id="cv_1",
                    recipient=recipient,
                    kind=MessageKind.TEXT,
                    text="hello",
                    context=SendContext(last_inbound_at=utcnow() - timedelta(hours=1)),
                ),
                errors={
                    SendErrorClass.RETRYABLE: failing(500, 2),
                    SendErrorClass.RATE_LIMITED: failing(400, 613, headers={"Retry-After": "2"}),
                    SendErrorClass.NEEDS_TEMPLATE: failing(400, 10, 2018278),
                    SendErrorClass.AUTH: failing(401, 190),
                    SendErrorClass.RECIPIENT: failing(400, 551, 1545041),
                    SendErrorClass.PERMANENT: failing(400, 100),
                },
                timeout=hang,
                bad_credentials=revoke_token,
            )

    return build()


class TestMessengerConformance(ChannelConformance):
    channel_cls = MessengerChannel
    settings = messenger_settings()
    cases = [
        ParseCase(
            "text",
            load("text"),
            [
                InboundMessage(
                    external_id="m_TEXT1-aY7IfLZDamVrALniheU",
                    contact=CUSTOMER,
                    kind=MessageKind.TEXT,
                    text="Olá! Is the shop open? 😀 see https://example.com/shop",
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "echo_other",
            load("echo_other"),
            [
                InboundMessage(
                    external_id="m_ECHOINBOX1",
                    contact=CUSTOMER,
                    direction=Direction.OUTBOUND,
                    kind=MessageKind.TEXT,
                    text="Sent from the Page inbox",
                    timestamp=TS,
                    data={"app_id": 263902037430900},
                )
            ],
        ),
        ParseCase(
            "reaction",
            load("reaction_react"),
            [
                ReactionUpdate(
                    target_external_id="m_OUT1", contact=CUSTOMER, emoji="\u2764\ufe0f", timestamp=TS
                )
            ],
        ),
        # The Messenger Platform sends an attachment's URL, which fetch_media downloads.
        ParseCase(
            "image",
            load("image"),
            [
                InboundMessage(
                    external_id="m_IMG1",
                    contact=CUSTOMER,
                    kind=MessageKind.IMAGE,
                    attachments=[
                        Attachment(
                            kind=AttachmentKind.IMAGE,
                            source_url="https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg?_nc_cat=1&oh=abc",
                        )
                    ],
                    timestamp=TS,
                )
            ],
        ),
    ]
    # Meta's ``message_edits`` webhook event: the mid edited, the new text and the edit count.
    edits = [
        ParseCase(
            "message_edit",
            load("message_edit"),
            [
                MessageEdit(
                    target_external_id="m_TEXT1-aY7IfLZDamVrALniheU",
                    external_id="m_TEXT1-aY7IfLZDamVrALniheU:edit:1",
                    contact=CUSTOMER,
                    text="Is the shop open today?",
                    timestamp=EDITED_AT,
                    data={"num_edit": 1},
                )
            ],
        )
    ]
    batch = BatchCase(body=load("batch"), count=4)
    unknown = UnknownCase(body=load("unknown_event"))
    handshake = HANDSHAKE
    non_ascii_body = load("text").replace(b"Ol\\u00e1!", "Olá!".encode())

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": sign(body)}

    @pytest.fixture
    async def send_harness(self, make_fb_channel: MAKE) -> AsyncIterator[SendHarness]:
        async for harness in _harness(make_fb_channel, "messenger", CUSTOMER):
            yield harness


class TestInstagramConformance(ChannelConformance):
    channel_cls = InstagramChannel
    settings = instagram_settings()
    cases = [
        ParseCase(
            "ig_text",
            load("ig_text"),
            [
                InboundMessage(
                    external_id="aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx",
                    contact=IG_CUSTOMER,
                    kind=MessageKind.TEXT,
                    text="Grüße! Do you ship to Köln?",
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "ig_image",
            load("ig_image"),
            [
                InboundMessage(
                    external_id="aWdfSU1HMQ",
                    contact=IG_CUSTOMER,
                    kind=MessageKind.IMAGE,
                    attachments=[
                        Attachment(
                            kind=AttachmentKind.IMAGE,
                            source_url="https://lookaside.fbsbx.com/ig_messaging_cdn/"
                            "?asset_id=17951234567890123&signature=AbCd",
                        )
                    ],
                    timestamp=TS,
                )
            ],
        ),
        ParseCase(
            "ig_reaction",
            load("ig_reaction"),
            [
                ReactionUpdate(
                    target_external_id="aWdfOUT1", contact=IG_CUSTOMER, emoji="\u2764\ufe0f", timestamp=TS
                )
            ],
        ),
    ]
    # An unsent message arrives as ``message.is_deleted``.
    edits = [
        ParseCase(
            "ig_deleted",
            load("ig_deleted"),
            [
                MessageDeletion(
                    target_external_id="aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx",
                    contact=IG_CUSTOMER,
                    timestamp=EDITED_AT,
                )
            ],
        )
    ]
    batch = BatchCase(
        body=load("ig_text").replace(
            b"}]}]}", b'},{"sender":{"id":"9"},"timestamp":1,"read":{"mid":"x"}}]}]}'
        ),
        count=2,
    )
    unknown = UnknownCase(body=load("ig_unsupported"))
    handshake = HANDSHAKE
    non_ascii_body = load("ig_text").replace(b"Gr\\u00fc\\u00dfe!", "Grüße!".encode())

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": sign(body)}

    @pytest.fixture
    async def send_harness(self, make_fb_channel: MAKE) -> AsyncIterator[SendHarness]:
        async for harness in _harness(make_fb_channel, "instagram", IG_CUSTOMER):
            yield harness
