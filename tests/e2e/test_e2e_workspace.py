"""Issue 16 part B through a real ``hub serve``: a quick reply reaches the provider rendered, a
macro labels, assigns and resolves in one step, a mention in a private note reaches the agent
through the signed webhook notifier (a real loopback receiver checking the HMAC) and in-app, and
a preference changed from the app reads back the same through the admin API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from e2e_support import (
    Api,
    EventStream,
    HubFactory,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    create_wa_channel,
    inbound_conversation,
    phone,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = "e2e-notifier-secret-" + unique()


async def agent(api: Api, *, role: str = "agent") -> tuple[str, Api]:
    """An agent made through the admin API who set a password and logged in: (id, their Api)."""
    email = unique("agent-") + "@example.com"
    made = await api.ok("POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": role})
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


class Receiver:
    """A push relay on loopback that refuses any POST whose signature does not verify."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = request.headers.get("X-Hub-Timestamp", "").encode() + b"." + body
        expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            self.refused += 1
            return web.Response(status=401)
        self.accepted.append(json.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/relay", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/relay"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    assert r.runner is not None
    await r.runner.cleanup()


async def test_a_quick_reply_reaches_the_provider_rendered(api: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Quick replies")
    conv_id = await inbound_conversation(api, ch, phone())
    code = unique("greet")
    qr = await api.ok(
        "POST",
        "/api/v1/admin/quick-replies",
        expect=201,
        json_body={"code": code, "text": "Hello {{contact.name}}, thanks for writing!"},
    )
    refused = await api.request(
        "POST", "/api/v1/admin/quick-replies", json_body={"code": unique("x"), "text": "Hi {{contact.age}}"}
    )
    assert refused.status == 422 and refused.json["error"]["details"][0]["field"] == "text", refused
    found = await api.ok("GET", f"/api/v1/quick-replies?q={code}")
    assert [r["id"] for r in found["quick_replies"]] == [qr["id"]]
    preview = await api.ok(
        "POST", f"/api/v1/quick-replies/{qr['id']}/preview", json_body={"conversation_id": conv_id}
    )
    assert preview["text"] == "Hello Test Customer, thanks for writing!"
    msg = await api.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"quick_reply_id": qr["id"]},
        headers={"Idempotency-Key": unique("k-")},
    )
    assert msg["text"] == preview["text"]
    calls = await wait_until(lambda: graph.sends(ch.phone_number_id), within=20, what="the provider call")
    assert [c.json["text"]["body"] for c in calls] == ["Hello Test Customer, thanks for writing!"]


async def test_a_preference_changed_from_the_app_reads_back_the_same_through_the_admin_api(api: Api) -> None:
    user_id, app = await agent(api)
    before = await app.ok("GET", "/api/v1/me/notification-preferences")
    assert before["preferences"]["new_message"]["push"] is True
    after = await app.ok(
        "PATCH",
        "/api/v1/me/notification-preferences",
        json_body={"preferences": {"new_message": {"push": False}, "mention": {"email": True}}},
    )
    admin_view = await api.ok("GET", f"/api/v1/admin/users/{user_id}/notification-preferences")
    assert admin_view == after
    assert admin_view["preferences"]["new_message"] == {"push": False, "email": False, "in_app": True}
    assert admin_view["preferences"]["mention"]["email"] is True


async def test_a_macro_labels_assigns_and_resolves_in_one_step_and_emits_the_events(
    api: Api, http: aiohttp.ClientSession, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Macros")
    agent_id, app = await agent(api)
    await serve(api, ch, agent_id)
    conv_id = await inbound_conversation(api, ch, phone())
    # Labels are definitions: one an admin made before the macro applies it.
    await api.request("POST", "/api/v1/admin/labels", json_body={"name": "vip"})
    macro = await app.ok(
        "POST",
        "/api/v1/macros",
        expect=201,
        json_body={
            "name": "Mine, VIP, done",
            "actions": [
                {"type": "add_label", "label": "vip"},
                {"type": "assign_agent", "user_id": agent_id},
                {"type": "set_status", "status": "resolved"},
            ],
        },
    )
    start = await api.last_seq()
    assert app.token
    async with EventStream(http, shared_hub.base_url, app.token, start) as stream:
        await stream.wait_live()
        out = await app.ok(
            "POST", f"/api/v1/macros/{macro['id']}/run", json_body={"conversation_ids": [conv_id]}
        )
        run = out["results"][0]
        assert run["status"] == "done" and [a["status"] for a in run["actions"]] == ["done"] * 3, run
        resolved = await stream.wait_event("conversation.updated", id=conv_id, status="resolved")
        updates = stream.find("conversation.updated", id=conv_id)
    assert [e["data"]["changed"] for e in updates] == [
        ["labels"],
        ["assignee_id"],
        ["snoozed_until", "status"],
    ]
    assert resolved["data"]["labels"] == ["vip"] and resolved["data"]["assignee_id"] == agent_id
    assert all(e["data"]["by"]["id"] == agent_id for e in updates)
    got = await app.ok("GET", f"/api/v1/conversations/{conv_id}")
    assert (got["labels"], got["assignee_id"], got["status"]) == (["vip"], agent_id, "resolved")


async def test_a_mention_in_a_note_reaches_the_agent_by_signed_webhook_and_in_app(
    hub_factory: HubFactory, graph: ThreadedFakeGraph, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    notifier = f'\n[notifiers.webhook]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
    hub = await hub_factory(extra_toml=notifier)
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Notes")
    agent_id, app = await agent(api)
    await serve(api, ch, agent_id)
    conv_id = await inbound_conversation(api, ch, phone())
    device = await app.ok(
        "POST",
        "/api/v1/me/devices",
        expect=201,
        json_body={"provider": "webhook", "token": "apns-" + unique()},
    )
    outbound_before = [m for m in await api.messages(conv_id) if m["direction"] == "outbound"]
    sends_before = len(graph.sends(ch.phone_number_id))
    assert app.token
    async with EventStream(http, hub.base_url, app.token, await api.last_seq()) as stream:
        await stream.wait_live()
        note = await api.ok(
            "POST",
            f"/api/v1/conversations/{conv_id}/notes",
            expect=201,
            json_body={"text": "Can you take this one?", "mention_ids": [agent_id]},
        )
        pushed = await wait_until(lambda: receiver.accepted, within=20, what="the signed webhook")
        in_app = await stream.wait_event("notification.created", event="mention")
    assert receiver.refused == 0
    assert pushed[0]["event"] == "mention" and pushed[0]["user"]["id"] == agent_id
    assert pushed[0]["body"] == "Can you take this one?" and pushed[0]["data"]["note_id"] == note["id"]
    assert [d["id"] for d in pushed[0]["devices"]] == [device["id"]]
    assert in_app["data"]["id"] == pushed[0]["id"]
    page = await app.ok("GET", "/api/v1/notifications?unread=true")
    assert [n["id"] for n in page["notifications"]] == [pushed[0]["id"]] and page["unread_count"] == 1
    # The note never went to the customer: no outbound message, no provider call.
    await asyncio.sleep(1.5)
    assert [m for m in await api.messages(conv_id) if m["direction"] == "outbound"] == outbound_before
    assert len(graph.sends(ch.phone_number_id)) == sends_before
    assert len(receiver.accepted) == 1
