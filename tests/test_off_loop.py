"""The event loop never blocks on files: uploads are written and fetched media is hashed and
written in worker threads; and each resource of the app has its own cleanup context, so a start-up
that fails halfway stops what it had started."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hub import uploads as uploads_module
from hub.channel import MediaContent
from hub.testing.fake_channel import FakeChannel, FakePlugin
from hub.web import app as app_module
from hub.web.app import create_app
from tests.conftest import Hub, eventually

MEDIA = b"\x89PNG" + b"media-1" * 1000
MEDIA_SIZE = len(MEDIA)


class MediaFakeChannel(FakeChannel):
    """The fake channel, with media to fetch (the provider gives no hash: the hub computes it)."""

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        assert attachment_external_id == "media-1"
        return MediaContent(data=MEDIA, mime_type="image/png")


@pytest.fixture
def fake_cls() -> type[FakeChannel]:
    cls: type[FakeChannel] = MediaFakeChannel.isolated()
    return cls


@pytest.fixture
def threads_of(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[int]]:
    """The threads that wrote files and hashed bytes during the test."""
    seen: dict[str, set[int]] = {"write_bytes": set(), "sha256": set()}
    real_write, real_sha = Path.write_bytes, hashlib.sha256

    def write_bytes(self: Path, data: Any) -> int:
        seen["write_bytes"].add(threading.get_ident())
        return real_write(self, data)

    def sha256(*args: Any, **kwargs: Any) -> Any:
        if args and len(args[0]) >= MEDIA_SIZE:  # not a webhook body's small hash (signature, key)
            seen["sha256"].add(threading.get_ident())
        return real_sha(*args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(hashlib, "sha256", sha256)
    return seen


async def test_an_upload_is_written_off_the_event_loop(
    lite_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: set[int] = set()
    real_write = uploads_module._write

    def write(fh: Any, data: bytes) -> None:
        writers.add(threading.get_ident())
        real_write(fh, data)

    monkeypatch.setattr(uploads_module, "_write", write)
    data = b"%PDF" + bytes(range(256)) * 4096  # 1 MiB: written in several chunks
    resp = await lite_hub.client.post(
        "/api/v1/uploads?filename=a.pdf",
        data=data,
        headers={**lite_hub.agent, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201, await resp.text()
    loop_thread = threading.get_ident()
    assert writers, "the upload was not written through hub.uploads._write"
    assert loop_thread not in writers, "the upload was written on the event loop"


async def test_fetched_media_is_hashed_and_written_off_the_event_loop(
    lite_hub: Hub, threads_of: dict[str, set[int]]
) -> None:
    hub = lite_hub
    event = {"type": "message", "id": "m-media", "from": "ann", "ts": 1_700_000_000}
    event["attachment"] = {"kind": "image", "id": "media-1", "mime_type": "image/png"}
    assert (await hub.webhook(event)).status == 200

    async def ready() -> dict[str, Any] | None:
        for ev in await hub.events():
            atts = ev["data"].get("attachments") or []
            if ev["type"] == "message.updated" and atts and atts[0].get("state") == "ready":
                return dict(atts[0])
        return None

    att = await eventually(ready, within=20)
    expected = hashlib.new("sha256", MEDIA).hexdigest()
    assert att["sha256"] == expected
    loop_thread = threading.get_ident()
    assert threads_of["sha256"] and loop_thread not in threads_of["sha256"], "media hashed on the loop"
    assert threads_of["write_bytes"] and loop_thread not in threads_of["write_bytes"]
    download = await hub.client.get(att["url"].removeprefix("http://hub.test"), headers=hub.agent)
    assert download.status == 200 and await download.read() == MEDIA


async def test_a_start_up_failing_halfway_stops_what_it_started(
    hub_config: Any, sqlite_url: str, fake_cls: type[FakeChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The media worker cannot start: the inbox and the processor, started before it, are stopped
    and the database closed, instead of running on with nobody to stop them."""

    async def broken_start(self: Any) -> None:
        raise RuntimeError("media worker cannot start")

    monkeypatch.setattr(app_module.MediaWorker, "start", broken_start)
    app = create_app(hub_config(sqlite_url), extra_plugins=[("fake", FakePlugin(fake_cls))])
    server = TestServer(app)
    with pytest.raises(RuntimeError, match="media worker cannot start"):
        await server.start_server()
    await server.close()  # what `hub serve` does when start-up fails: the app's cleanup
    await asyncio.sleep(0.05)
    running = sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("hub-"))
    assert running == [], f"tasks left running after a failed start-up: {running}"
