"""Edits, revokes, messages the business sent from the WhatsApp Business app, and played receipts,
each on a fixture shaped as Meta documents it (webhooks reference: messages ``edit`` and
``revoke``, ``smb_message_echoes``, status ``played``)."""

from __future__ import annotations

from datetime import UTC, datetime

from hub_whatsapp import WhatsAppChannel
from wa_support import WA, raw

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
    StatusUpdate,
    status_advances,
)

KERRY = ContactRef(ids=[f"wa:{WA}"], name="Kerry Fisher", phone=WA)
# An echo names the customer by number only: no profile comes with it.
CUSTOMER = ContactRef(ids=[f"wa:{WA}"], phone=WA)


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def test_a_customer_edit_of_a_text(channel: WhatsAppChannel) -> None:
    assert channel.parse(raw("edit_text")) == [
        MessageEdit(
            target_external_id="wamid.TEXT1",
            external_id="wamid.EDIT1",
            contact=KERRY,
            kind=MessageKind.TEXT,
            text="Hello, is the shop open tomorrow?",
            timestamp=at(1749416390),
        )
    ]


def test_a_customer_edit_of_a_caption_keeps_the_media(channel: WhatsAppChannel) -> None:
    (edit,) = channel.parse(raw("edit_image"))
    assert isinstance(edit, MessageEdit)
    assert (edit.target_external_id, edit.kind, edit.text) == ("wamid.IMG1", MessageKind.IMAGE, None)
    (image,) = edit.attachments
    assert image.kind is AttachmentKind.IMAGE
    assert (image.external_id, image.caption) == ("1003383421387256", "the blue one, not the red")
    assert image.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_customer_revoke(channel: WhatsAppChannel) -> None:
    assert channel.parse(raw("revoke")) == [
        MessageDeletion(
            target_external_id="wamid.TEXT1",
            external_id="wamid.REVOKE1",
            contact=KERRY,
            timestamp=at(1749416395),
        )
    ]


def test_an_echo_is_an_outbound_message_to_the_customer(channel: WhatsAppChannel) -> None:
    assert channel.parse(raw("echo_text")) == [
        InboundMessage(
            external_id="wamid.ECHO1",
            contact=CUSTOMER,
            direction=Direction.OUTBOUND,
            kind=MessageKind.TEXT,
            text="Yes, until 6 pm!",
            timestamp=at(1749416400),
        )
    ]


def test_an_echoed_image_is_outbound_too(channel: WhatsAppChannel) -> None:
    (echo,) = channel.parse(raw("echo_image"))
    assert isinstance(echo, InboundMessage)
    assert (echo.direction, echo.kind, echo.contact) == (Direction.OUTBOUND, MessageKind.IMAGE, CUSTOMER)
    assert echo.attachments == [
        Attachment(
            kind=AttachmentKind.IMAGE,
            mime_type="image/jpeg",
            caption="our opening hours",
            external_id="1479537139650973",
        )
    ]


def test_the_business_edits_and_revokes_from_the_app(channel: WhatsAppChannel) -> None:
    assert channel.parse(raw("echo_edit")) == [
        MessageEdit(
            target_external_id="wamid.ECHO1",
            external_id="wamid.ECHO2",
            contact=CUSTOMER,
            direction=Direction.OUTBOUND,
            text="Yes, until 7 pm!",
            timestamp=at(1749416410),
        )
    ]
    assert channel.parse(raw("echo_revoke")) == [
        MessageDeletion(
            target_external_id="wamid.ECHO1",
            external_id="wamid.ECHO3",
            contact=CUSTOMER,
            direction=Direction.OUTBOUND,
            timestamp=at(1749416420),
        )
    ]


def test_played_counts_as_read_or_later(channel: WhatsAppChannel) -> None:
    (played,) = channel.parse(raw("status_played"))
    assert isinstance(played, StatusUpdate)
    assert (played.external_id, played.status) == ("wamid.OUTVOICE1", MessageStatus.PLAYED)
    assert status_advances(MessageStatus.READ, played.status)
    assert not status_advances(MessageStatus.PLAYED, MessageStatus.READ)
    assert not status_advances(MessageStatus.PLAYED, MessageStatus.FAILED)


def test_an_edit_naming_no_message_is_a_placeholder(channel: WhatsAppChannel) -> None:
    body = raw("edit_text").body.replace(b'"original_message_id": "wamid.TEXT1",', b"")
    (event,) = channel.parse(raw(body))
    assert isinstance(event, InboundMessage)
    assert (event.kind, event.direction) == (MessageKind.UNSUPPORTED, Direction.INBOUND)
