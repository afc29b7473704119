"""Uploads and downloads: multipart (what FormData sends) and raw bodies, the type read from the
file itself, limits as large as the channels advertise (streamed, not buffered), and downloads
with the stored type and a safe Content-Disposition."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hub.appkeys import CONFIG
from tests.conftest import Hub
from tests.test_outbound import conversation, get_message, queued, send, status_is

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


def form(data: bytes, filename: str, content_type: str) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type=content_type)
    return body


async def upload(hub: Hub, body: Any, *, query: str = "", **headers: str) -> Any:
    return await hub.client.post(f"/api/v1/uploads{query}", data=body, headers={**hub.agent, **headers})


async def test_a_multipart_upload_stores_the_file_part_and_nothing_else(lite_hub: Hub) -> None:
    hub = lite_hub
    resp = await upload(hub, form(PNG, "photo.png", "image/png"))
    assert resp.status == 201, await resp.text()
    up = await resp.json()
    assert up["size"] == len(PNG)
    assert up["mime_type"] == "image/png"
    assert up["filename"] == "photo.png"
    assert up["kind"] == "image"
    assert set(up) == {"upload_id", "size", "mime_type", "filename", "kind"}
    conv = await conversation(hub)
    mid = await queued(hub, conv, {"attachments": [{"kind": "image", "upload_id": up["upload_id"]}]})
    await status_is(hub, mid, "sent")
    download = await hub.client.get(f"/api/v1/attachments/{mid}/0", headers=hub.agent)
    assert download.status == 200
    assert await download.read() == PNG


async def test_a_raw_upload_is_typed_by_its_content_not_by_its_header(lite_hub: Hub) -> None:
    resp = await upload(lite_hub, JPEG, query="?filename=x.bin", **{"Content-Type": "application/pdf"})
    assert resp.status == 201, await resp.text()
    up = await resp.json()
    assert (up["mime_type"], up["kind"], up["size"]) == ("image/jpeg", "image", len(JPEG))
    # Text has no signature: the declared type stands, unless it claims media the bytes do not show.
    text = await (await upload(lite_hub, b"a,b\n1,2\n", **{"Content-Type": "text/csv"})).json()
    assert (text["mime_type"], text["kind"]) == ("text/csv", "file")
    fake = await (await upload(lite_hub, b"not a picture", **{"Content-Type": "image/png"})).json()
    assert (fake["mime_type"], fake["kind"]) == ("application/octet-stream", "file")


async def test_a_multipart_body_without_a_file_or_empty_is_refused(lite_hub: Hub) -> None:
    body = aiohttp.FormData(default_to_multipart=True)
    body.add_field("caption", "only a caption")
    no_file = await upload(lite_hub, body)
    assert no_file.status == 422
    assert (await no_file.json())["error"]["details"][0]["field"] == "file"
    extra = form(PNG, "a.png", "image/png")
    extra.add_field("caption", "a field the form does not have")
    refused = await upload(lite_hub, extra)
    assert refused.status == 422, await refused.text()
    folder = lite_hub.client.app[CONFIG].hub.uploads_dir
    assert not list(folder.iterdir()), "a refused upload left a file behind"
    empty = await upload(lite_hub, form(b"", "empty.png", "image/png"))
    assert empty.status == 422
    raw_empty = await upload(lite_hub, b"")
    assert raw_empty.status == 422
    # A urlencoded form is no file: it is refused rather than stored as one.
    urlencoded = await upload(lite_hub, {"file": "abc"})
    assert urlencoded.status == 415, await urlencoded.text()


async def test_a_jpeg_sent_as_a_video_is_refused(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    up = await (await upload(hub, form(JPEG, "cat.jpg", "image/jpeg"))).json()
    # The fake channel sends images and files; the file's type must match the kind asked for.
    resp = await send(hub, conv, {"attachments": [{"kind": "video", "upload_id": up["upload_id"]}]})
    assert resp.status == 422, await resp.text()
    fields = {d["field"]: d["message"] for d in (await resp.json())["error"]["details"]}
    assert "image/jpeg" in fields["attachments.0.kind"]
    as_file = await send(hub, conv, {"attachments": [{"kind": "file", "upload_id": up["upload_id"]}]})
    assert as_file.status == 202, await as_file.text()


async def test_an_empty_upload_id_is_refused_at_the_api(lite_hub: Hub) -> None:
    conv = await conversation(lite_hub)
    resp = await send(lite_hub, conv, {"attachments": [{"kind": "image", "upload_id": ""}]})
    assert resp.status == 422, await resp.text()
    assert "attachments.0.upload_id" in [d["field"] for d in (await resp.json())["error"]["details"]]


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    chunk = b"%PDF-1.4\n" + b"x" * (size - 9)
    sent = 0
    while sent < total:
        part = chunk[: min(size, total - sent)]
        sent += len(part)
        yield part


async def test_uploads_go_past_the_body_limit_streamed_and_stop_at_their_own(
    make_hub: Any, sqlite_url: str
) -> None:
    # The hub's JSON/webhook body limit is 256 KiB here; uploads have their own, 12 MiB.
    hub = await make_hub(sqlite_url, max_upload_bytes=12 * 1024 * 1024)
    await hub.create_channel()
    tracemalloc.start()
    try:
        resp = await upload(hub, _chunks(12 * 1024 * 1024), **{"Content-Type": "application/pdf"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["size"] == 12 * 1024 * 1024
    # Streamed: nowhere near the file's size was held at once (the client's chunks included).
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes for a 12 MiB upload"
    over = await upload(hub, _chunks(12 * 1024 * 1024 + 1), **{"Content-Type": "application/pdf"})
    assert over.status == 413
    err = (await over.json())["error"]
    assert err["code"] == "payload_too_large" and err["details"] == {"limit": 12 * 1024 * 1024}
    declared = await upload(hub, b"x" * 2048, **{"Content-Length": str(13 * 1024 * 1024)})
    assert declared.status == 413
    folder = hub.client.app[CONFIG].hub.uploads_dir
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")], "a refused upload left a file"


def test_the_default_upload_limit_is_the_largest_a_channel_advertises() -> None:
    from hub.config import HubSection

    assert HubSection().max_upload_bytes == 100 * 1024 * 1024


@pytest.mark.parametrize(
    ("filename", "mime", "disposition"),
    [
        ("photo.png", "image/png", 'inline; filename="photo.png"'),
        ('evil"\r\nSet-Cookie: x=1.html', "text/html", "attachment; filename="),
        ("../../etc/passwd", "text/plain", 'attachment; filename="passwd"'),
        (
            "résumé.pdf",
            "application/pdf",
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
    ],
)
async def test_a_download_carries_the_stored_type_and_a_safe_disposition(
    lite_hub: Hub, filename: str, mime: str, disposition: str
) -> None:
    hub = lite_hub
    data = PNG if mime == "image/png" else (b"%PDF-1.4 x" if mime == "application/pdf" else b"<b>hi</b>")
    body = aiohttp.FormData()
    body.add_field("file", data, filename="f", content_type=mime)
    up = await (
        await hub.client.post("/api/v1/uploads", params={"filename": filename}, data=body, headers=hub.agent)
    ).json()
    conv = await conversation(hub)
    mid = await queued(hub, conv, {"attachments": [{"kind": "file", "upload_id": up["upload_id"]}]})
    message = await get_message(hub, mid)
    (att,) = message["attachments"]
    assert set(att) <= {"kind", "mime_type", "filename", "size", "caption", "url", "state"}, att
    assert att["url"].endswith(f"/api/v1/attachments/{mid}/0")
    resp = await hub.client.get(f"/api/v1/attachments/{mid}/0", headers=hub.agent)
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == mime
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    cd = resp.headers["Content-Disposition"]
    assert cd.startswith(disposition), cd
    assert "\r" not in cd and "\n" not in cd and "/" not in cd.split("filename*")[0]
    assert await resp.read() == data
