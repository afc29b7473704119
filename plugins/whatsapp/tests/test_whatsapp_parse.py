"""parse(): every documented message type and status, batches, routing and odd shapes."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime

import pytest
from hub_whatsapp import WhatsAppChannel
from hub_whatsapp.parse import b64_to_hex, parse_timestamp
from wa_support import FIXTURES, WA, load, raw

from hub.errors import BadPayload
from hub.models import (
    Attachment,
    AttachmentKind,
    AttachmentState,
    ContactRef,
    InboundMessage,
    InteractiveChoice,
    MessageKind,
    MessageStatus,
    ReactionUpdate,
    StatusUpdate,
)

KERRY = ContactRef(ids=[f"wa:{WA}"], name="Kerry Fisher", phone=WA)
TS = datetime.fromtimestamp(1749416383, UTC)


def one_message(channel: WhatsAppChannel, name: str) -> InboundMessage:
    events = channel.parse(raw(name))
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, InboundMessage)
    return event


def hexsha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_text(channel: WhatsAppChannel) -> None:
    assert one_message(channel, "text") == InboundMessage(
        external_id="wamid.TEXT1",
        contact=KERRY,
        kind=MessageKind.TEXT,
        text="Hello, is the shop open today?",
        timestamp=TS,
    )


def test_timestamp_is_aware_utc(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "text")
    assert msg.timestamp.tzinfo is not None
    assert msg.timestamp == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)


def test_reply_context(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "text_reply")
    assert msg.reply_to_external_id == "wamid.OUT1"
    assert msg.forwarded is False
    assert msg.text == "Yes, that one"


@pytest.mark.parametrize("name", ["text_forwarded", "text_frequently_forwarded"])
def test_forwarded_without_id(channel: WhatsAppChannel, name: str) -> None:
    msg = one_message(channel, name)
    assert msg.forwarded is True
    assert msg.reply_to_external_id is None


def test_image(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "image")
    assert msg.kind is MessageKind.IMAGE
    assert msg.text is None
    assert msg.attachments == [
        Attachment(
            kind=AttachmentKind.IMAGE,
            mime_type="image/jpeg",
            caption="The broken part",
            external_id="1003383421387256",
            source_url="https://lookaside.fbsbx.com/whatsapp_business/attachments/"
            "?mid=1003383421387256&ext=1&hash=abc",
            sha256=hexsha(b"image-bytes"),
            state=AttachmentState.PENDING,
        )
    ]


def test_voice_note(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "audio_voice")
    assert msg.kind is MessageKind.AUDIO
    (att,) = msg.attachments
    assert att.voice is True
    assert att.mime_type == "audio/ogg; codecs=opus"
    assert att.size == 18342  # file_size arrived as a string
    assert att.sha256 == hexsha(b"voice-bytes")
    assert att.external_id == "2003383421387256"
    assert att.source_url is None


def test_video(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "video")
    assert msg.kind is MessageKind.VIDEO
    (att,) = msg.attachments
    assert (att.kind, att.size, att.caption, att.mime_type) == (
        AttachmentKind.VIDEO,
        1048576,
        "unboxing",
        "video/mp4",
    )
    assert att.sha256 == hexsha(b"video-bytes")


def test_document(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "document")
    assert msg.kind is MessageKind.FILE
    (att,) = msg.attachments
    assert att.kind is AttachmentKind.FILE
    assert att.filename == "invoice-2025-06.pdf"
    assert att.caption == "my invoice"
    assert att.mime_type == "application/pdf"
    assert att.sha256 == hexsha(b"document-bytes")
    assert att.state is AttachmentState.PENDING


def test_sticker(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "sticker")
    assert msg.kind is MessageKind.STICKER
    (att,) = msg.attachments
    assert att.animated is True
    assert att.mime_type == "image/webp"
    assert att.external_id == "5003383421387256"


def test_location(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "location")
    assert msg.kind is MessageKind.LOCATION
    assert msg.data == {
        "location": {
            "latitude": 37.483253,
            "longitude": -122.148274,
            "name": "Main office",
            "address": "1 Hacker Way, Menlo Park, CA 94025",
            "url": "https://www.example.com",
        }
    }


def test_contacts(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "contacts")
    assert msg.kind is MessageKind.CONTACTS
    shared = json.loads(load("contacts"))["entry"][0]["changes"][0]["value"]["messages"][0]
    assert msg.data == {"contacts": shared["contacts"]}
    assert msg.data["contacts"][0]["phones"][0]["wa_id"] == "16505551234"
    assert msg.contact == KERRY  # the sender, not the shared card


def test_button_reply(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "interactive_button_reply")
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.interactive == InteractiveChoice(id="confirm-yes", title="Yes, confirm")
    assert msg.text == "Yes, confirm"
    assert msg.reply_to_external_id == "wamid.OUTBTN"


def test_list_reply(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "interactive_list_reply")
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.interactive == InteractiveChoice(
        id="slot-2", title="Tuesday 10:00", description="With Dr. Ames"
    )
    assert msg.reply_to_external_id == "wamid.OUTLST"


def test_template_quick_reply_button(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "button")
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.interactive == InteractiveChoice(id="STOP_PROMOS", title="Stop promotions")
    assert msg.reply_to_external_id == "wamid.OUTTPL"


def test_reaction(channel: WhatsAppChannel) -> None:
    assert channel.parse(raw("reaction")) == [
        ReactionUpdate(
            target_external_id="wamid.OUT1",
            contact=KERRY,
            emoji="\U0001f44d",
            timestamp=TS,
            external_id="wamid.REA1",
        )
    ]


def test_reaction_removed(channel: WhatsAppChannel) -> None:
    events = channel.parse(raw("reaction_removed"))
    assert [(type(e), e.target_external_id, e.emoji) for e in events] == [  # type: ignore[union-attr]
        (ReactionUpdate, "wamid.OUT1", None),
        (ReactionUpdate, "wamid.OUT2", None),
    ]


def test_referral(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "referral")
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Can I get more info about this?"
    assert msg.data["referral"]["source_type"] == "ad"
    assert msg.data["referral"]["source_id"] == "120226305854810726"
    assert msg.data["referral"]["ctwa_clid"].startswith("ARAkLkA8")


def test_order(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "order")
    assert msg.kind is MessageKind.ORDER
    assert msg.text == "Please deliver before noon"
    assert msg.data["order"]["catalog_id"] == "194836987003835"
    assert [i["product_retailer_id"] for i in msg.data["order"]["product_items"]] == [
        "di9ozbzfi4",
        "nqryix03ez",
    ]


def test_system_number_change_links_both_numbers(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "system")
    assert msg.kind is MessageKind.SYSTEM
    assert msg.text == "User Kerry Fisher changed from 16315551181 to 16315551234"
    assert msg.contact.ids == ["wa:16315551181", "wa:16315551234"]
    assert msg.data["system"]["type"] == "user_changed_number"


def test_unsupported_keeps_errors(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "unsupported")
    assert msg.kind is MessageKind.UNSUPPORTED
    assert msg.data["errors"][0]["code"] == 131051
    assert msg.data["raw"]["unsupported"] == {"type": "edit"}


def test_unknown_type_is_a_placeholder(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "unknown_type")
    assert msg.kind is MessageKind.UNSUPPORTED
    assert msg.external_id == "wamid.UNK1"
    assert msg.contact == KERRY
    assert msg.data == {
        "raw": {
            "from": WA,
            "id": "wamid.UNK1",
            "timestamp": "1749416383",
            "type": "hologram",
            "hologram": {"shape": "cube"},
        }
    }


def test_unknown_field_is_skipped(channel: WhatsAppChannel, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        events = channel.parse(raw("unknown_field"))
    assert [e.external_id for e in events] == ["wamid.AFTER1"]  # type: ignore[union-attr]
    assert "account_update" in caplog.text
    assert "messages_v99" in caplog.text


def test_other_phone_number_is_skipped(channel: WhatsAppChannel, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        events = channel.parse(raw("other_number"))
    assert [e.external_id for e in events] == ["wamid.MINE1"]  # type: ignore[union-attr]
    assert "999999999999999" in caplog.text


def test_bsuid_only_user(channel: WhatsAppChannel) -> None:
    msg, status = channel.parse(raw("bsuid_only"))
    assert isinstance(msg, InboundMessage)
    assert msg.contact == ContactRef(ids=["bsuid:US.13491208655302741918"], name="Sheena")
    assert msg.contact.phone is None
    assert msg.text == "hi from a username"
    assert isinstance(status, StatusUpdate)
    assert status.recipient == ContactRef(ids=["bsuid:US.13491208655302741918"])
    assert status.status is MessageStatus.DELIVERED


def test_one_contact_carries_both_ids(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "both_ids")
    assert msg.contact == ContactRef(
        ids=[f"wa:{WA}", "bsuid:US.99887766554433221100"], name="Kerry Fisher", phone=WA
    )


def test_missing_profile_name(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "no_profile_name")
    assert msg.contact == ContactRef(ids=["wa:447700900123"], phone="447700900123")


def test_escaped_unicode_body(channel: WhatsAppChannel) -> None:
    msg = one_message(channel, "escaped_unicode")
    assert msg.text == "Olá! Grüße aus Köln — 你好 😀👍🏽"
    assert msg.contact.name == "José Müller"


def test_batch_every_element(channel: WhatsAppChannel) -> None:
    events = channel.parse(raw("batch"))
    summary = [
        (
            e.type,
            getattr(e, "external_id", None),
            getattr(e, "contact", None) and e.contact.ids,  # type: ignore[union-attr]
        )
        for e in events
    ]
    assert summary == [
        ("message", "wamid.B1", [f"wa:{WA}"]),
        ("message", "wamid.B2", ["wa:4915112345678"]),
        ("reaction", "wamid.B3", [f"wa:{WA}"]),
        ("status", "wamid.OUT10", None),
        ("status", "wamid.OUT11", None),
        ("message", "wamid.B4", [f"wa:{WA}"]),
        ("status", "wamid.OUT12", None),
    ]
    b2 = events[1]
    assert isinstance(b2, InboundMessage) and b2.contact.name == "Ann Lee"
    reaction = events[2]
    assert isinstance(reaction, ReactionUpdate) and reaction.emoji == "\u2764\ufe0f"
    assert [e.status for e in events if isinstance(e, StatusUpdate)] == [
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.SENT,
    ]


def test_statuses_batch(channel: WhatsAppChannel, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        events = channel.parse(raw("statuses_batch"))
    assert all(isinstance(e, StatusUpdate) for e in events)
    sent, delivered, read, played = events
    assert isinstance(sent, StatusUpdate)
    assert isinstance(delivered, StatusUpdate)
    assert isinstance(read, StatusUpdate)
    assert (sent.external_id, sent.status) == ("wamid.OUT1", MessageStatus.SENT)
    assert sent.timestamp == datetime.fromtimestamp(1749416400, UTC)
    assert sent.recipient == ContactRef(ids=[f"wa:{WA}"], phone=WA)
    assert sent.error is None
    assert sent.data["conversation"]["id"] == "CONVERSATION_ID"
    assert sent.data["pricing"]["category"] == "utility"
    assert (delivered.external_id, delivered.status) == ("wamid.OUT1", MessageStatus.DELIVERED)
    assert "conversation" not in delivered.data
    assert (read.external_id, read.status, read.data) == ("wamid.OUT2", MessageStatus.READ, {})
    assert isinstance(played, StatusUpdate)
    assert played.status is MessageStatus.PLAYED  # a voice note played: read, and then some


def test_statuses_out_of_order_and_duplicated_are_all_reported(channel: WhatsAppChannel) -> None:
    events = channel.parse(raw("statuses_out_of_order"))
    assert [(e.external_id, e.status, e.timestamp.timestamp()) for e in events] == [  # type: ignore[union-attr]
        ("wamid.OUT5", MessageStatus.READ, 1749416510),
        ("wamid.OUT5", MessageStatus.DELIVERED, 1749416505),
        ("wamid.OUT5", MessageStatus.DELIVERED, 1749416505),
        ("wamid.OUT5", MessageStatus.SENT, 1749416500),
    ]
    # Keeping order monotonic is the hub's job (status_advances); the parser reports facts.


def test_failed_statuses_are_classified(channel: WhatsAppChannel) -> None:
    events = channel.parse(raw("status_failed"))
    assert [e.error for e in events] == [  # type: ignore[union-attr]
        {
            "class": "needs_template",
            "provider_code": "131047",
            "title": "Re-engagement message",
            "message": "Message failed to send because more than 24 hours have passed since the "
            "customer last replied to this number.",
        },
        {
            "class": "recipient",
            "provider_code": "131026",
            "title": "Message undeliverable",
            "message": "Message Undeliverable.",
        },
        {
            "class": "rate_limited",
            "provider_code": "131056",
            "title": "(Business Account, Consumer Account) pair rate limit hit",
            "message": "Too many messages sent from this number to the same recipient.",
            "scope": "recipient",
        },
    ]
    first = events[0]
    assert isinstance(first, StatusUpdate)
    assert first.status is MessageStatus.FAILED
    assert first.data["errors"][0]["code"] == 131047


def test_failed_status_without_errors(channel: WhatsAppChannel) -> None:
    body = json.loads(load("status_failed"))
    del body["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"]
    events = channel.parse(raw(json.dumps(body).encode()))
    assert events[0].error == {  # type: ignore[union-attr]
        "class": "permanent",
        "provider_code": None,
        "title": None,
        "message": "the provider reported a failure",
    }


def test_a_status_names_the_hub_message_its_send_carried(channel: WhatsAppChannel) -> None:
    body = json.loads(load("statuses_batch"))
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = "msg_01HUB"
    sent, delivered, *_ = channel.parse(raw(json.dumps(body).encode()))
    assert isinstance(sent, StatusUpdate) and isinstance(delivered, StatusUpdate)
    assert (sent.external_id, sent.client_ref) == ("wamid.OUT1", "msg_01HUB")
    assert delivered.client_ref is None


def test_every_fixture_parses_without_raising(channel: WhatsAppChannel) -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        events = channel.parse(raw(path.stem))
        assert isinstance(events, list), path.name


def test_parse_is_pure_and_repeatable(channel: WhatsAppChannel) -> None:
    event = raw("batch")
    assert channel.parse(event) == channel.parse(event)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'"string"', b'{"object": "page", "entry": []}', b"\xff\xfe"],
)
def test_bad_payload(channel: WhatsAppChannel, body: bytes) -> None:
    with pytest.raises(BadPayload):
        channel.parse(raw(body))


@pytest.mark.parametrize(
    "value",
    [
        {"entry": "nope"},
        {"entry": [{"changes": None}]},
        {"entry": [{"changes": [{"field": "messages", "value": None}]}]},
        {"entry": [{"changes": [{"field": "messages", "value": {"metadata": "x"}}]}]},
    ],
)
def test_odd_shapes_do_not_raise(channel: WhatsAppChannel, value: dict[str, object]) -> None:
    body = json.dumps({"object": "whatsapp_business_account", **value}).encode()
    assert channel.parse(raw(body)) == []


def test_odd_elements_are_skipped_or_kept(channel: WhatsAppChannel) -> None:
    body = json.loads(load("text"))
    value = body["entry"][0]["changes"][0]["value"]
    ok = value["messages"][0]
    value["messages"] = [
        "garbage",
        {"id": "wamid.NOSENDER", "type": "text", "text": {"body": "x"}, "from": ""},
        {**ok, "id": ""},
        {**ok, "id": "wamid.BADTS", "timestamp": "soon"},
        {**ok, "id": "wamid.NOREACT", "type": "reaction", "reaction": {"emoji": "x"}},
        {**ok, "id": "wamid.IA", "type": "interactive", "interactive": {"type": "new_thing"}},
    ]
    value["statuses"] = [None, {"id": "", "status": "sent"}]
    events = channel.parse(raw(json.dumps(body).encode()))
    assert [(e.external_id, e.kind) for e in events] == [  # type: ignore[union-attr]
        ("wamid.BADTS", MessageKind.TEXT),
        ("wamid.NOREACT", MessageKind.UNSUPPORTED),
        ("wamid.IA", MessageKind.UNSUPPORTED),
    ]
    assert events[0].timestamp == raw(b"{}").received_at  # unreadable timestamp: received_at


def test_flow_reply(channel: WhatsAppChannel) -> None:
    body = json.loads(load("interactive_button_reply"))
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["interactive"] = {
        "type": "nfm_reply",
        "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"flow_token": "t1"}'},
    }
    (msg,) = channel.parse(raw(json.dumps(body).encode()))
    assert isinstance(msg, InboundMessage)
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.data["flow_reply"] == {"name": "flow", "response": {"flow_token": "t1"}}


def test_helpers() -> None:
    digest = hashlib.sha256(b"x").digest()
    import base64

    assert b64_to_hex(base64.b64encode(digest).decode()) == digest.hex()
    assert b64_to_hex(digest.hex().upper()) == digest.hex()
    assert b64_to_hex("not-base64!") is None
    assert b64_to_hex("") is None
    fallback = datetime(2020, 1, 1, tzinfo=UTC)
    assert parse_timestamp("1700000000", fallback) == datetime.fromtimestamp(1700000000, UTC)
    assert parse_timestamp(1700000000, fallback) == datetime.fromtimestamp(1700000000, UTC)
    assert parse_timestamp(None, fallback) is fallback
