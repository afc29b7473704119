"""The app's inbox against a real ``hub serve``: uploads that reach the provider byte for byte,
checked filters, and (further down) unread counts per agent and search within the caller's scope."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import pytest
from e2e_support import (
    Api,
    HubProcess,
    ThreadedFakeGraph,
    assert_error,
    create_wa_channel,
    inbound_conversation,
    phone,
    unique,
    wait_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# A JPEG's signature and JFIF header, then noise: several times the hub's 64 KiB body limit here.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + secrets.token_bytes(300_000)


async def multipart_upload(
    http: aiohttp.ClientSession, hub: HubProcess, data: bytes, filename: str, content_type: str
) -> dict[str, Any]:
    """``POST /api/v1/uploads`` as a browser's FormData sends it."""
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with http.post(
        f"{hub.base_url}/api/v1/uploads", data=form, headers={"Authorization": f"Bearer {hub.token}"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return dict(body)


async def test_a_multipart_image_upload_reaches_the_provider_byte_for_byte(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Uploads")
    conv = await inbound_conversation(api, ch, phone())
    up = await multipart_upload(http, shared_hub, JPEG, "photo.jpg", "image/jpeg")
    assert (up["mime_type"], up["kind"], up["size"]) == ("image/jpeg", "image", len(JPEG))
    # Sent as a video, the JPEG is refused before anything is queued.
    wrong = await api.post(
        f"/api/v1/conversations/{conv}/messages",
        {"attachments": [{"kind": "video", "upload_id": up["upload_id"]}]},
        headers={"Idempotency-Key": unique("k")},
    )
    assert_error(wrong, 422, "validation_failed")
    empty = await api.post(
        f"/api/v1/conversations/{conv}/messages",
        {"attachments": [{"kind": "image", "upload_id": ""}]},
        headers={"Idempotency-Key": unique("k")},
    )
    assert_error(empty, 422, "validation_failed")
    sent = await api.ok(
        "POST",
        f"/api/v1/conversations/{conv}/messages",
        expect=202,
        json_body={"attachments": [{"kind": "image", "upload_id": up["upload_id"], "caption": "look"}]},
        headers={"Idempotency-Key": unique("k")},
    )
    await wait_status(api, sent["id"], "sent")
    (request,) = graph.sends(ch.phone_number_id)
    image = request.json["image"]
    media = graph.call(lambda: graph.graph.media[image["id"]])
    assert media.data == JPEG, "the provider did not receive the uploaded bytes as they were"
    assert media.mime_type == "image/jpeg"
    message = await api.message(sent["id"])
    (att,) = message["attachments"]
    assert set(att) <= {"kind", "mime_type", "filename", "size", "caption", "url", "state"}, att
    async with http.get(att["url"], headers={"Authorization": f"Bearer {api.token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert resp.headers["Content-Disposition"].startswith('inline; filename="photo.jpg"')
        assert await resp.read() == JPEG


async def test_unknown_filter_values_are_400(api: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Filters")
    conv = await inbound_conversation(api, ch, phone())
    assert_error(await api.get("/api/v1/conversations?status=bogus"), 400, "bad_request")
    assert_error(await api.get("/api/v1/conversations?assignee=nobody"), 400, "bad_request")
    assert_error(await api.get(f"/api/v1/conversations/{conv}/messages?before=msg_nope"), 400)
    assert_error(await api.get(f"/api/v1/conversations/{conv}/messages?after=msg_nope"), 400)
