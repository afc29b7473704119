"""A WebSocket client that falls behind is closed with 4429 and resumes from its cursor, losing
nothing; one that never reads is dropped within the send timeout, with no error logged."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from typing import Any

import aiohttp
import pytest

from hub.appkeys import METRICS
from hub.web.stream import BEHIND_CLOSE
from tests.conftest import Hub, eventually
from tests.test_hostile_input import assert_no_error_logged
from tests.test_stream import until_live


async def burst(hub: Hub, n: int, size: int) -> int:
    """``n`` events of ``size`` bytes in one transaction (published to streams at once); the last seq."""
    hub.store.check = None  # synthetic events: the log's mechanics, not the catalogue
    async with hub.store.tx() as tx:
        events = await tx.emit_many(
            [("test.burst", {"i": i, "pad": "x" * size}, "fk", None) for i in range(n)]
        )
    return events[-1].seq


def clients(hub: Hub) -> float:
    return float(hub.client.app[METRICS].stream_clients._value.get())


async def test_a_client_that_falls_behind_gets_4429_and_resumes_without_loss(
    make_hub: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hub = await make_hub(sqlite_url, stream_queue_bytes=64 * 1024)
    await hub.create_channel()
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    replayed, live = await until_live(ws)
    seen = [e["seq"] for e in replayed]
    # 100 KB at once is over the client's 64 KiB queue: it is behind before it could read a frame.
    last = await burst(hub, 50, 2000)
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        seen.append(msg.json()["event"]["seq"])
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert ws.close_code == BEHIND_CLOSE
    assert any("fell behind" in r.getMessage() for r in caplog.records)
    # Resume from the cursor: every event arrives, once and in order.
    cursor = seen[-1] if seen else live["last_seq"]
    ws2 = await hub.client.ws_connect(f"/api/v1/stream?after={cursor}", headers=hub.agent)
    more, _ = await until_live(ws2)
    seen += [e["seq"] for e in more]
    await ws2.close()
    assert seen == list(range(1, last + 1))
    assert_no_error_logged(caplog)


def never_reading_client(port: int, token: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that upgrades and then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /api/v1/stream?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_client_that_never_reads_is_dropped(
    make_hub: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hub = await make_hub(sqlite_url, stream_send_timeout=2.0)
    await hub.create_channel()
    port = hub.client.server.port
    token = hub.agent["Authorization"].removeprefix("Bearer ")
    sock = await asyncio.to_thread(never_reading_client, port, token)
    reader = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    await until_live(reader)
    received: list[int] = []

    async def read() -> None:
        async for m in reader:
            if m.type == aiohttp.WSMsgType.TEXT:
                received.append(m.json()["event"]["seq"])

    reading = asyncio.create_task(read())
    try:
        await eventually(lambda: asyncio.sleep(0, clients(hub) == 2))
        started = time.monotonic()
        # Up to ~6 MB: more than loopback's socket buffers hold for the stuck client.
        last = 0
        for _ in range(60):
            last = await burst(hub, 10, 10_000)
            await asyncio.sleep(0.01)
            if clients(hub) == 1:
                break
        await eventually(lambda: asyncio.sleep(0, clients(hub) == 1), within=15)
        dropped_after = time.monotonic() - started
        # The reading client is not held up by the stuck one, and is still connected.
        await eventually(lambda: asyncio.sleep(0, received and received[-1] == last))
        assert not reader.closed
    finally:
        sock.close()
        await reader.close()
        reading.cancel()
    assert dropped_after < 15
    assert any("fell behind" in r.getMessage() for r in caplog.records)
    assert_no_error_logged(caplog)
