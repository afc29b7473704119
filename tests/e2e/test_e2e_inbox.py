"""The app's inbox against a real ``hub serve``: uploads that reach the provider byte for byte,
checked filters, and (further down) unread counts per agent and search within the caller's scope."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import pytest
from e2e_support import (
    Api,
    EventStream,
    HubFactory,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    assert_error,
    create_wa_channel,
    deliver_text,
    inbound_conversation,
    phone,
    unique,
    wait_message_event,
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


async def agent(api: Api) -> tuple[str, Api]:
    """An agent made through the admin API, logged in: (user id, their Api)."""
    email = unique("agent-") + "@example.com"
    made = await api.ok(
        "POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": "agent"}
    )
    password = "pw-" + unique()
    await api.ok(
        "POST",
        "/api/v1/auth/set-password",
        json_body={"token": made["invitation"]["token"], "password": password},
        auth=False,
    )
    login = await api.ok(
        "POST", "/api/v1/auth/login", json_body={"email": email, "password": password}, auth=False
    )
    return made["user"]["id"], Api(api.session, api.base_url, login["token"])


async def serve(api: Api, channel: WaChannel, *user_ids: str) -> None:
    await api.ok(
        "PUT", f"/api/v1/admin/channels/{channel.id}/members", json_body={"user_ids": list(user_ids)}
    )


async def test_unread_counts_differ_per_agent(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Unread")
    (ann_id, ann), (bob_id, bob) = await agent(api), await agent(api)
    await serve(api, ch, ann_id, bob_id)
    customer = phone()
    conv = await inbound_conversation(api, ch, customer)
    after = await api.last_seq()
    second = await deliver_text(api, ch, customer, "second " + unique())
    await wait_message_event(api, after, second)
    assert (await ann.ok("GET", f"/api/v1/conversations/{conv}"))["unread_count"] == 2
    async with EventStream(http, shared_hub.base_url, ann.token or "", await api.last_seq()) as ann_stream:
        await ann_stream.wait_live()
        read = await ann.ok("POST", f"/api/v1/conversations/{conv}/read")
        assert read["unread_count"] == 0
        # Ann's other devices hear of her read marker.
        marker = await ann_stream.wait_event("conversation.read", conversation_id=conv)
        assert marker["data"]["user_id"] == ann_id
    assert (await ann.ok("GET", f"/api/v1/conversations/{conv}"))["unread_count"] == 0
    bobs = await bob.ok("GET", f"/api/v1/conversations/{conv}")
    assert bobs["unread_count"] == 2, "one agent reading zeroed another's count"
    listed = await bob.ok("GET", f"/api/v1/conversations?unread=true&channel_id={ch.id}")
    assert [c["id"] for c in listed["conversations"]] == [conv]
    assert (await ann.ok("GET", f"/api/v1/conversations?unread=true&channel_id={ch.id}"))[
        "conversations"
    ] == []
    assert not [e for e in await bob.events(after) if e["type"] == "conversation.read"]
    assert bobs["last_message"]["text"].startswith("second ")


async def search_finds_within_scope(api: Api, graph: ThreadedFakeGraph) -> None:
    """A word of a message finds it; an agent never finds what their channels do not hold."""
    served = await create_wa_channel(api, graph.base_url, name="Searched")
    hidden = await create_wa_channel(api, graph.base_url, name="Not searched")
    agent_id, ann = await agent(api)
    await serve(api, served, agent_id)
    word = "zebra" + secrets.token_hex(4)
    after = await api.last_seq()
    seen_id = await deliver_text(api, served, phone(), f"Hello, is the {word} still available?")
    hidden_id = await deliver_text(api, hidden, phone(), f"Private: my {word} order", name=f"Secret {word}")
    seen = await wait_message_event(api, after, seen_id)
    await wait_message_event(api, after, hidden_id)
    everything = await api.ok("GET", "/api/v1/search", params={"q": word.upper()})
    assert {m["external_id"] for m in everything["messages"]} == {seen_id, hidden_id}
    assert [c["name"] for c in everything["contacts"]] == [f"Secret {word}"]
    theirs = await ann.ok("GET", "/api/v1/search", params={"q": f"the {word[:-2]}"})
    assert [m["id"] for m in theirs["messages"]] == [seen["data"]["id"]], (
        "the agent found outside their scope"
    )
    assert theirs["contacts"] == []
    assert (await api.ok("GET", "/api/v1/search", params={"q": "available " + word}))["messages"][0][
        "external_id"
    ] == seen_id


async def test_search_finds_a_message_by_a_word_in_it_within_scope_on_sqlite(
    api: Api, graph: ThreadedFakeGraph
) -> None:
    await search_finds_within_scope(api, graph)


async def test_search_finds_a_message_by_a_word_in_it_within_scope_on_postgresql(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory("postgresql")
    await search_finds_within_scope(Api(http, hub.base_url, hub.token), graph)
