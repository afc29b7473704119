"""The API answers in the shapes its OpenAPI document promises, and events carry the same shapes."""

from __future__ import annotations

from typing import Any

from hub.models import Conversation, Message
from hub.web.event_catalogue import EventPage
from hub.web.openapi import build_openapi
from hub.web.schemas import (
    ChannelList,
    ChannelOut,
    ConversationPage,
    LoginOut,
    MeOut,
    MessagePage,
    PluginsOut,
    UploadOut,
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
    MeOut.model_validate(await (await c.get("/api/v1/me", headers=hub.agent)).json())
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
    await hub.define_label("vip")
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
    # Each event is validated against its own type's schema (the catalogue's discriminated union).
    events = EventPage.model_validate(await (await c.get("/api/v1/events?after=0", headers=hub.agent)).json())
    assert {"message.created", "conversation.created"} <= {ev.type for ev in events.events}


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


async def test_people_and_routing_answers_match_their_documented_models(lite_hub: Hub) -> None:
    from hub.web import schemas as s

    hub = lite_hub
    c = hub.client

    async def ok(method: str, path: str, model: Any, status: int = 200, **kw: Any) -> Any:
        resp = await c.request(method, path, headers=hub.admin, **kw)
        assert resp.status == status, (path, await resp.text())
        return model.model_validate(await resp.json())

    me = await ok("GET", "/api/v1/me", s.MeOut)
    assert me.all_channels and me.channel_ids == ["fk"]
    made = await ok(
        "POST", "/api/v1/admin/users", s.InvitedUserOut, 201, json={"email": "z@example.com", "role": "agent"}
    )
    await ok("GET", "/api/v1/admin/users", s.UserList)
    await ok("GET", "/api/v1/users", s.UserList)
    await ok("GET", f"/api/v1/admin/users/{made.user.id}", s.UserOut)
    await ok("PATCH", f"/api/v1/admin/users/{made.user.id}", s.UserOut, json={"name": "Zed"})
    await ok("POST", f"/api/v1/admin/users/{made.user.id}/invitation", s.InvitationOut, 201)
    await ok("GET", "/api/v1/permissions", s.PermissionList)
    await ok(
        "POST", "/api/v1/admin/roles", s.RoleOut, 201, json={"name": "r1", "permissions": ["contacts.read"]}
    )
    await ok("PUT", "/api/v1/admin/roles/r1", s.RoleOut, json={"permissions": []})
    await ok("GET", "/api/v1/admin/roles", s.RoleList)
    team = await ok(
        "POST", "/api/v1/admin/teams", s.TeamOut, 201, json={"name": "T", "member_ids": [made.user.id]}
    )
    await ok("PATCH", f"/api/v1/admin/teams/{team.id}", s.TeamOut, json={"channel_ids": ["fk"]})
    await ok("GET", "/api/v1/teams", s.TeamList)
    await ok("GET", "/api/v1/admin/channels/fk/members", s.ChannelMembersOut)
    await ok("PUT", "/api/v1/admin/channels/fk/members", s.ChannelMembersOut, json={"team_ids": [team.id]})
    await ok("GET", "/api/v1/availability-statuses", s.AvailabilityList)
    await ok(
        "POST",
        "/api/v1/admin/availability-statuses",
        s.AvailabilityStatusOut,
        201,
        json={"id": "dnd", "name": "Do not disturb", "receives": False, "push": False, "shows_as": "away"},
    )
    await ok("PUT", "/api/v1/me/availability", s.PresenceOut, json={"status": "dnd"})
    await ok(
        "PUT", f"/api/v1/admin/users/{made.user.id}/availability", s.PresenceOut, json={"status": "busy"}
    )
    await ok("PUT", "/api/v1/admin/assignment-policies/channel/fk", s.PolicyOut, json={"policy": "balanced"})
    await ok("GET", "/api/v1/admin/assignment-policies", s.PolicyList)
    for path in ("/api/v1/admin/assignment-policies/channel/fk", f"/api/v1/admin/teams/{team.id}"):
        assert (await c.delete(path, headers=hub.admin)).status == 204
