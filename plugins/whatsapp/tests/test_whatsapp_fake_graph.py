"""The real client code against FakeGraph on loopback: receipts, error classes, throttling,
timeouts, uploads, the two-step media download, health, and secrets kept out of every output."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import httpx
import pytest
from conftest import ChannelFactory
from hub_whatsapp import WhatsAppChannel
from wa_support import ACCESS_TOKEN, APP_SECRET, PNID, WA

from hub.channel import HealthState
from hub.errors import SendError, SendErrorClass
from hub.models import (
    AttachmentKind,
    ContactRef,
    MessageKind,
    OutboundAttachment,
    OutboundMessage,
)
from hub.testing.fake_graph import FakeGraph

MESSAGES = f"{PNID}/messages"


def text(body: str = "hello") -> OutboundMessage:
    return OutboundMessage(
        id="m1",
        channel_id="wa-1",
        conversation_id="c1",
        recipient=ContactRef(ids=[f"wa:{WA}"]),
        kind=MessageKind.TEXT,
        text=body,
    )


async def send_error(channel: WhatsAppChannel) -> SendError:
    with pytest.raises(SendError) as info:
        await channel.send(text())
    return info.value


async def test_send_receipts_count_up(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    first = await fg_channel.send(text("one"))
    second = await fg_channel.send(text("two"))
    assert first.external_id.startswith("wamid.")
    assert first.external_id != second.external_id
    (r1, r2) = graph.requests_to(MESSAGES, "POST")
    assert r1.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA,
        "type": "text",
        "text": {"body": "one", "preview_url": False},
        "biz_opaque_callback_data": "m1",
    }
    assert r1.header("authorization") == f"Bearer {ACCESS_TOKEN}"
    assert r1.path == f"/v26.0/{PNID}/messages"
    assert r2.json is not None and r2.json["text"]["body"] == "two"


# (HTTP status, code) -> (class, scope)
ERROR_CASES = [
    (400, 130429, SendErrorClass.RATE_LIMITED, "channel"),
    (400, 80007, SendErrorClass.RATE_LIMITED, "channel"),
    (400, 4, SendErrorClass.RATE_LIMITED, "channel"),
    (400, 131056, SendErrorClass.RATE_LIMITED, "recipient"),
    (500, 1, SendErrorClass.RETRYABLE, "channel"),
    (503, 2, SendErrorClass.RETRYABLE, "channel"),
    (500, 131000, SendErrorClass.RETRYABLE, "channel"),
    (503, 131016, SendErrorClass.RETRYABLE, "channel"),
    (400, 131047, SendErrorClass.NEEDS_TEMPLATE, "channel"),
    (400, 131026, SendErrorClass.RECIPIENT, "channel"),
    (401, 190, SendErrorClass.AUTH, "channel"),
    (400, 100, SendErrorClass.PERMANENT, "channel"),
    (400, 131008, SendErrorClass.PERMANENT, "channel"),
    (400, 131009, SendErrorClass.PERMANENT, "channel"),
    (400, 131051, SendErrorClass.PERMANENT, "channel"),
    (404, 132001, SendErrorClass.PERMANENT, "channel"),
    (400, 132000, SendErrorClass.PERMANENT, "channel"),
    (403, 368, SendErrorClass.AUTH, "channel"),
    (400, 131031, SendErrorClass.AUTH, "channel"),
    (502, 999999, SendErrorClass.RETRYABLE, "channel"),  # unknown code, 5xx
    (400, 999999, SendErrorClass.PERMANENT, "channel"),  # unknown code, other 4xx
]


@pytest.mark.parametrize(("status", "code", "error_class", "scope"), ERROR_CASES)
async def test_error_classes(
    fg_channel: WhatsAppChannel,
    graph: FakeGraph,
    status: int,
    code: int,
    error_class: SendErrorClass,
    scope: str,
) -> None:
    graph.fail(
        MESSAGES,
        status,
        code=code,
        message=f"(#{code}) Provider says no",
        details=f"details for {code}",
        subcode=2494010,
    )
    error = await send_error(fg_channel)
    assert error.error_class is error_class
    assert error.scope == scope
    assert error.provider_code == str(code)
    assert error.message == f"(#{code}) Provider says no: details for {code}"
    assert error.title == f"(#{code}) Provider says no"
    assert error.details["details"] == f"details for {code}"
    assert error.details["fbtrace_id"] == "AfakeTraceId"
    assert error.details["error_subcode"] == 2494010
    assert error.details["http_status"] == status
    assert error.as_dict()["class"] == error_class.value


async def test_the_next_send_succeeds_after_a_scripted_failure(
    fg_channel: WhatsAppChannel, graph: FakeGraph
) -> None:
    graph.fail(MESSAGES, 503, code=131016, times=2)
    for _ in range(2):
        assert (await send_error(fg_channel)).error_class is SendErrorClass.RETRYABLE
    assert (await fg_channel.send(text())).external_id.startswith("wamid.")


async def test_429_with_retry_after(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    graph.fail(MESSAGES, 429, code=130429, message="(#130429) Rate limit hit", headers={"Retry-After": "7"})
    error = await send_error(fg_channel)
    assert error.error_class is SendErrorClass.RATE_LIMITED
    assert error.retry_after == 7.0
    assert error.scope == "channel"


async def test_429_without_a_meta_body(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    graph.script(MESSAGES, 429, "Too Many Requests", headers={"Retry-After": "2.5"})
    error = await send_error(fg_channel)
    assert error.error_class is SendErrorClass.RATE_LIMITED
    assert error.retry_after == 2.5
    assert error.provider_code is None


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (500, SendErrorClass.RETRYABLE),
        (502, SendErrorClass.RETRYABLE),
        (401, SendErrorClass.AUTH),
        (404, SendErrorClass.PERMANENT),
    ],
)
async def test_non_json_errors(
    fg_channel: WhatsAppChannel, graph: FakeGraph, status: int, error_class: SendErrorClass
) -> None:
    graph.script(MESSAGES, status, "<html>oops</html>")
    error = await send_error(fg_channel)
    assert error.error_class is error_class
    assert error.message == f"Graph API answered HTTP {status}"


async def test_success_without_a_message_id_is_retryable(
    fg_channel: WhatsAppChannel, graph: FakeGraph
) -> None:
    graph.script(MESSAGES, 200, {"messaging_product": "whatsapp", "messages": []})
    assert (await send_error(fg_channel)).error_class is SendErrorClass.RETRYABLE


async def test_timeout_is_retryable(make_channel: ChannelFactory) -> None:
    async with FakeGraph(latency=1.0) as slow:
        channel = await make_channel(api_base_url=slow.base_url, request_timeout=0.2)
        error = await send_error(channel)
    assert error.error_class is SendErrorClass.RETRYABLE
    assert "0.2 s" in error.message


async def test_scripted_delay_only_slows_that_answer(make_channel: ChannelFactory) -> None:
    async with FakeGraph() as fake:
        channel = await make_channel(api_base_url=fake.base_url, request_timeout=0.3)
        fake.script(MESSAGES, 200, {"messages": [{"id": "wamid.LATE"}]}, delay=1.0)
        assert (await send_error(channel)).error_class is SendErrorClass.RETRYABLE
        assert (await channel.send(text())).external_id.startswith("wamid.")


async def test_unreachable_is_retryable(make_channel: ChannelFactory) -> None:
    fake = FakeGraph()
    await fake.start()
    base_url = fake.base_url
    await fake.stop()  # nothing listens there any more
    channel = await make_channel(api_base_url=base_url)
    error = await send_error(channel)
    assert error.error_class is SendErrorClass.RETRYABLE
    assert error.details["exception"] == "ConnectError"


async def test_bad_token_is_auth(make_channel: ChannelFactory, graph: FakeGraph) -> None:
    channel = await make_channel(api_base_url=graph.base_url, access_token="revoked-token")
    error = await send_error(channel)
    assert error.error_class is SendErrorClass.AUTH
    assert error.provider_code == "190"


async def test_mark_read(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    await fg_channel.mark_read("wamid.IN1", ContactRef(ids=[f"wa:{WA}"]))
    (request,) = graph.requests_to(MESSAGES)
    assert request.json == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }


async def test_upload_then_send(fg_channel: WhatsAppChannel, graph: FakeGraph, tmp_path: Any) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8jpeg-bytes")
    message = text().model_copy(
        update={
            "kind": MessageKind.IMAGE,
            "text": None,
            "attachments": [OutboundAttachment(kind=AttachmentKind.IMAGE, path=str(path))],
        }
    )
    receipt = await fg_channel.send(message)
    (upload,) = graph.requests_to(f"{PNID}/media", "POST")
    assert upload.header("authorization") == f"Bearer {ACCESS_TOKEN}"
    assert upload.form["messaging_product"] == "whatsapp"
    assert upload.form["type"] == "image/jpeg"
    assert upload.form["file"]["data"] == b"\xff\xd8jpeg-bytes"
    assert upload.form["file"]["filename"] == "photo.jpg"
    media_id = receipt.data["media_id"]
    assert graph.media[media_id].data == b"\xff\xd8jpeg-bytes"
    (send,) = graph.requests_to(MESSAGES, "POST")
    assert send.json is not None and send.json["image"] == {"id": media_id}


async def test_failed_upload_is_classified_and_nothing_is_sent(
    fg_channel: WhatsAppChannel, graph: FakeGraph, tmp_path: Any
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"png")
    graph.fail(f"{PNID}/media", 400, code=131053, message="Media upload error")
    message = text().model_copy(
        update={
            "kind": MessageKind.IMAGE,
            "attachments": [OutboundAttachment(kind=AttachmentKind.IMAGE, path=str(path))],
        }
    )
    with pytest.raises(SendError) as info:
        await fg_channel.send(message)
    assert info.value.error_class is SendErrorClass.PERMANENT
    assert graph.requests_to(MESSAGES) == []


async def test_media_two_step_download(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    data = b"OggS voice note bytes"
    media_id = graph.add_media(data, "audio/ogg")
    media = await fg_channel.fetch_media(media_id, None)
    assert media.data == data
    assert media.mime_type == "audio/ogg"
    assert media.sha256_hex == hashlib.sha256(data).hexdigest()
    info, download = graph.requests
    assert info.method == "GET" and info.path == f"/v26.0/{media_id}"
    assert info.query == {"phone_number_id": PNID}
    assert download.method == "GET" and download.path == f"/_media/{media_id}"
    for request in (info, download):
        assert request.header("authorization") == f"Bearer {ACCESS_TOKEN}"
        assert request.header("user-agent") == "hub-whatsapp/0.1"


async def test_media_sha256_mismatch(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    media_id = graph.add_media(b"tampered", "image/jpeg", sha256="0" * 64)
    with pytest.raises(SendError) as info:
        await fg_channel.fetch_media(media_id, None)
    assert info.value.error_class is SendErrorClass.RETRYABLE
    assert "sha256" in info.value.message


async def test_media_gone_is_classified(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    graph.fail("1234", 400, code=100, message="Unsupported get request.")
    with pytest.raises(SendError) as info:
        await fg_channel.fetch_media("1234", None)
    assert info.value.error_class is SendErrorClass.PERMANENT
    assert info.value.provider_code == "100"


async def test_media_download_step_failure(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    media_id = graph.add_media(b"x", "image/png")
    graph.script(f"/_media/{media_id}", 503, "busy")
    with pytest.raises(SendError) as info:
        await fg_channel.fetch_media(media_id, None)
    assert info.value.error_class is SendErrorClass.RETRYABLE


async def test_health_ok(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    graph.respond("GET", PNID, 200, {"id": PNID, "display_phone_number": "+1 555 078 3881"})
    health = await fg_channel.health_check()
    assert health.state is HealthState.OK
    (request,) = graph.requests
    assert request.path == f"/v26.0/{PNID}"
    assert "display_phone_number" in request.query["fields"]


async def test_health_auth_failed(make_channel: ChannelFactory, graph: FakeGraph) -> None:
    channel = await make_channel(api_base_url=graph.base_url, access_token="expired")
    health = await channel.health_check()
    assert health.state is HealthState.AUTH_FAILED
    assert health.last_error and "access token" in health.last_error


async def test_health_unreachable(make_channel: ChannelFactory) -> None:
    async with FakeGraph(latency=1.0) as slow:
        channel = await make_channel(api_base_url=slow.base_url, request_timeout=0.2)
        health = await channel.health_check()
    assert health.state is HealthState.UNREACHABLE


async def test_health_rate_limited(fg_channel: WhatsAppChannel, graph: FakeGraph) -> None:
    graph.fail(PNID, 400, code=80007, message="rate limited")
    assert (await fg_channel.health_check()).state is HealthState.RATE_LIMITED


async def test_planted_secrets_never_leak(
    fg_channel: WhatsAppChannel, graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that echoes our credentials must not make them visible anywhere."""
    echo = f"Invalid token {ACCESS_TOKEN} for app secret {APP_SECRET}"
    errors: list[SendError] = []
    with caplog.at_level(logging.DEBUG):
        for status, code in [(401, 190), (400, 100), (500, 1), (429, 130429)]:
            graph.fail(MESSAGES, status, code=code, message=echo, details=echo)
            errors.append(await send_error(fg_channel))
        graph.script(MESSAGES, 400, echo)  # not JSON at all
        errors.append(await send_error(fg_channel))
        graph.fail(PNID, 401, code=190, message=echo)
        health = await fg_channel.health_check()
        media_id = graph.add_media(b"x", sha256="f" * 64)
        with pytest.raises(SendError) as media_error:
            await fg_channel.fetch_media(media_id, None)
        errors.append(media_error.value)
    outputs = [caplog.text, health.last_error or "", repr(health.public())]
    for error in errors:
        outputs += [error.message, str(error), repr(error), str(error.title), str(error.details)]
        outputs.append(str(error.as_dict()))
    for text_ in outputs:
        assert ACCESS_TOKEN not in text_
        assert APP_SECRET not in text_
    assert "***" in errors[0].message  # the rest of the provider's message is kept
    assert "whatsapp:" in caplog.text  # the failures were logged (without the secrets)


async def test_secret_not_in_transport_errors(make_channel: ChannelFactory) -> None:
    channel = await make_channel(api_base_url="http://127.0.0.1:9/v26.0")
    error = await send_error(channel)
    assert error.error_class is SendErrorClass.RETRYABLE
    assert ACCESS_TOKEN not in error.message + str(error.details)


# ---- FakeGraph itself: generic enough for Messenger -------------------------------------------


async def test_fake_graph_messenger_send_path(graph: FakeGraph) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{graph.base_url}/me/messages",
            json={"recipient": {"id": "PSID1"}, "message": {"text": "hi"}},
            headers={"Authorization": f"Bearer {ACCESS_TOKEN}"},
        )
    assert response.json() == {"recipient_id": "PSID1", "message_id": "mid.1"}
    assert graph.requests_to("me/messages")[0].json == {
        "recipient": {"id": "PSID1"},
        "message": {"text": "hi"},
    }


async def test_fake_graph_scripts_by_method_and_in_order(graph: FakeGraph) -> None:
    graph.script("x/y", 500, {"n": 1}, method="GET")
    graph.script("x/y", 501, {"n": 2})
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    async with httpx.AsyncClient(headers=headers) as client:
        post = await client.post(f"{graph.base_url}/x/y", json={})
        get = await client.get(f"{graph.base_url}/x/y")
        again = await client.get(f"{graph.base_url}/x/y")
    assert (post.status_code, get.status_code, again.status_code) == (501, 500, 200)
    assert again.json() == {"id": "y"}
