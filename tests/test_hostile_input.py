"""Hostile and careless input to the app API: each gets a 4xx in the one error shape, a warning at
most (never an ERROR with a traceback), and changes nothing."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema
from tests.conftest import Hub, eventually
from tests.test_api import error_of, first_conversation, msg


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


async def conversation(hub: Hub) -> str:
    await hub.webhook(msg("m-hostile"))
    return str((await first_conversation(hub))["id"])


async def post_raw(hub: Hub, method: str, path: str, body: bytes, **headers: str) -> Any:
    return await hub.client.request(
        method, path, data=body, headers={"Content-Type": "application/json", **hub.admin, **headers}
    )


async def last_seq(hub: Hub) -> int:
    resp = await hub.client.get("/healthz")
    return int((await resp.json())["last_seq"])


async def test_non_standard_json_is_422_on_every_json_endpoint(lite_hub: Hub, no_error_logs: Any) -> None:
    hub = lite_hub
    cid = await conversation(hub)
    before = await last_seq(hub)
    bodies = {
        f"/api/v1/conversations/{cid}": ("PATCH", '{{"custom_attributes": {{"score": {}}}}}'),
        f"/api/v1/conversations/{cid}/messages": ("POST", '{{"text": "hi", "x": {}}}'),
        "/api/v1/auth/login": ("POST", '{{"email": "a@b.c", "password": {}}}'),
        "/api/v1/admin/channels": ("POST", '{{"type": "fake", "name": "n", "settings": {{"v": {}}}}}'),
        "/api/v1/admin/channels/fk": ("PATCH", '{{"settings": {{"v": {}}}}}'),
    }
    for path, (method, template) in bodies.items():
        for constant in ("NaN", "Infinity", "-Infinity", "1e400"):
            resp = await post_raw(hub, method, path, template.format(constant).encode())
            err = await error_of(resp, 422, "validation_failed")
            assert "finite" in err["details"][0]["message"], (path, constant, err)
    assert await last_seq(hub) == before
    assert_no_error_logged(no_error_logs)


@pytest.mark.parametrize("depth", [40, 100_000])
async def test_deeply_nested_json_is_422(lite_hub: Hub, no_error_logs: Any, depth: int) -> None:
    hub = lite_hub
    cid = await conversation(hub)
    nested = "[" * depth + "]" * depth
    for method, path, body in [
        ("POST", f"/api/v1/conversations/{cid}/messages", f'{{"text": {nested}}}'),
        ("PATCH", f"/api/v1/conversations/{cid}", f'{{"custom_attributes": {{"a": {nested}}}}}'),
        ("POST", "/api/v1/auth/login", f'{{"email": {nested}, "password": "x"}}'),
    ]:
        resp = await post_raw(hub, method, path, body.encode())
        err = await error_of(resp, 422, "validation_failed")
        assert "nested deeper" in err["details"][0]["message"], err
    assert_no_error_logged(no_error_logs)


async def test_lone_surrogates_and_nul_are_422_naming_the_field(hub: Hub, no_error_logs: Any) -> None:
    """On both databases: SQLite stores a lone surrogate only to fail reading it back, PostgreSQL
    refuses it and NUL outright."""
    cid = await conversation(hub)
    before = await last_seq(hub)
    cases = [
        ("POST", f"/api/v1/conversations/{cid}/messages", r'{"text": "bad \ud83d emoji"}', "text"),
        ("POST", f"/api/v1/conversations/{cid}/messages", r'{"text": "nul \u0000 here"}', "text"),
        ("PATCH", f"/api/v1/conversations/{cid}", r'{"labels": ["ok", "bad \udc00"]}', "labels.1"),
        (
            "PATCH",
            f"/api/v1/conversations/{cid}",
            r'{"custom_attributes": {"\ud800": 1}}',
            "custom_attributes",
        ),
        ("PATCH", f"/api/v1/conversations/{cid}", r'{"team": "a\u0000b"}', "team"),
    ]
    for method, path, body, field in cases:
        resp = await post_raw(hub, method, path, body.encode(), **{"Idempotency-Key": body[:40]})
        err = await error_of(resp, 422, "validation_failed")
        assert err["details"][0]["field"].startswith(field), (body, err)
    assert await last_seq(hub) == before
    async with hub.store.db.read() as conn:
        outbound = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(schema.messages)
            .where(schema.messages.c.direction == "outbound")
        )
    assert outbound == 0
    assert_no_error_logged(no_error_logs)


async def test_out_of_range_numbers_in_the_query_and_path_are_4xx(hub: Hub, no_error_logs: Any) -> None:
    for after in ("9223372036854775808", "-1", "1" * 5000, "1e3"):
        resp = await hub.client.get(f"/api/v1/events?after={after}", headers=hub.agent)
        await error_of(resp, 400, "bad_request")
    # The largest integer is read (and, being ahead of the log, answered with a resync, not a 500).
    ahead = await hub.client.get("/api/v1/events?after=9223372036854775807", headers=hub.agent)
    await error_of(ahead, 410, "cursor_ahead")
    for index in ("99999999999999999999999", "-1", "²"):
        resp = await hub.client.get(f"/api/v1/attachments/msg_x/{index}", headers=hub.agent)
        await error_of(resp, 404, "not_found")
    assert_no_error_logged(no_error_logs)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_malformed_cursors_are_400(hub: Hub, no_error_logs: Any) -> None:
    cursors = [
        "not-base64!",
        _cursor([]),
        _cursor(["2026-01-01T00:00:00+00:00"]),
        _cursor([1, "cv_x"]),
        _cursor(["not a time", "cv_x"]),
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
        _cursor(["2026-01-01T00:00:00+00:00", "\ud800"]),
        _cursor({"a": 1}),
        _cursor("text"),
        base64.urlsafe_b64encode(b"[" * 5_000).decode(),  # under the URL line limit
    ]
    for cursor in cursors:
        resp = await hub.client.get("/api/v1/conversations", params={"cursor": cursor}, headers=hub.agent)
        await error_of(resp, 400, "bad_request")
    for name in ("status", "channel_id", "assignee_id"):
        resp = await hub.client.get(f"/api/v1/conversations?{name}=a%00b", headers=hub.agent)
        await error_of(resp, 400, "bad_request")
    assert_no_error_logged(no_error_logs)


async def test_every_written_field_has_a_limit_named_in_the_422(lite_hub: Hub, no_error_logs: Any) -> None:
    hub = lite_hub
    cid = await conversation(hub)
    before = await last_seq(hub)
    patches: list[tuple[dict[str, Any], str]] = [
        ({"team": "t" * 201}, "team"),
        ({"assignee_id": "u" * 257}, "assignee_id"),
        ({"labels": [f"l{i}" for i in range(51)]}, "labels"),
        ({"labels": ["x" * 65]}, "labels.0"),
        ({"labels": [""]}, "labels.0"),
        ({"custom_attributes": {f"k{i}": i for i in range(51)}}, "custom_attributes"),
        ({"custom_attributes": {"k" * 65: 1}}, "custom_attributes"),
        ({"custom_attributes": {"k": "v" * 1025}}, "custom_attributes.k"),
        ({"custom_attributes": {"k": {"nested": 1}}}, "custom_attributes.k"),
    ]
    for body, field in patches:
        resp = await hub.client.patch(f"/api/v1/conversations/{cid}", json=body, headers=hub.agent)
        err = await error_of(resp, 422, "validation_failed")
        assert any(d["field"].startswith(field) for d in err["details"]), (body, err)
    sends: list[tuple[dict[str, Any], str]] = [
        ({"text": "x" * 65_537}, "text"),
        ({"text": "x", "subject": "s" * 4097}, "subject"),
        ({"attachments": [{"kind": "image", "url": "http://a/" + "b" * 2048}]}, "attachments.0.url"),
        ({"attachments": [{"kind": "image", "url": "http://a/b"}] * 11}, "attachments"),
        ({"reaction": {"message_id": "m", "emoji": "x" * 33}}, "reaction.emoji"),
        ({"template": {"name": "t", "language": "en", "components": [{"x": "y" * 33_000}]}}, "template"),
        (
            {"interactive": {"body": "b", "choices": [{"id": "1", "title": "t" * 201}]}},
            "interactive.choices.0.title",
        ),
    ]
    for body, field in sends:
        resp = await hub.client.post(f"/api/v1/conversations/{cid}/messages", json=body, headers=hub.agent)
        err = await error_of(resp, 422, "validation_failed")
        assert any(d["field"].startswith(field) for d in err["details"]), (body, err)
    login = await hub.client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "p" * 1025})
    err = await error_of(login, 422, "validation_failed")
    assert err["details"][0]["field"] == "password"
    channel = {"type": "fake", "name": "n", "settings": {f"s{i}": "v" for i in range(101)}}
    resp = await hub.client.post("/api/v1/admin/channels", json=channel, headers=hub.admin)
    err = await error_of(resp, 422, "validation_failed")
    assert err["details"][0]["field"] == "settings"
    assert await last_seq(hub) == before
    # At the limits, all is accepted (once the label and the attribute are defined).
    await hub.define_label("x" * 64)
    await hub.define_attribute("k" * 64)
    ok = await hub.client.patch(
        f"/api/v1/conversations/{cid}",
        json={"labels": ["x" * 64] * 50, "custom_attributes": {"k" * 64: "v" * 1024}},
        headers=hub.agent,
    )
    assert ok.status == 200, await ok.text()
    assert_no_error_logged(no_error_logs)


async def test_the_limits_are_in_the_openapi_document(lite_hub: Hub) -> None:
    doc = await (await lite_hub.client.get("/openapi.json")).json()
    patch = doc["components"]["schemas"]["ConversationPatch"]["properties"]
    team = next(s for s in patch["team"]["anyOf"] if s.get("type") == "string")
    assert team["maxLength"] == 200
    labels = patch["labels"]  # null is refused, and the schema does not offer it
    assert labels["type"] == "array" and labels["maxItems"] == 50 and labels["items"]["maxLength"] == 64
    attrs = patch["custom_attributes"]
    assert attrs["type"] == "object"
    assert attrs["maxProperties"] == 50 and attrs["propertyNames"]["maxLength"] == 64
    send = doc["components"]["schemas"]["SendRequest"]["properties"]
    text = next(s for s in send["text"]["anyOf"] if s.get("type") == "string")
    assert text["maxLength"] == 65_536


async def test_a_json_body_over_max_json_bytes_is_413(make_hub: Any, sqlite_url: str) -> None:
    hub = await make_hub(sqlite_url, max_json_bytes=2048)
    resp = await hub.client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "x" * 3000})
    err = await error_of(resp, 413, "payload_too_large")
    assert "2048" in err["message"]


async def test_query_token_only_on_the_stream_route(lite_hub: Hub) -> None:
    hub = lite_hub
    token = hub.agent["Authorization"].removeprefix("Bearer ")
    for path in ("/api/v1/conversations/stream", "/api/v1/me", "/api/v1/channels"):
        resp = await hub.client.get(path, params={"token": token})
        await error_of(resp, 401, "unauthorized")
    ws = await hub.client.ws_connect("/api/v1/stream", params={"token": token})
    frames = [await ws.receive_json(timeout=5)]
    while frames[-1]["type"] == "event":
        frames.append(await ws.receive_json(timeout=5))
    assert frames[-1]["type"] == "live"
    await ws.close()


async def test_a_nul_in_a_header_logs_no_error(lite_hub: Hub, no_error_logs: Any) -> None:
    import asyncio

    hub = lite_hub
    assert hub.client.server.port is not None
    cid = await conversation(hub)
    token = hub.agent["Authorization"]
    replies = []
    for header in (b"X-Junk: a\x00b", b"Idempotency-Key: a\x00b", b"Authorization: Bearer a\x00b"):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.client.server.port)
        body = b'{"text": "hi"}'
        writer.write(
            b"POST /api/v1/conversations/"
            + cid.encode()
            + b"/messages HTTP/1.1\r\nHost: x\r\n"
            + b"Authorization: "
            + token.encode()
            + b"\r\n" * (not header.startswith(b"Auth"))
            + header
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
        replies.append(await asyncio.wait_for(reader.read(), 10))
        writer.close()
    for reply in replies:
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, reply
    assert_no_error_logged(no_error_logs)
    await eventually(lambda: asyncio.sleep(0, True))
