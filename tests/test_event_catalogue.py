"""The realtime contract: each event type has a schema, the stream's frames and close codes are in
the AsyncAPI document, cursors ahead of the log get a resync, and lists say which seq they reflect."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.web import stream
from hub.web.asyncapi import CLOSE_CODES, FRAMES, HEARTBEAT_SECONDS
from hub.web.event_catalogue import CATALOGUE, EventPage, check_event, event_adapter
from tests.conftest import Hub, eventually, fake_message

ROOT = Path(__file__).resolve().parents[1]
_TYPE = re.compile(r"[a-z]+\.[a-z_]+")


def emitted_types() -> set[str]:
    """Each type written as ``tx.emit("type", ...)``, or as the first item of a 4-tuple (type,
    data, channel_id, conversation_id) in a function that calls ``emit_many``."""
    found: set[str] = set()
    for path in (ROOT / "hub").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
            for call in calls:
                if call.func.attr == "emit" and call.args and isinstance(call.args[0], ast.Constant):
                    found.add(call.args[0].value)
            if any(c.func.attr == "emit_many" for c in calls):
                for node in ast.walk(fn):
                    if (
                        isinstance(node, ast.Tuple)
                        and len(node.elts) == 4
                        and isinstance(node.elts[0], ast.Constant)
                        and isinstance(node.elts[0].value, str)
                        and _TYPE.fullmatch(node.elts[0].value)
                    ):
                        found.add(node.elts[0].value)
    return found


def test_every_type_the_code_emits_has_a_schema() -> None:
    found = emitted_types()
    # The scan itself works: it sees both emit forms.
    assert {"presence.updated", "message.created", "conversation.updated"} <= found
    assert found - set(CATALOGUE) == set(), "add these to CATALOGUE in hub/web/event_catalogue.py"


def test_the_check_refuses_unknown_types_and_data_off_the_schema() -> None:
    with pytest.raises(ValueError, match="no schema"):
        check_event("ticket.escalated", {"id": "t1"})
    with pytest.raises(ValueError, match=r"presence\.updated event data"):
        check_event("presence.updated", {"user_id": "u1", "status": "online"})  # fields missing
    with pytest.raises(ValueError, match="extra"):
        check_event(
            "access.changed", {"user_ids": ["u1"], "reason": "role", "secret": "leaked into the event"}
        )
    check_event("access.changed", {"user_ids": None, "reason": "role"})


async def test_an_emit_off_the_catalogue_fails_its_transaction(lite_hub: Hub) -> None:
    before = await hub_last_seq(lite_hub)
    with pytest.raises(ValueError, match="no schema"):
        async with lite_hub.store.tx() as tx:
            await tx.emit("ticket.escalated", {"id": "t1"})
    assert await hub_last_seq(lite_hub) == before


async def hub_last_seq(hub: Hub) -> int:
    return int(await hub.store.last_seq())


def test_the_openapi_document_has_one_schema_per_event_type(lite_hub: Hub) -> None:
    from hub.web.openapi import build_openapi

    doc = build_openapi(lite_hub.client.app, "http://hub.test")
    schemas = doc["components"]["schemas"]
    items = schemas["EventPage"]["properties"]["events"]["items"]
    mapping = items["discriminator"]["mapping"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(mapping) == set(CATALOGUE)
    for type_, ref in mapping.items():
        model = schemas[ref.rsplit("/", 1)[-1]]
        assert model["properties"]["type"]["const"] == type_
        assert model["properties"]["data"] != {"type": "object"}, type_
    # The loose parts of messages are typed too.
    message = schemas["Message"]["properties"]
    assert message["sender"]["$ref"].endswith("/Sender")
    assert schemas["Message"]["additionalProperties"] is False


async def test_the_asyncapi_document_describes_the_stream(lite_hub: Hub) -> None:
    resp = await lite_hub.client.get("/asyncapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["asyncapi"].startswith("3.")
    assert doc["channels"]["stream"]["address"] == "/api/v1/stream"
    assert set(FRAMES) <= set(doc["channels"]["stream"]["messages"])
    # Every close code the stream uses is documented, with what the app does.
    used = {stream.RESYNC_CLOSE, stream.REVOKED_CLOSE, stream.BEHIND_CLOSE}
    assert used <= set(CLOSE_CODES)
    assert {str(c) for c in used} <= set(doc["x-close-codes"])
    assert f"every {HEARTBEAT_SECONDS:g} s" in doc["info"]["description"]
    schemas = doc["components"]["schemas"]
    mapping = schemas["EventFrame"]["properties"]["event"]["discriminator"]["mapping"]
    assert set(mapping) == set(CATALOGUE)


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = msg.json()
    return data


async def test_a_cursor_ahead_of_the_log_gets_the_resync_answer(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(fake_message("a1", "ann"))
    await eventually(hub.conversations)
    last = await hub_last_seq(hub)
    resp = await hub.client.get(f"/api/v1/events?after={last + 1}", headers=hub.agent)
    assert resp.status == 410
    err = (await resp.json())["error"]
    assert err["code"] == "cursor_ahead"
    assert err["details"] == {"reason": "ahead", "oldest_seq": 1, "last_seq": last}
    # At the end exactly: nothing missed, nothing to resync.
    assert (await hub.client.get(f"/api/v1/events?after={last}", headers=hub.agent)).status == 200
    ws = await hub.client.ws_connect("/api/v1/stream?after=99999", headers=hub.agent)
    first = await frame(ws)
    assert first["type"] == "resync" and first["reason"] == "ahead" and first["last_seq"] == last
    FRAMES["resync"].model_validate(first)
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == stream.RESYNC_CLOSE


async def test_lists_say_which_seq_they_reflect(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(fake_message("s1", "sam"))
    conv = (await eventually(hub.conversations))[0]
    last = await hub_last_seq(hub)
    for path in (
        "/api/v1/conversations",
        f"/api/v1/conversations/{conv['id']}",
        f"/api/v1/conversations/{conv['id']}/messages",
    ):
        resp = await hub.client.get(path, headers=hub.agent)
        assert resp.status == 200
        assert resp.headers["X-Hub-Seq"] == str(last), path


async def test_a_send_updates_the_conversation_with_an_event(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(fake_message("c1", "cy"))
    conv = (await eventually(hub.conversations))[0]
    after = await hub_last_seq(hub)
    sent = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": "on its way"},
        headers={**hub.agent, "Idempotency-Key": "conv-updated-1"},
    )
    assert sent.status == 202
    msg = await sent.json()
    events = await eventually(lambda: _conv_updates(hub, after))
    update = events[0]
    assert update["conversation_id"] == conv["id"]
    assert update["data"]["last_message_at"] == msg["created_at"]
    assert update["data"]["changed"] == ["last_message_at"]
    assert update["data"]["by"]["id"] == msg["sender"]["id"]
    page = EventPage.model_validate(
        await (await hub.client.get(f"/api/v1/events?after={after}", headers=hub.agent)).json()
    )
    assert [e.type for e in page.events][:2] == ["message.created", "conversation.updated"]


async def _conv_updates(hub: Hub, after: int) -> list[dict[str, Any]]:
    return [e for e in await hub.events(after) if e["type"] == "conversation.updated"]


def test_the_adapter_selects_the_schema_by_type() -> None:
    adapter = event_adapter()
    base = {"seq": 1, "channel_id": None, "conversation_id": None, "created_at": "2026-12-06T00:00:00Z"}
    ok = adapter.validate_python({**base, "type": "access.changed", "data": {"user_ids": [], "reason": "x"}})
    assert type(ok).__name__ == "AccessChangedEvent"
    with pytest.raises(ValueError):
        adapter.validate_python({**base, "type": "presence.updated", "data": {"user_ids": [], "reason": "x"}})
