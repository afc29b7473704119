"""Notifications in an in-process hub: preferences (the app's and the admin's view of one table),
the in-app list and its live events, push devices, and the built-in notifiers against real
receivers on loopback: a signed webhook receiver (aiohttp) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from hub.config import HubConfig, HubSection
from hub.testing.fake_channel import FakeChannel, FakePlugin
from hub.web.app import create_app
from tests.conftest import Hub, eventually

WEBHOOK_SECRET = "notify-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_passwords: None) -> None:
    """Users made here get cheap password hashes."""


class Receiver:
    """A push relay on loopback: checks each POST's HMAC and answers from a script (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.script: list[int] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Hub-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            self.refused.append(request.headers.get("X-Hub-Delivery", ""))
            return web.Response(status=401)
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            self.received.append({"body": json.loads(body), "delivery": request.headers["X-Hub-Delivery"]})
        return web.Response(status=status)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/push", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/push"))


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=default_policy)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    assert r.server is not None
    await r.server.close()


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
async def notify_hub(aiohttp_client: Any, tmp_path: Path, receiver: Receiver, mailbox: Any) -> Hub:
    assert receiver.server is not None
    url = str(receiver.server.make_url("/push"))
    section = HubSection(
        database_url=f"sqlite:///{tmp_path}/hub.db",
        data_dir=str(tmp_path / "data"),
        secret_key="test-secret-key-0123456789",
        public_url="http://hub.test",
    )
    notifiers = {
        "webhook": {"url": url, "secret": WEBHOOK_SECRET, "tries": 1},
        "email": {
            "host": "127.0.0.1",
            "port": mailbox[1],
            "security": "none",
            "from_address": "hub@example.com",
        },
    }
    fake = FakeChannel.isolated()
    app = create_app(HubConfig(hub=section, notifiers=notifiers), extra_plugins=[("fake", FakePlugin(fake))])
    hub = Hub(await aiohttp_client(app), fake)
    await hub.setup_users()
    await hub.create_channel()
    return hub


async def call(hub: Hub, method: str, url: str, headers: dict[str, str], expect: int, **kw: Any) -> Any:
    resp = await hub.client.request(method, url, headers=headers, **kw)
    assert resp.status == expect, (resp.status, await resp.text())
    return await resp.json() if resp.status != 204 else None


async def conversation(hub: Hub, who: str) -> dict[str, Any]:
    message = {
        "type": "message",
        "id": f"m-{who}",
        "from": who,
        "name": who.title(),
        "text": "hi",
        "ts": int(time.time()),
    }
    await hub.webhook(message)

    async def find() -> Any:
        return next((c for c in await hub.conversations() if c["contact"]["name"] == who.title()), None)

    return dict(await eventually(find))


async def test_preferences_set_in_the_app_read_back_the_same_through_the_admin_api(notify_hub: Hub) -> None:
    hub = notify_hub
    mine = await call(hub, "GET", "/api/v1/me/notification-preferences", hub.agent, 200)
    assert mine["user_id"] == hub.agent_id
    assert mine["preferences"]["mention"] == {"push": True, "email": False, "in_app": True}
    changed = await call(
        hub,
        "PATCH",
        "/api/v1/me/notification-preferences",
        hub.agent,
        200,
        json={"preferences": {"mention": {"email": True}, "assigned": {"push": False}}},
    )
    admin_view = await call(
        hub, "GET", f"/api/v1/admin/users/{hub.agent_id}/notification-preferences", hub.admin, 200
    )
    assert admin_view == changed
    assert admin_view["preferences"]["mention"] == {"push": True, "email": True, "in_app": True}
    assert admin_view["preferences"]["assigned"]["push"] is False
    # The other way round: an admin's change is what the app reads.
    await call(
        hub,
        "PATCH",
        f"/api/v1/admin/users/{hub.agent_id}/notification-preferences",
        hub.admin,
        200,
        json={"preferences": {"snooze_ended": {"push": True}}},
    )
    again = await call(hub, "GET", "/api/v1/me/notification-preferences", hub.agent, 200)
    assert again["preferences"]["snooze_ended"]["push"] is True
    # An agent may not read or set another user's preferences, nor the defaults.
    await call(hub, "GET", f"/api/v1/admin/users/{hub.agent_id}/notification-preferences", hub.agent, 403)
    await call(hub, "PATCH", "/api/v1/admin/notification-defaults", hub.agent, 403, json={"preferences": {}})
    bad = await call(
        hub,
        "PATCH",
        "/api/v1/me/notification-preferences",
        hub.agent,
        422,
        json={"preferences": {"mention": {"sms": True}}},
    )
    assert "sms" in bad["error"]["details"][0]["field"]
    # Defaults apply to whoever did not choose.
    await call(
        hub,
        "PATCH",
        "/api/v1/admin/notification-defaults",
        hub.admin,
        200,
        json={"preferences": {"conversation_created": {"in_app": True}, "mention": {"email": False}}},
    )
    admin_prefs = await call(hub, "GET", "/api/v1/me/notification-preferences", hub.admin, 200)
    assert admin_prefs["preferences"]["conversation_created"]["in_app"] is True
    agent_prefs = await call(hub, "GET", "/api/v1/me/notification-preferences", hub.agent, 200)
    assert agent_prefs["preferences"]["conversation_created"]["in_app"] is True
    assert agent_prefs["preferences"]["mention"]["email"] is True  # the agent's own choice wins


async def test_a_mention_reaches_the_agent_in_app_by_signed_webhook_and_by_email(
    notify_hub: Hub, receiver: Receiver, mailbox: Any
) -> None:
    hub = notify_hub
    conv = await conversation(hub, "ivy")
    await call(
        hub,
        "PATCH",
        "/api/v1/me/notification-preferences",
        hub.agent,
        200,
        json={"preferences": {"mention": {"email": True}}},
    )
    device = await call(
        hub,
        "POST",
        "/api/v1/me/devices",
        hub.agent,
        201,
        json={"provider": "webhook", "token": "phone-1", "platform": "ios"},
    )
    await call(hub, "POST", "/api/v1/me/devices", hub.agent, 422, json={"provider": "email", "token": "x"})
    receiver.script = [503]  # the first try fails: the delivery is tried again
    seq = (await hub.events(0, hub.admin))[-1]["seq"]
    note = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/notes",
        hub.admin,
        201,
        json={"text": "@agent@example.com look"},
    )

    got = await eventually(lambda: _now(receiver.received), within=20)
    body = got[0]["body"]
    assert body["event"] == "mention" and body["user"]["id"] == hub.agent_id
    assert body["body"] == "@agent@example.com look" and body["conversation_id"] == conv["id"]
    assert body["data"]["note_id"] == note["id"]
    assert [d["token"] for d in body["devices"]] == ["phone-1"] and body["devices"][0]["id"] == device["id"]
    assert got[0]["delivery"] == f"{body['id']}.webhook" and receiver.refused == []

    rcpts, mail = (await eventually(lambda: _now(mailbox[0].messages), within=20))[0]
    assert rcpts == ["agent@example.com"] and "mentioned you" in mail["Subject"]
    assert "@agent@example.com look" in mail.get_content()

    page = await call(hub, "GET", "/api/v1/notifications?unread=true", hub.agent, 200)
    assert page["unread_count"] == 1 and page["notifications"][0]["id"] == body["id"]
    # The in-app notification is the agent's event alone.
    created = [e for e in await hub.events(seq) if e["type"] == "notification.created"]
    assert [e["data"]["id"] for e in created] == [body["id"]]
    assert [e for e in await hub.events(seq, hub.admin) if e["type"].startswith("notification.")] == []
    await call(hub, "POST", f"/api/v1/notifications/{body['id']}/read", hub.admin, 404)
    read = await call(hub, "POST", f"/api/v1/notifications/{body['id']}/read", hub.agent, 200)
    assert read["read_at"]
    assert (await call(hub, "GET", "/api/v1/notifications?unread=true", hub.agent, 200))["unread_count"] == 0
    updated = [e for e in await hub.events(seq) if e["type"] == "notification.updated"]
    assert updated[-1]["data"]["ids"] == [body["id"]]


async def _now(value: Any) -> Any:
    return value


async def test_assignment_notifies_and_offline_suppresses_push_but_not_in_app(
    notify_hub: Hub, receiver: Receiver
) -> None:
    hub = notify_hub
    first = await conversation(hub, "una")
    await call(
        hub,
        "PATCH",
        f"/api/v1/conversations/{first['id']}",
        hub.admin,
        200,
        json={"assignee_id": hub.agent_id},
    )
    pushed = await eventually(lambda: _now(receiver.received), within=20)
    assert pushed[0]["body"]["event"] == "assigned"
    assert pushed[0]["body"]["user"]["id"] == hub.agent_id

    await call(hub, "PUT", "/api/v1/me/availability", hub.agent, 200, json={"status": "offline"})
    second = await conversation(hub, "vic")
    await call(
        hub,
        "PATCH",
        f"/api/v1/conversations/{second['id']}",
        hub.admin,
        200,
        json={"assignee_id": hub.agent_id},
    )

    async def two_in_app() -> Any:
        page = await call(hub, "GET", "/api/v1/notifications", hub.agent, 200)
        return page if page["unread_count"] == 2 else None

    page = await eventually(two_in_app, within=20)
    assert {n["conversation_id"] for n in page["notifications"]} == {first["id"], second["id"]}
    await asyncio.sleep(2.5)  # the delivery worker's idle poll: a push that was coming has come
    assert [r["body"]["conversation_id"] for r in receiver.received] == [first["id"]]

    done = await call(hub, "POST", "/api/v1/notifications/read-all", hub.agent, 200)
    assert done["marked"] == 2
    assert (await call(hub, "GET", "/api/v1/notifications?unread=true", hub.agent, 200))[
        "notifications"
    ] == []


async def test_a_message_goes_to_the_assignee_at_that_message_whatever_follows_in_its_batch(
    notify_hub: Hub,
) -> None:
    """The consumer handles events in batches: a message and the unassignment just after it can
    be read together. The agent it was assigned to when the customer wrote is told; reading the
    assignee when the batch runs would tell nobody (and, reassigned, someone who was not there)."""
    from hub.appkeys import NOTIFICATION_CONSUMER

    hub = notify_hub
    conv = await conversation(hub, "una")
    path = f"/api/v1/conversations/{conv['id']}"
    await call(hub, "PATCH", path, hub.admin, 200, json={"assignee_id": hub.agent_id})

    async def assigned() -> Any:
        page = await call(hub, "GET", "/api/v1/notifications", hub.agent, 200)
        return [n for n in page["notifications"] if n["event"] == "assigned"]

    await eventually(assigned, within=20)
    consumer = hub.client.app[NOTIFICATION_CONSUMER]
    await consumer.stop()  # what follows lands in one batch
    later = {"type": "message", "id": "m-una-2", "from": "una", "name": "Una", "text": "still there?"}
    assert (await hub.webhook({**later, "ts": int(time.time())})).status == 200

    async def stored() -> Any:
        return any(m["external_id"] == "m-una-2" for m in await hub.messages(conv["id"]))

    await eventually(stored)
    await call(hub, "PATCH", path, hub.admin, 200, json={"assignee_id": None})
    while await consumer.step():
        pass
    page = await call(hub, "GET", "/api/v1/notifications", hub.agent, 200)
    told = [n for n in page["notifications"] if n["event"] == "new_message"]
    assert [n["data"]["message_id"] for n in told] != [], "the agent assigned at the message was not told"
    assert len(told) == 1
