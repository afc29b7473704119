"""The API answers in the shapes its OpenAPI document promises, and events carry the same shapes."""

from __future__ import annotations

from typing import Any

from hub.models import Conversation, Message
from hub.web.openapi import build_openapi
from hub.web.schemas import (
    ChannelList,
    ChannelOut,
    ConversationPage,
    EventPage,
    LoginOut,
    MessagePage,
    PluginsOut,
    UploadOut,
    UserOut,
)
from tests.conftest import Hub, eventually


async def test_every_answer_matches_its_documented_model(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    await hub.webhook(
        {"type": "message", "id": "s1", "from": "dora", "name": "Dora", "text": "hi", "ts": 1_700_000_000}
    )
    conv = (await eventually(hub.conversations))[0]

    login = await c.post(
        "/api/v1/auth/login", json={"email": "admin@example.com", "password": "correct horse battery"}
    )
    assert login.status == 200
    LoginOut.model_validate(await login.json())
    UserOut.model_validate(await (await c.get("/api/v1/me", headers=hub.agent)).json())
    ChannelList.model_validate(await (await c.get("/api/v1/channels", headers=hub.agent)).json())
    admin_list = ChannelList.model_validate(
        await (await c.get("/api/v1/admin/channels", headers=hub.admin)).json()
    )
    assert admin_list.channels[0].setup and admin_list.channels[0].settings
    ChannelOut.model_validate(await (await c.get("/api/v1/admin/channels/fk", headers=hub.admin)).json())
    plugins = PluginsOut.model_validate(await (await c.get("/api/v1/plugins", headers=hub.admin)).json())
    assert {"whatsapp", "fake"} <= {p.name for p in plugins.plugins}
    page = ConversationPage.model_validate(
        await (await c.get("/api/v1/conversations", headers=hub.agent)).json()
    )
    assert page.conversations[0].contact.name == "Dora"
    one = Conversation.model_validate(
        await (await c.get(f"/api/v1/conversations/{conv['id']}", headers=hub.agent)).json()
    )
    assert one.reply_window is not None and one.reply_window.open
    patched = await c.patch(
        f"/api/v1/conversations/{conv['id']}", json={"labels": ["vip"]}, headers=hub.agent
    )
    assert Conversation.model_validate(await patched.json()).labels == ["vip"]
    up = await c.post(
        "/api/v1/uploads?filename=a.png",
        data=b"\x89PNG....",
        headers={**hub.agent, "Content-Type": "image/png"},
    )
    assert up.status == 201
    UploadOut.model_validate(await up.json())
    sent = await c.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": "hello"},
        headers={**hub.agent, "Idempotency-Key": "shape-1"},
    )
    assert sent.status == 202
    msg = Message.model_validate(await sent.json())
    Message.model_validate(await (await c.get(f"/api/v1/messages/{msg.id}", headers=hub.agent)).json())
    history = MessagePage.model_validate(
        await (await c.get(f"/api/v1/conversations/{conv['id']}/messages", headers=hub.agent)).json()
    )
    assert [m.text for m in history.messages] == ["hi", "hello"]
    events = EventPage.model_validate(await (await c.get("/api/v1/events?after=0", headers=hub.agent)).json())
    for ev in events.events:
        if ev.type.startswith("message."):
            Message.model_validate(ev.data)
        elif ev.type.startswith("conversation."):
            Conversation.model_validate(ev.data)
        elif ev.type == "channel.updated":
            ChannelOut.model_validate(ev.data)


def test_json_answers_are_described(lite_hub: Hub) -> None:
    doc: dict[str, Any] = build_openapi(lite_hub.client.app, "http://hub.test")
    missing = []
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/v1/") or path.endswith(("/stream", "/attachments/{message_id}/{index}")):
            continue
        for method, op in ops.items():
            ok = next((r for code, r in op["responses"].items() if code.startswith("2")), None)
            if ok is not None and "content" not in ok and not any(code == "204" for code in op["responses"]):
                missing.append(f"{method.upper()} {path}")
    assert missing == []
    ref = doc["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]["responses"]["202"]
    assert ref["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Message"}
    assert "Message" in doc["components"]["schemas"] and "SendRequest" in doc["components"]["schemas"]
