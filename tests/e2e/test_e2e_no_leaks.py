"""Nothing about the server leaves the hub: no file path in messages or events, no database error
text on ``/healthz``. Against real ``hub serve`` processes."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from e2e_support import (
    PG_HELP,
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    create_wa_channel,
    inbound_conversation,
    phone,
    postgres_problem,
    postgres_url,
    unique,
    wait_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_an_uploaded_attachment_is_shown_by_the_hubs_url_never_by_its_server_path(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="No paths")
    conv = await inbound_conversation(api, ch, phone())
    server_dir = str(shared_hub.dir.resolve())
    data = b"%PDF-1.4 " + secrets.token_bytes(2048)
    after = await api.last_seq()
    async with EventStream(http, shared_hub.base_url, api.token or "", after) as stream:
        up = await api.ok(
            "POST",
            "/api/v1/uploads",
            expect=201,
            data=data,
            params={"filename": "terms.pdf"},
            headers={"Content-Type": "application/pdf"},
        )
        answer = await api.request(
            "POST",
            f"/api/v1/conversations/{conv}/messages",
            json_body={"attachments": [{"kind": "file", "upload_id": up["upload_id"]}]},
            headers={"Idempotency-Key": unique("k")},
        )
        assert answer.status == 202, answer
        mid = answer.json["id"]
        await wait_status(api, mid, "sent")
        await stream.wait_event("message.updated", id=mid, status="sent")
        frames = json.dumps(stream.frames)
    message = await api.message(mid)
    history = await api.messages(conv)
    events = await api.events(after)
    for where, text in [
        ("the 202 answer", answer.text),
        ("GET /messages/{id}", json.dumps(message)),
        ("the conversation's history", json.dumps(history)),
        ("GET /events", json.dumps(events)),
        ("the WebSocket stream", frames),
    ]:
        assert server_dir not in text, f"{where} carries the server's path {server_dir}: {text[:2000]}"
        assert '"path"' not in text, f"{where} carries a path field: {text[:2000]}"
    (att,) = message["attachments"]
    assert att["url"] == f"{shared_hub.base_url}/api/v1/attachments/{mid}/0", att
    assert att["filename"] == "terms.pdf" and att["size"] == len(data)
    async with http.get(att["url"], headers={"Authorization": f"Bearer {api.token}"}) as resp:
        assert resp.status == 200
        assert await resp.read() == data


async def test_healthz_names_no_database_error_to_an_anonymous_caller(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The database goes away under a running hub: /healthz says so, generically, and logs why."""
    import asyncpg

    server = postgres_url()
    problem = await postgres_problem(server)
    if problem is not None:
        pytest.skip(PG_HELP.format(url=server, error=problem))
    parts = urlsplit(server)
    name = f"{parts.path.lstrip('/') or 'postgres'}_hub_health_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server, timeout=5)
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the PostgreSQL role may not create databases")
        hub = HubProcess(tmp_path / "hub", database_url=urlunsplit(parts._replace(path="/" + name)))
        try:
            await hub.bootstrap()
            async with http.get(f"{hub.base_url}/healthz") as resp:
                assert resp.status == 200
            # No new connection may open, and the open ones are cut: every query now fails.
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            async with http.get(f"{hub.base_url}/healthz") as resp:
                status, body = resp.status, await resp.text()
            assert status == 503, body
            assert json.loads(body) == {"status": "error", "database": "unavailable"}, body
            assert name not in body
            for _ in range(50):  # the log line is written as the answer goes out
                if "health check: the database did not answer" in hub.log_text():
                    break
                await asyncio.sleep(0.1)
            assert "health check: the database did not answer" in hub.log_text(), hub.log_tail()
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await hub.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
