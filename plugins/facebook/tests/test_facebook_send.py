"""Outbound through the real Graph client against FakeGraph on loopback: request bodies, the
reply-window policy choosing ``messaging_type``, error classes, rate limits, uploads, sender
actions, profiles (fetched once, cached, never blocking) and the health check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fb_support import IG_ID, IGSID, PAGE_ID, PSID
from hub_facebook import MessengerChannel
from hub_facebook.policy import messaging_type, reply_window

from hub.channel import HealthState
from hub.errors import SendError, SendErrorClass
from hub.models import (
    ContactRef,
    InteractiveChoice,
    MessageKind,
    OutboundAttachment,
    OutboundMessage,
    SendContext,
    Template,
    utcnow,
)
from hub.testing.fake_graph import FakeGraph

MAKE = Callable[..., Awaitable[MessengerChannel]]
CUSTOMER = ContactRef(ids=[f"psid:{PSID}"])


def out(hours_since_customer: float | None = 1.0, author: str = "agent", **fields: Any) -> OutboundMessage:
    last = None if hours_since_customer is None else utcnow() - timedelta(hours=hours_since_customer)
    values: dict[str, Any] = {
        "id": "msg_1",
        "channel_id": "fb-1",
        "conversation_id": "cv_1",
        "recipient": CUSTOMER,
        "kind": MessageKind.TEXT,
        "text": "hello",
        "context": SendContext(last_inbound_at=last, author=author),  # type: ignore[arg-type]
    }
    values.update(fields)
    return OutboundMessage(**values)


async def sent_bodies(graph: FakeGraph) -> list[dict[str, Any]]:
    return [r.json for r in graph.requests_to("me/messages", "POST")]


# ---- the reply window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "author", "expected"),
    [
        (0.1, "agent", {"messaging_type": "RESPONSE"}),
        (23.9, "bot", {"messaging_type": "RESPONSE"}),
        (25, "agent", {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}),
        (24 * 7 - 0.1, "agent", {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}),
    ],
)
def test_messaging_type_follows_the_window(hours: float, author: str, expected: dict[str, str]) -> None:
    now = utcnow()
    assert messaging_type(now - timedelta(hours=hours), author, now) == expected


@pytest.mark.parametrize(
    ("hours", "author"),
    [(25, "bot"), (25, "automation"), (24 * 7 + 0.1, "agent"), (None, "agent")],
)
def test_beyond_the_window_is_refused_with_the_window_class(hours: float | None, author: str) -> None:
    now = utcnow()
    with pytest.raises(SendError) as info:
        messaging_type(None if hours is None else now - timedelta(hours=hours), author, now)
    assert info.value.error_class is SendErrorClass.NEEDS_TEMPLATE
    assert info.value.title == "Reply window closed"


def test_reply_window_open_tag_then_closed() -> None:
    now = utcnow()
    assert reply_window(now - timedelta(hours=1), now).open
    tagged = reply_window(now - timedelta(days=2), now)
    assert not tagged.open and tagged.outside == "tag" and tagged.permits(MessageKind.TEXT)
    closed = reply_window(now - timedelta(days=8), now)
    assert not closed.open and not closed.permits(MessageKind.TEXT)
    assert not reply_window(None, now).permits(MessageKind.TEXT)


async def test_send_picks_messaging_type_per_message(make_fb_channel: MAKE, fb_graph: FakeGraph) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    receipt = await channel.send(out(1))
    assert receipt.external_id.startswith("mid.")
    await channel.send(out(30, id="msg_2"))
    with pytest.raises(SendError) as info:
        await channel.send(out(30, author="bot", id="msg_3"))
    assert info.value.error_class is SendErrorClass.NEEDS_TEMPLATE
    first, second = await sent_bodies(fb_graph)  # the refused one never reached Meta
    assert first == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "hello", "metadata": "hub:msg_1"},
    }
    assert (second["messaging_type"], second["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


# ---- bodies --------------------------------------------------------------------------------------


async def test_reply_attachment_by_url_and_quick_replies(make_fb_channel: MAKE, fb_graph: FakeGraph) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    await channel.send(out(reply_to_external_id="m_IN1"))
    await channel.send(
        out(
            kind=MessageKind.IMAGE,
            text=None,
            attachments=[OutboundAttachment(kind="image", url="https://files.test/a.png")],
        )
    )
    choices = [InteractiveChoice(id=f"C{i}", title=f"Choice number {i} is long") for i in range(5)]
    await channel.send(out(kind=MessageKind.INTERACTIVE, text="Pick one", interactive=choices))
    reply, image, quick = await sent_bodies(fb_graph)
    assert reply["reply_to"] == {"mid": "m_IN1"}
    assert image["message"]["attachment"] == {
        "type": "image",
        "payload": {"url": "https://files.test/a.png", "is_reusable": True},
    }
    assert quick["message"]["text"] == "Pick one"
    assert len(quick["message"]["quick_replies"]) == 5
    assert quick["message"]["quick_replies"][0] == {
        "content_type": "text",
        "title": "Choice number 0 is l",  # Meta's 20-character limit
        "payload": "C0",
    }


async def test_button_and_generic_templates(make_fb_channel: MAKE, fb_graph: FakeGraph) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    yes_no = [InteractiveChoice(id="YES", title="Yes"), InteractiveChoice(id="NO", title="No")]
    await channel.send(out(kind=MessageKind.INTERACTIVE, text="Still need help?", interactive=yes_no))
    element = {"title": "Blue shirt", "subtitle": "29 EUR", "image_url": "https://files.test/s.png"}
    tpl = Template(name="generic", language="en", components=[element])
    await channel.send(out(kind=MessageKind.TEMPLATE, text=None, template=tpl))
    buttons, generic = await sent_bodies(fb_graph)
    assert buttons["message"]["attachment"]["payload"] == {
        "template_type": "button",
        "text": "Still need help?",
        "buttons": [
            {"type": "postback", "title": "Yes", "payload": "YES"},
            {"type": "postback", "title": "No", "payload": "NO"},
        ],
    }
    assert generic["message"]["attachment"]["payload"] == {"template_type": "generic", "elements": [element]}


async def test_instagram_sends_quick_replies_no_button_template_no_metadata(
    make_fb_channel: MAKE, fb_graph: FakeGraph
) -> None:
    channel = await make_fb_channel("instagram", api_base_url=fb_graph.base_url)
    ig = ContactRef(ids=[f"igsid:{IGSID}"])
    yes_no = [InteractiveChoice(id="YES", title="Yes"), InteractiveChoice(id="NO", title="No")]
    await channel.send(out(recipient=ig, kind=MessageKind.INTERACTIVE, text="Help?", interactive=yes_no))
    with pytest.raises(SendError) as info:
        tpl = Template(name="button", language="en", components=[{"text": "x", "buttons": []}])
        await channel.send(out(recipient=ig, kind=MessageKind.TEMPLATE, text=None, template=tpl))
    assert info.value.error_class is SendErrorClass.PERMANENT
    [body] = await sent_bodies(fb_graph)
    assert body["recipient"] == {"id": IGSID}
    assert "quick_replies" in body["message"] and "metadata" not in body["message"]
    with pytest.raises(SendError) as no_id:
        await channel.send(out(recipient=CUSTOMER))  # a PSID is no Instagram id
    assert no_id.value.error_class is SendErrorClass.RECIPIENT


async def test_stored_file_is_uploaded_then_sent_by_attachment_id(
    make_fb_channel: MAKE, fb_graph: FakeGraph, tmp_path: Path
) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    fb_graph.respond("POST", "me/message_attachments", 200, {"attachment_id": "1857777774821032"})
    path = tmp_path / "invoice.pdf"
    path.write_bytes(b"%PDF-1.7 invoice")
    await channel.send(
        out(kind=MessageKind.FILE, text=None, attachments=[OutboundAttachment(kind="file", path=str(path))])
    )
    [upload] = fb_graph.requests_to("me/message_attachments", "POST")
    assert upload.form["filedata"]["data"] == b"%PDF-1.7 invoice"
    assert upload.form["filedata"]["filename"] == "invoice.pdf"
    assert '"type": "file"' in upload.form["message"]
    [body] = await sent_bodies(fb_graph)
    assert body["message"]["attachment"] == {"type": "file", "payload": {"attachment_id": "1857777774821032"}}


async def test_no_upload_when_the_window_refuses(
    make_fb_channel: MAKE, fb_graph: FakeGraph, tmp_path: Path
) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    path = tmp_path / "a.png"
    path.write_bytes(b"png")
    with pytest.raises(SendError):
        await channel.send(
            out(
                24 * 8,
                kind=MessageKind.IMAGE,
                text=None,
                attachments=[OutboundAttachment(kind="image", path=str(path))],
            )
        )
    assert fb_graph.requests == []


# ---- errors, limits, actions, profiles, health ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "subcode", "expected"),
    [
        (400, 10, None, SendErrorClass.NEEDS_TEMPLATE),
        (400, 10, 2018278, SendErrorClass.NEEDS_TEMPLATE),
        (400, 10, 2534022, SendErrorClass.NEEDS_TEMPLATE),
        (400, 551, 1545041, SendErrorClass.RECIPIENT),
        (400, 613, None, SendErrorClass.RATE_LIMITED),
        (400, 190, 460, SendErrorClass.AUTH),
        (500, 2, None, SendErrorClass.RETRYABLE),
        (400, 100, 2018001, SendErrorClass.RECIPIENT),
        (400, 100, None, SendErrorClass.PERMANENT),
        (400, 987654, None, SendErrorClass.PERMANENT),
        (503, 987654, None, SendErrorClass.RETRYABLE),
    ],
)
async def test_error_codes_are_classified(
    make_fb_channel: MAKE,
    fb_graph: FakeGraph,
    status: int,
    code: int,
    subcode: int | None,
    expected: SendErrorClass,
) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    fb_graph.fail("me/messages", status, code=code, subcode=subcode, message=f"(#{code}) nope")
    with pytest.raises(SendError) as info:
        await channel.send(out())
    assert info.value.error_class is expected
    assert info.value.provider_code == str(code)


async def test_rate_limit_is_per_page_or_account(make_fb_channel: MAKE) -> None:
    messenger = await make_fb_channel(messages_per_second=25)
    instagram = await make_fb_channel("instagram")
    [limit] = messenger.rate_limits(out())
    assert (limit.key, limit.rate) == (f"messenger:{PAGE_ID}", 25.0)
    [ig_limit] = instagram.rate_limits(out())
    assert (ig_limit.key, ig_limit.rate) == (f"instagram:{IG_ID}", 100.0)


async def test_sender_actions_mark_seen_and_typing(make_fb_channel: MAKE, fb_graph: FakeGraph) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    await channel.mark_read("m_IN1", CUSTOMER)
    await channel.sender_action(CUSTOMER, "typing_on")
    bodies = await sent_bodies(fb_graph)
    assert bodies == [
        {"recipient": {"id": PSID}, "sender_action": "mark_seen"},
        {"recipient": {"id": PSID}, "sender_action": "typing_on"},
    ]
    with pytest.raises(SendError):
        await channel.sender_action(CUSTOMER, "dance")


async def test_profile_name_fetched_once_and_a_failure_is_remembered(
    make_fb_channel: MAKE, fb_graph: FakeGraph
) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    fb_graph.respond("GET", PSID, 200, {"first_name": "Kerry", "last_name": "Fisher", "id": PSID})
    for _ in range(3):
        named = await channel.fetch_profile(CUSTOMER)
        assert named is not None and named.name == "Kerry Fisher" and named.ids == CUSTOMER.ids
    assert len(fb_graph.requests_to(PSID, "GET")) == 1
    assert fb_graph.requests_to(PSID)[0].query["fields"] == "first_name,last_name,name"
    other = ContactRef(ids=["psid:555"])
    fb_graph.fail("555", 400, code=100, message="Unsupported get request")
    assert await channel.fetch_profile(other) is None
    assert await channel.fetch_profile(other) is None
    assert len(fb_graph.requests_to("555")) == 1


async def test_health_check(make_fb_channel: MAKE, fb_graph: FakeGraph) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    assert (await channel.health_check()).state is HealthState.OK
    assert fb_graph.requests_to(PAGE_ID, "GET")[0].query["fields"] == "id,name"
    fb_graph.fail(PAGE_ID, 401, code=190, message="Error validating access token")
    health = await channel.health_check()
    assert health.state is HealthState.AUTH_FAILED and "access token" in (health.last_error or "")
    wrong = await make_fb_channel(api_base_url=fb_graph.base_url, page_access_token="not-the-token")
    assert (await wrong.health_check()).state is HealthState.AUTH_FAILED


async def test_media_is_fetched_from_the_cdn_without_the_token(
    make_fb_channel: MAKE, fb_graph: FakeGraph
) -> None:
    channel = await make_fb_channel(api_base_url=fb_graph.base_url)
    media_id = fb_graph.add_media(b"\x89PNG data", "image/png")
    fb_graph.access_token = None  # a CDN: no token needed, and none must be sent
    content = await channel.fetch_media("", f"{fb_graph.root_url}/_media/{media_id}")
    assert content.data == b"\x89PNG data" and content.mime_type == "image/png"
    assert fb_graph.requests[-1].header("authorization") is None
    with pytest.raises(SendError):
        await channel.fetch_media("", None)
