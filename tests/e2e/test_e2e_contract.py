"""The app developer's realtime contract, through a real ``hub serve``: every event the hub emits
validates against its type's schema in the served documents (``/openapi.json`` for
``GET /api/v1/events``, ``/asyncapi.json`` for the stream's frames), a cursor ahead of the log gets
a resync, and a list loaded with ``X-Hub-Seq: N`` followed by a stream from ``after=N`` misses no
event.

The hubs run with ``check_events`` on (e2e_support), so an emit off the catalogue fails in the hub
as well; these tests check what an app receives, with the documents it is given.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    create_wa_channel,
    deliver_text,
    inbound_conversation,
    phone,
    send_text,
    unique,
    wa_status,
    wa_status_webhook,
    wait_status,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def validator(doc: dict[str, Any], name: str) -> Any:
    """A JSON Schema validator for ``#/components/schemas/<name>`` of a served document."""
    return jsonschema_rs.Draft202012Validator({"components": doc["components"], **_ref(name)})


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def problems(check: Any, instance: Any) -> list[str]:
    return [f"{e.instance_path}: {e.message}"[:300] for e in check.iter_errors(instance)]


async def test_every_event_the_hub_emits_validates_against_its_schema(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    openapi = await api.ok("GET", "/openapi.json")
    asyncapi = await api.ok("GET", "/asyncapi.json")
    page_check = validator(openapi, "EventPage")
    frame_checks = {
        name: validator(asyncapi, msg["payload"]["$ref"].rsplit("/", 1)[-1])
        for name, msg in asyncapi["components"]["messages"].items()
    }
    types_documented = set(
        openapi["components"]["schemas"]["EventPage"]["properties"]["events"]["items"]["discriminator"][
            "mapping"
        ]
    )
    start = await api.last_seq()
    assert shared_hub.token is not None
    async with EventStream(http, shared_hub.base_url, shared_hub.token, start) as stream:
        await stream.wait_live()
        # A flow that makes the hub emit most kinds of event.
        ch = await create_wa_channel(api, graph.base_url, name="Contract")
        wa_id = phone()
        conv_id = await inbound_conversation(api, ch, wa_id)
        sent = await send_text(api, conv_id, "the contract holds")
        sent = await wait_status(api, sent["id"], "sent")
        delivered = wa_status_webhook(ch.phone_number_id, wa_status(sent["external_id"], "delivered", wa_id))
        assert (await api.webhook(ch.id, delivered, ch.app_secret)).status == 200
        await wait_status(api, sent["id"], "delivered")
        await api.ok("POST", "/api/v1/admin/labels", expect=(201, 409), json_body={"name": "contract"})
        await api.ok("PATCH", f"/api/v1/conversations/{conv_id}", json_body={"labels": ["contract"]})
        await api.ok("POST", f"/api/v1/conversations/{conv_id}/read")
        conv = await api.ok("GET", f"/api/v1/conversations/{conv_id}")
        await api.ok("PATCH", f"/api/v1/contacts/{conv['contact']['id']}", json_body={"name": "Renamed"})
        made = await api.ok(
            "POST",
            "/api/v1/admin/users",
            expect=201,
            json_body={"email": f"{unique('c')}@example.com", "role": "agent"},
        )
        user_id = made["user"]["id"]
        team = await api.ok(
            "POST",
            "/api/v1/admin/teams",
            expect=201,
            json_body={"name": unique("team "), "member_ids": [user_id], "channel_ids": [ch.id]},
        )
        await api.ok("PUT", f"/api/v1/admin/channels/{ch.id}/members", json_body={"user_ids": [user_id]})
        role = unique("role_")
        await api.ok(
            "POST",
            "/api/v1/admin/roles",
            expect=201,
            json_body={"name": role, "permissions": ["contacts.read"]},
        )
        await api.ok("PATCH", f"/api/v1/admin/users/{user_id}", json_body={"role": role})
        await api.ok("PUT", "/api/v1/me/availability", json_body={"status": "busy"})
        await api.ok("PUT", "/api/v1/me/availability", json_body={"status": "online"})
        status_id = unique("st_")
        await api.ok(
            "POST",
            "/api/v1/admin/availability-statuses",
            expect=201,
            json_body={
                "id": status_id,
                "name": "Lunch",
                "receives": False,
                "push": False,
                "shows_as": "away",
            },
        )
        await api.request("DELETE", f"/api/v1/admin/teams/{team['id']}")
        await api.request("DELETE", f"/api/v1/admin/roles/{role}")
        end = await api.last_seq()
        await stream.wait(
            lambda s: s.events and s.events[-1]["seq"] >= end, what=f"the stream to reach seq {end}"
        )
        frames = list(stream.frames)

    # Each frame of the stream, by its type's schema in /asyncapi.json.
    for frame in frames:
        assert frame["type"] in frame_checks, frame
        assert problems(frame_checks[frame["type"]], frame) == [], frame
    seen = {f["event"]["type"] for f in frames if f["type"] == "event"}
    expected = {
        "channel.updated",
        "channel.members_updated",
        "conversation.created",
        "conversation.updated",
        "message.created",
        "message.updated",
        "contact.updated",
        "user.updated",
        "team.updated",
        "role.updated",
        "access.changed",
        "presence.updated",
        "config.updated",
    }
    assert expected <= seen, expected - seen
    assert seen <= types_documented

    # The whole log of the shared hub so far (every e2e test before this one wrote to it), page by
    # page, by /openapi.json's EventPage: a discriminated union by type.
    after, pages = 0, 0
    while True:
        page = await api.ok("GET", f"/api/v1/events?after={after}&limit=500")
        assert problems(page_check, page) == []
        pages += 1
        if not page["has_more"]:
            break
        after = page["last_seq"]
    assert pages >= 1


async def test_a_cursor_ahead_of_the_log_gets_a_resync(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess
) -> None:
    last = await api.last_seq()
    resp = await api.get("/api/v1/events?after=99999999")
    assert resp.status == 410, resp
    assert resp.json["error"]["code"] == "cursor_ahead"
    assert resp.json["error"]["details"]["last_seq"] >= last
    assert shared_hub.token is not None
    ws = await http.ws_connect(
        f"{shared_hub.base_url}/api/v1/stream?after=99999999",
        headers={"Authorization": f"Bearer {shared_hub.token}"},
    )
    first = await ws.receive(timeout=10)
    assert first.type == aiohttp.WSMsgType.TEXT, first
    frame = first.json()
    assert frame["type"] == "resync" and frame["reason"] == "ahead", frame
    assert frame["last_seq"] >= last
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    assert ws.close_code == 4410
    await ws.close()


async def test_a_list_then_a_stream_from_its_seq_misses_nothing(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    """Messages arrive all the time; the app loads the history, then streams from the seq the
    history reflects. Every message is in the history or on the stream (or both, never neither)."""
    ch = await create_wa_channel(api, graph.base_url, name="Seq")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)
    stop = asyncio.Event()
    sent: list[str] = []

    async def customer() -> None:
        while not stop.is_set():
            sent.append(await deliver_text(api, ch, wa_id, unique("m ")))
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(customer())
    try:
        await wait_until(lambda: len(sent) >= 5, what="messages flowing")
        history = await api.get(f"/api/v1/conversations/{conv_id}/messages?limit=200")
        assert history.status == 200
        seq = int(history.headers["X-Hub-Seq"])
        listed = {m["external_id"] for m in history.json["messages"]}
        assert shared_hub.token is not None
        async with EventStream(http, shared_hub.base_url, shared_hub.token, seq) as stream:
            await wait_until(lambda: len(sent) >= 15, what="more messages")
            stop.set()
            await writer
            final = {m["external_id"] for m in await api.messages(conv_id)}
            assert set(sent) <= final

            def streamed() -> set[str]:
                return {
                    e["data"]["external_id"]
                    for e in stream.events
                    if e["type"] == "message.created" and e["conversation_id"] == conv_id
                }

            await stream.wait(
                lambda s: final <= listed | streamed(), what="every message, listed or streamed"
            )
            assert all(e["seq"] > seq for e in stream.events)
            # The stream started where the list ended: what the list lacked came on the stream.
            assert final - listed <= streamed()
            assert final - listed, "the test did not exercise messages arriving after the list"
    finally:
        stop.set()
        await writer


async def test_a_logout_closes_the_open_websocket_within_a_second(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess
) -> None:
    anon = Api(http, shared_hub.base_url)
    session = await anon.ok(
        "POST", "/api/v1/auth/login", json_body={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    token = session["token"]
    async with EventStream(http, shared_hub.base_url, token, await api.last_seq()) as stream:
        await stream.wait_live()
        started = time.monotonic()
        assert (
            await Api(http, shared_hub.base_url, token).request("POST", "/api/v1/auth/logout")
        ).status == 204
        await asyncio.wait_for(stream.closed.wait(), 5)
        took = time.monotonic() - started
        assert stream.ws is not None and stream.ws.close_code == 4401, stream.frames[-3:]
    assert took < 1.0, f"the stream closed {took:.2f} s after the logout"
    assert (await Api(http, shared_hub.base_url, token).request("GET", "/api/v1/me")).status == 401
    refreshed = await anon.request(
        "POST", "/api/v1/auth/refresh", json_body={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status == 401
