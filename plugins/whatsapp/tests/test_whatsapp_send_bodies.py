"""send(): the exact request Meta receives for every outbound kind (respx-mocked Graph API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hub_whatsapp import WhatsAppChannel
from wa_support import ACCESS_TOKEN, BASE_URL, PNID, WA

from hub.channel import RateLimit
from hub.errors import SendError, SendErrorClass
from hub.models import (
    AttachmentKind,
    ContactRef,
    InteractiveChoice,
    MessageKind,
    OutboundAttachment,
    OutboundMessage,
    SendReceipt,
    Template,
)

MESSAGES_URL = f"{BASE_URL}/{PNID}/messages"
RECIPIENT = ContactRef(ids=[f"wa:{WA}", "bsuid:US.1234"], name="Kerry Fisher", phone=WA)
BARE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA}
# Every send but a reaction names the hub's message, so Meta's statuses can name it back.
BASE = {**BARE, "biz_opaque_callback_data": "m1"}


def out(kind: MessageKind, **fields: Any) -> OutboundMessage:
    fields.setdefault("recipient", RECIPIENT)
    return OutboundMessage(id="m1", channel_id="wa-1", conversation_id="c1", kind=kind, **fields)


def ok(message_id: str = "wamid.SENT1") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": WA, "wa_id": WA}],
            "messages": [{"id": message_id}],
        },
    )


async def sent_body(channel: WhatsAppChannel, message: OutboundMessage) -> dict[str, Any]:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(MESSAGES_URL).mock(return_value=ok())
        receipt = await channel.send(message)
    assert receipt == SendReceipt(external_id="wamid.SENT1")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.content)
    return body


async def test_text(channel: WhatsAppChannel) -> None:
    body = await sent_body(channel, out(MessageKind.TEXT, text="Hello!"))
    assert body == {**BASE, "type": "text", "text": {"body": "Hello!", "preview_url": False}}


async def test_text_with_preview_and_reply(channel: WhatsAppChannel) -> None:
    message = out(
        MessageKind.TEXT,
        text="See https://example.com",
        preview_url=True,
        reply_to_external_id="wamid.IN1",
    )
    assert await sent_body(channel, message) == {
        **BASE,
        "context": {"message_id": "wamid.IN1"},
        "type": "text",
        "text": {"body": "See https://example.com", "preview_url": True},
    }


@pytest.mark.parametrize(
    ("kind", "att_kind", "wa_type"),
    [
        (MessageKind.IMAGE, AttachmentKind.IMAGE, "image"),
        (MessageKind.VIDEO, AttachmentKind.VIDEO, "video"),
    ],
)
async def test_media_by_id_with_caption(
    channel: WhatsAppChannel, kind: MessageKind, att_kind: AttachmentKind, wa_type: str
) -> None:
    att = OutboundAttachment(kind=att_kind, media_id="1234567890", caption="Look")
    body = await sent_body(channel, out(kind, attachments=[att]))
    assert body == {**BASE, "type": wa_type, wa_type: {"id": "1234567890", "caption": "Look"}}


async def test_image_by_link_takes_text_as_caption(channel: WhatsAppChannel) -> None:
    att = OutboundAttachment(kind=AttachmentKind.IMAGE, url="https://cdn.example.com/a.jpg")
    body = await sent_body(channel, out(MessageKind.IMAGE, attachments=[att], text="caption"))
    assert body == {
        **BASE,
        "type": "image",
        "image": {"link": "https://cdn.example.com/a.jpg", "caption": "caption"},
    }


async def test_audio_and_sticker_carry_no_caption(channel: WhatsAppChannel) -> None:
    audio = OutboundAttachment(kind=AttachmentKind.AUDIO, media_id="777", caption="ignored")
    assert await sent_body(channel, out(MessageKind.AUDIO, attachments=[audio])) == {
        **BASE,
        "type": "audio",
        "audio": {"id": "777"},
    }
    sticker = OutboundAttachment(kind=AttachmentKind.STICKER, url="https://cdn.example.com/s.webp")
    assert await sent_body(channel, out(MessageKind.STICKER, attachments=[sticker])) == {
        **BASE,
        "type": "sticker",
        "sticker": {"link": "https://cdn.example.com/s.webp"},
    }


async def test_document(channel: WhatsAppChannel) -> None:
    att = OutboundAttachment(
        kind=AttachmentKind.FILE,
        url="https://cdn.example.com/invoice.pdf",
        filename="invoice.pdf",
        caption="Your invoice",
    )
    body = await sent_body(channel, out(MessageKind.FILE, attachments=[att]))
    assert body == {
        **BASE,
        "type": "document",
        "document": {
            "link": "https://cdn.example.com/invoice.pdf",
            "caption": "Your invoice",
            "filename": "invoice.pdf",
        },
    }


async def test_local_file_is_uploaded_first(channel: WhatsAppChannel, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 test")
    att = OutboundAttachment(kind=AttachmentKind.FILE, path=str(path), mime_type="application/pdf")
    with respx.mock(assert_all_called=True) as mock:
        upload = mock.post(f"{BASE_URL}/{PNID}/media").mock(
            return_value=httpx.Response(200, json={"id": "9988776655"})
        )
        send = mock.post(MESSAGES_URL).mock(return_value=ok())
        receipt = await channel.send(out(MessageKind.FILE, attachments=[att]))
    assert receipt.external_id == "wamid.SENT1"
    assert receipt.data["media_id"] == "9988776655"
    up = upload.calls.last.request
    assert up.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert up.headers["content-type"].startswith("multipart/form-data")
    assert b'name="messaging_product"\r\n\r\nwhatsapp' in up.content
    assert b'name="type"\r\n\r\napplication/pdf' in up.content
    assert b'filename="report.pdf"' in up.content and b"%PDF-1.4 test" in up.content
    assert json.loads(send.calls.last.request.content) == {
        **BASE,
        "type": "document",
        "document": {"id": "9988776655", "filename": "report.pdf"},
    }


async def test_template(channel: WhatsAppChannel) -> None:
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "Kerry"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "YES"}],
        },
    ]
    message = out(
        MessageKind.TEMPLATE,
        template=Template(name="order_update", language="en_US", components=components),
    )
    assert await sent_body(channel, message) == {
        **BASE,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": components},
    }


async def test_template_without_components(channel: WhatsAppChannel) -> None:
    message = out(MessageKind.TEMPLATE, template=Template(name="hello_world", language="en_US"))
    assert await sent_body(channel, message) == {
        **BASE,
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }


async def test_reaction_and_removal(channel: WhatsAppChannel) -> None:
    react = out(MessageKind.REACTION, reply_to_external_id="wamid.IN1", reaction_emoji="😀")
    assert await sent_body(channel, react) == {
        **BARE,
        "type": "reaction",
        "reaction": {"message_id": "wamid.IN1", "emoji": "😀"},
    }
    remove = out(MessageKind.REACTION, reply_to_external_id="wamid.IN1")
    assert (await sent_body(channel, remove))["reaction"] == {"message_id": "wamid.IN1", "emoji": ""}


async def test_interactive_buttons(channel: WhatsAppChannel) -> None:
    message = out(
        MessageKind.INTERACTIVE,
        text="Confirm your booking?",
        interactive_header="Booking",
        interactive=[
            InteractiveChoice(id="yes", title="Yes"),
            InteractiveChoice(id="no", title="No"),
            InteractiveChoice(id="later", title="Later"),
        ],
    )
    assert await sent_body(channel, message) == {
        **BASE,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": {"type": "text", "text": "Booking"},
            "body": {"text": "Confirm your booking?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                    {"type": "reply", "reply": {"id": "later", "title": "Later"}},
                ]
            },
        },
    }


async def test_interactive_list(channel: WhatsAppChannel) -> None:
    rows = [
        InteractiveChoice(id=f"slot-{i}", title=f"Slot {i}", description="Dr. Ames" if i else None)
        for i in range(4)
    ]
    message = out(
        MessageKind.INTERACTIVE,
        text="Pick a time",
        interactive=rows,
        interactive_button="See slots",
        data={"section_title": "Tuesday"},
    )
    assert await sent_body(channel, message) == {
        **BASE,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Pick a time"},
            "action": {
                "button": "See slots",
                "sections": [
                    {
                        "title": "Tuesday",
                        "rows": [
                            {"id": "slot-0", "title": "Slot 0"},
                            {"id": "slot-1", "title": "Slot 1", "description": "Dr. Ames"},
                            {"id": "slot-2", "title": "Slot 2", "description": "Dr. Ames"},
                            {"id": "slot-3", "title": "Slot 3", "description": "Dr. Ames"},
                        ],
                    }
                ],
            },
        },
    }


async def test_location(channel: WhatsAppChannel) -> None:
    loc = {"latitude": 37.48, "longitude": -122.14, "name": "Office", "address": "1 Hacker Way"}
    assert await sent_body(channel, out(MessageKind.LOCATION, data={"location": loc})) == {
        **BASE,
        "type": "location",
        "location": loc,
    }


async def test_bsuid_only_recipient_uses_recipient_field(channel: WhatsAppChannel) -> None:
    message = out(MessageKind.TEXT, text="hi", recipient=ContactRef(ids=["bsuid:US.13491208655302741918"]))
    body = await sent_body(channel, message)
    assert "to" not in body
    assert body["recipient"] == "US.13491208655302741918"
    assert body["messaging_product"] == "whatsapp"


async def test_mark_read(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(MESSAGES_URL).mock(return_value=httpx.Response(200, json={"success": True}))
        await channel.mark_read("wamid.IN1", RECIPIENT)
    assert json.loads(route.calls.last.request.content) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }


@pytest.mark.parametrize(
    "message",
    [
        out(MessageKind.TEXT),
        out(MessageKind.IMAGE),
        out(MessageKind.IMAGE, attachments=[OutboundAttachment(kind=AttachmentKind.IMAGE)]),
        out(MessageKind.TEMPLATE),
        out(MessageKind.REACTION, reaction_emoji="x"),
        out(MessageKind.INTERACTIVE, text="x"),
        out(MessageKind.INTERACTIVE, interactive=[InteractiveChoice(id="a", title="A")]),
        out(
            MessageKind.INTERACTIVE,
            text="x",
            interactive=[InteractiveChoice(id=str(i), title=str(i)) for i in range(11)],
        ),
        out(MessageKind.LOCATION, data={"location": {"latitude": 1}}),
        out(MessageKind.EMAIL, text="x"),
    ],
)
async def test_invalid_messages_fail_permanently_without_a_request(
    channel: WhatsAppChannel, message: OutboundMessage
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MESSAGES_URL).mock(return_value=ok())
        with pytest.raises(SendError) as info:
            await channel.send(message)
    assert info.value.error_class is SendErrorClass.PERMANENT
    assert not route.called


async def test_recipient_without_ids_is_a_recipient_error(channel: WhatsAppChannel) -> None:
    message = out(MessageKind.TEXT, text="x", recipient=ContactRef(ids=["email:a@example.com"]))
    with respx.mock(assert_all_called=False), pytest.raises(SendError) as info:
        await channel.send(message)
    assert info.value.error_class is SendErrorClass.RECIPIENT


async def test_unreadable_local_file(channel: WhatsAppChannel, tmp_path: Path) -> None:
    att = OutboundAttachment(kind=AttachmentKind.IMAGE, path=str(tmp_path / "missing.jpg"))
    with respx.mock(assert_all_called=False), pytest.raises(SendError) as info:
        await channel.send(out(MessageKind.IMAGE, attachments=[att]))
    assert info.value.error_class is SendErrorClass.PERMANENT


def test_rate_limits(channel: WhatsAppChannel) -> None:
    assert channel.rate_limits(out(MessageKind.TEXT, text="x")) == [
        RateLimit(f"number:{PNID}", rate=80.0, burst=80.0),
        RateLimit(f"pair:{PNID}:{WA}", rate=1 / 6, burst=45.0),
    ]
    bsuid = out(MessageKind.TEXT, text="x", recipient=ContactRef(ids=["bsuid:US.1"]))
    assert channel.rate_limits(bsuid)[1].key == f"pair:{PNID}:US.1"
