"""Parsing Messenger and Instagram webhooks written from Meta's documented payloads, one fixture
per shape (``fixtures/*.json``, bytes as Meta sends them: ``\\/`` and ``\\uXXXX`` escapes)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from fb_support import IG_ID, IGSID, PAGE_ID, PSID, RECEIVED_AT, TS, load
from hub_facebook.parse import ms_timestamp, parse_body

from hub.errors import BadPayload
from hub.models import (
    AttachmentKind,
    Direction,
    InboundMessage,
    MessageDeletion,
    MessageEdit,
    MessageKind,
    MessageStatus,
    ParsedEvent,
    ReactionUpdate,
    WatermarkUpdate,
)

LOG = logging.getLogger("test.facebook.parse")


def messenger(name: str) -> list[ParsedEvent]:
    return parse_body(load(name), platform="messenger", account_id=PAGE_ID, log=LOG, received_at=RECEIVED_AT)


def instagram(name: str) -> list[ParsedEvent]:
    return parse_body(load(name), platform="instagram", account_id=IG_ID, log=LOG, received_at=RECEIVED_AT)


def one_message(events: list[ParsedEvent]) -> InboundMessage:
    assert len(events) == 1
    assert isinstance(events[0], InboundMessage)
    return events[0]


def test_timestamps_are_milliseconds_exactly() -> None:
    assert ms_timestamp(1764950400123, RECEIVED_AT) == TS
    assert ms_timestamp("1764950400999", RECEIVED_AT) == TS + timedelta(milliseconds=876)
    assert ms_timestamp("not a time", RECEIVED_AT) == RECEIVED_AT
    assert ms_timestamp(None, RECEIVED_AT) == RECEIVED_AT


def test_text_with_escapes_keyed_by_psid() -> None:
    msg = one_message(messenger("text"))
    assert msg.external_id == "m_TEXT1-aY7IfLZDamVrALniheU"
    assert msg.contact.ids == [f"psid:{PSID}"]
    assert msg.direction is Direction.INBOUND
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá! Is the shop open? 😀 see https://example.com/shop"
    assert msg.timestamp == TS and msg.timestamp.tzinfo is not None


def test_quick_reply_payload_is_an_interactive_reply() -> None:
    msg = one_message(messenger("quick_reply"))
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.interactive is not None
    assert (msg.interactive.id, msg.interactive.title) == ("COLOR_RED", "Red")
    assert msg.text == "Red"


def test_reply_to_mid_links_the_replied_message() -> None:
    msg = one_message(messenger("reply_to"))
    assert msg.reply_to_external_id == "m_OUT1"
    assert msg.text == "yes, that one"


def test_image_attachment_url_unescaped() -> None:
    msg = one_message(messenger("image"))
    assert msg.kind is MessageKind.IMAGE
    [att] = msg.attachments
    assert att.kind is AttachmentKind.IMAGE
    assert att.source_url == "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg?_nc_cat=1&oh=abc"


def test_several_attachments_under_one_mid_are_one_message() -> None:
    msg = one_message(messenger("attachments_several"))
    assert msg.external_id == "m_MULTI1"
    assert [a.kind for a in msg.attachments] == [
        AttachmentKind.IMAGE,
        AttachmentKind.VIDEO,
        AttachmentKind.AUDIO,
        AttachmentKind.FILE,
    ]
    assert [a.source_url for a in msg.attachments][-1] == "https://cdn.fbsbx.test/d.pdf"
    assert msg.text == "the documents you asked for"


@pytest.mark.parametrize("name", ["sticker_transition", "sticker_legacy"])
def test_a_sticker_is_one_sticker(name: str) -> None:
    """2026 transition: ``sticker`` and ``image`` for one sticker; before it, an image with a
    ``sticker_id``. Either way the app gets one sticker."""
    msg = one_message(messenger(name))
    assert msg.kind is MessageKind.STICKER
    assert len(msg.attachments) == 1
    assert msg.attachments[0].kind is AttachmentKind.STICKER


def test_location_attachment() -> None:
    msg = one_message(messenger("location"))
    assert msg.kind is MessageKind.LOCATION
    assert msg.attachments == []
    loc = msg.data["location"]
    assert (loc["latitude"], loc["longitude"]) == (52.520008, 13.404954)
    assert loc["name"] == "Pinned Location"


def test_fallback_shared_link_keeps_url_and_title() -> None:
    msg = one_message(messenger("fallback"))
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "https://www.example.com/article"
    assert msg.data["shares"] == [
        {"type": "fallback", "url": "https://www.example.com/article", "title": "An article worth reading"}
    ]


def test_postback_keeps_title_and_payload_as_interactive_reply() -> None:
    msg = one_message(messenger("postback"))
    assert msg.external_id == "m_POSTBACK1"
    assert msg.kind is MessageKind.INTERACTIVE_REPLY
    assert msg.interactive is not None
    assert (msg.interactive.id, msg.interactive.title) == ("HUMAN_PLEASE", "Talk to a person")
    assert msg.data["postback"] == {"title": "Talk to a person", "payload": "HUMAN_PLEASE"}


def test_postback_without_mid_gets_a_stable_id_and_keeps_its_referral() -> None:
    first, again = messenger("postback_referral"), messenger("postback_referral")
    msg = one_message(first)
    assert msg.external_id == f"postback:{PSID}:1764950400123" == one_message(again).external_id
    assert msg.data["referral"] == {"ref": "winter-sale", "source": "SHORTLINK", "type": "OPEN_THREAD"}


def test_echo_of_a_hub_send_names_the_hub_message() -> None:
    msg = one_message(messenger("echo_hub"))
    assert msg.direction is Direction.OUTBOUND
    assert msg.contact.ids == [f"psid:{PSID}"]  # the customer it went to, never the Page
    assert msg.outbound_id == "msg_abc123"
    assert msg.text == "Thanks, we are open until 6 pm."


def test_echo_from_another_tool_is_outbound_without_a_hub_id() -> None:
    msg = one_message(messenger("echo_other"))
    assert msg.direction is Direction.OUTBOUND
    assert msg.outbound_id is None
    assert msg.data["app_id"] == 263902037430900
    assert msg.contact.ids == [f"psid:{PSID}"]


def test_standby_echo_with_template_attachment() -> None:
    msg = one_message(messenger("standby"))
    assert msg.direction is Direction.OUTBOUND
    assert msg.kind is MessageKind.TEMPLATE
    assert msg.data["template"]["template_type"] == "media"


def test_delivery_watermark_with_mids() -> None:
    [ev] = messenger("delivery")
    assert isinstance(ev, WatermarkUpdate)
    assert ev.status is MessageStatus.DELIVERED
    assert ev.watermark == TS + timedelta(milliseconds=876)
    assert ev.external_ids == ["m_OUT1"]
    assert ev.contact.ids == [f"psid:{PSID}"]


def test_read_watermark() -> None:
    [ev] = messenger("read")
    assert isinstance(ev, WatermarkUpdate)
    assert ev.status is MessageStatus.READ
    assert ev.watermark == datetime(2025, 12, 5, 16, 0, 1, 500000, tzinfo=UTC)
    assert ev.external_ids == []


def test_reaction_react_and_unreact() -> None:
    [react] = messenger("reaction_react")
    [unreact] = messenger("reaction_unreact")
    assert isinstance(react, ReactionUpdate) and isinstance(unreact, ReactionUpdate)
    assert (react.target_external_id, react.emoji) == ("m_OUT1", "\u2764\ufe0f")
    assert (unreact.target_external_id, unreact.emoji) == ("m_OUT1", None)
    assert react.contact.ids == [f"psid:{PSID}"]


def test_message_edit_is_an_edit_event() -> None:
    [ev] = messenger("message_edit")
    assert isinstance(ev, MessageEdit)
    assert ev.target_external_id == "m_TEXT1-aY7IfLZDamVrALniheU"
    assert ev.text == "Is the shop open today?"
    assert ev.external_id == "m_TEXT1-aY7IfLZDamVrALniheU:edit:1"
    assert ev.direction is Direction.INBOUND


def test_referral_from_an_ad_is_a_system_note() -> None:
    msg = one_message(messenger("referral"))
    assert msg.kind is MessageKind.SYSTEM
    assert msg.data["referral"]["ad_id"] == "6045246247433"
    assert msg.text == "Came from ADS (ref spring-ad)"
    assert msg.external_id == one_message(messenger("referral")).external_id


def test_every_entry_and_event_of_a_batch() -> None:
    events = messenger("batch")
    assert [type(e).__name__ for e in events] == [
        "InboundMessage",
        "InboundMessage",
        "InboundMessage",
        "WatermarkUpdate",
    ]
    assert [e.external_id for e in events if isinstance(e, InboundMessage)] == ["m_B1", "m_B2", "m_B3"]


def test_unknown_event_skipped_and_empty_message_kept_as_unsupported() -> None:
    msg = one_message(messenger("unknown_event"))
    assert msg.external_id == "m_EMPTY1"
    assert msg.kind is MessageKind.UNSUPPORTED
    assert msg.data["raw"] == {"mid": "m_EMPTY1"}


def test_an_entry_for_another_page_is_skipped() -> None:
    assert messenger("other_page") == []


def test_instagram_text_keyed_by_igsid() -> None:
    msg = one_message(instagram("ig_text"))
    assert msg.contact.ids == [f"igsid:{IGSID}"]
    assert msg.text == "Grüße! Do you ship to Köln?"


def test_instagram_story_reply_and_mention() -> None:
    reply = one_message(instagram("ig_story_reply"))
    assert reply.data["story_reply"]["id"] == "17920000000000001"
    assert reply.text == "love this!"
    mention = one_message(instagram("ig_story_mention"))
    assert mention.data["shares"][0]["type"] == "story_mention"
    assert mention.text == "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2"


def test_instagram_unsend_is_a_deletion() -> None:
    [ev] = instagram("ig_deleted")
    assert isinstance(ev, MessageDeletion)
    assert ev.target_external_id == "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx"
    assert ev.contact is not None and ev.contact.ids == [f"igsid:{IGSID}"]


def test_instagram_seen_names_a_mid() -> None:
    [ev] = instagram("ig_read")
    assert isinstance(ev, WatermarkUpdate)
    assert ev.status is MessageStatus.READ
    assert ev.external_ids == ["aWdfOUT1"]
    assert ev.watermark == datetime(2025, 12, 5, 16, 0, 2, tzinfo=UTC)


def test_instagram_reaction_echo_unsupported_and_comments() -> None:
    [reaction] = instagram("ig_reaction")
    assert isinstance(reaction, ReactionUpdate) and reaction.emoji == "\u2764\ufe0f"
    echo = one_message(instagram("ig_echo"))
    assert echo.direction is Direction.OUTBOUND and echo.contact.ids == [f"igsid:{IGSID}"]
    unsupported = one_message(instagram("ig_unsupported"))
    assert unsupported.kind is MessageKind.UNSUPPORTED and unsupported.data["raw"]["is_unsupported"]
    assert instagram("ig_comments") == []  # comments on posts are not direct messages


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"object": "whatsapp_business_account", "entry": []}', b'{"object": "page"}x'],
)
def test_what_is_no_messenger_webhook_is_bad_payload(body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse_body(body, platform="messenger", account_id=PAGE_ID, log=LOG, received_at=RECEIVED_AT)


def test_a_page_body_on_an_instagram_channel_is_bad_payload() -> None:
    with pytest.raises(BadPayload):
        parse_body(load("text"), platform="instagram", account_id=IG_ID, log=LOG, received_at=RECEIVED_AT)
