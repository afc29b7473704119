"""Access: an agent sees only the channels it serves, on every read path (lists, reads by id,
attachments, events, the stream), and a membership change applies to an open stream at once.
Writes need their named permission; custom roles are sets taken from the catalogue."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from hub.users import create_token
from tests.conftest import Hub, eventually, fake_message

pytestmark = pytest.mark.usefixtures("fast_passwords")


async def new_user(hub: Hub, email: str, role: str = "agent") -> tuple[str, dict[str, str]]:
    """A user made through the admin API, and a bearer token for them."""
    resp = await hub.client.post(
        "/api/v1/admin/users", json={"email": email, "role": role}, headers=hub.admin
    )
    assert resp.status == 201, await resp.text()
    user_id = (await resp.json())["user"]["id"]
    token = await create_token(hub.store.db, user_id)
    return user_id, {"Authorization": f"Bearer {token}"}


async def two_channels(hub: Hub) -> tuple[str, str]:
    """A message on ``fk`` (served by the fixture's agent) and one on ``other`` (served by nobody).
    Returns the conversation ids."""
    await hub.create_channel("other")
    await hub.serve("other")  # create_channel made the fixture agent serve it: undo that
    assert (await hub.webhook(fake_message("m-fk", "alice"))).status == 200
    assert (await hub.webhook(fake_message("m-other", "bob"), channel_id="other")).status == 200

    async def both() -> list[dict[str, Any]] | None:
        resp = await hub.client.get("/api/v1/conversations", headers=hub.admin)
        convs: list[dict[str, Any]] = (await resp.json())["conversations"]
        return convs if len(convs) == 2 else None

    convs = await eventually(both)
    by_channel = {c["channel_id"]: c["id"] for c in convs}
    return by_channel["fk"], by_channel["other"]


async def test_an_agent_sees_nothing_of_a_channel_it_does_not_serve_by_any_path(lite_hub: Hub) -> None:
    hub = lite_hub
    fk_conv, other_conv = await two_channels(hub)
    c, agent = hub.client, hub.agent
    admin_msgs = await (await c.get(f"/api/v1/conversations/{other_conv}/messages", headers=hub.admin)).json()
    other_msg = admin_msgs["messages"][0]["id"]

    channels = (await (await c.get("/api/v1/channels", headers=agent)).json())["channels"]
    assert [ch["id"] for ch in channels] == ["fk"]
    listed = (await (await c.get("/api/v1/conversations", headers=agent)).json())["conversations"]
    assert [x["id"] for x in listed] == [fk_conv]
    filtered = await c.get("/api/v1/conversations?channel_id=other", headers=agent)
    assert (await filtered.json())["conversations"] == []
    for path in (
        f"/api/v1/conversations/{other_conv}",
        f"/api/v1/conversations/{other_conv}/messages",
        f"/api/v1/messages/{other_msg}",
        f"/api/v1/attachments/{other_msg}/0",
    ):
        resp = await c.get(path, headers=agent)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "not_found"
    # The same answer as for something that does not exist at all.
    absent = await c.get("/api/v1/conversations/cv_nope", headers=agent)
    assert absent.status == 404
    for method, path, body in (
        ("PATCH", f"/api/v1/conversations/{other_conv}", {"status": "resolved"}),
        ("POST", f"/api/v1/conversations/{other_conv}/read", None),
        ("POST", f"/api/v1/conversations/{other_conv}/messages", {"text": "hello"}),
        ("POST", f"/api/v1/messages/{other_msg}/retry", None),
    ):
        resp = await c.request(method, path, json=body, headers=agent)
        assert resp.status == 404, (method, path, await resp.text())
    # The conversation the agent does serve reads fine, messages included.
    assert (await c.get(f"/api/v1/conversations/{fk_conv}", headers=agent)).status == 200
    events = (await (await c.get("/api/v1/events?after=0", headers=agent)).json())["events"]
    assert {e["channel_id"] for e in events} - {None} == {"fk"}
    assert any(e["type"] == "message.created" for e in events)
    admin_events = (await (await c.get("/api/v1/events?after=0", headers=hub.admin)).json())["events"]
    assert "other" in {e["channel_id"] for e in admin_events}


async def test_the_events_cursor_moves_past_events_the_agent_may_not_see(lite_hub: Hub) -> None:
    hub = lite_hub
    await two_channels(hub)
    last_admin = (await (await hub.client.get("/api/v1/events?after=0", headers=hub.admin)).json())[
        "last_seq"
    ]
    page = await (await hub.client.get("/api/v1/events?after=0&limit=1", headers=hub.agent)).json()
    assert page["has_more"] is True
    cursor, seen = 0, []
    while True:
        page = await (
            await hub.client.get(f"/api/v1/events?after={cursor}&limit=2", headers=hub.agent)
        ).json()
        seen += page["events"]
        assert page["last_seq"] >= cursor
        cursor = page["last_seq"]
        if not page["has_more"]:
            break
    assert cursor == last_admin
    assert all(e["channel_id"] in (None, "fk") for e in seen)


async def _events(ws: aiohttp.ClientWebSocketResponse, until: Any, wait: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not until(got):
        frame = await ws.receive_json(timeout=wait)
        if frame["type"] == "event":
            got.append(frame["event"])
    return got


def _message(external_id: str) -> Any:
    return lambda evs: any(
        e["type"] == "message.created" and e["data"]["external_id"] == external_id for e in evs
    )


async def test_the_stream_filters_by_channel_and_applies_a_membership_change_at_once(lite_hub: Hub) -> None:
    hub = lite_hub
    await two_channels(hub)
    async with hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent) as ws:
        replayed = await _events(ws, _message("m-fk"))
        # Another channel's event never crosses: a later event of fk arrives, and nothing of other.
        assert (await hub.webhook(fake_message("m-other-2", "bob"), channel_id="other")).status == 200
        assert (await hub.webhook(fake_message("m-fk-2", "alice"))).status == 200
        live = await _events(ws, _message("m-fk-2"))
        assert all(e["channel_id"] in (None, "fk") for e in replayed + live), replayed + live
        # Now the agent serves `other` too, while the stream is open: its next event arrives.
        await hub.serve("other", hub.agent_id)
        assert (await hub.webhook(fake_message("m-other-3", "bob"), channel_id="other")).status == 200
        await _events(ws, _message("m-other-3"))
        # And taken away again: nothing more of other, while fk still flows.
        await hub.serve("other")
        assert (await hub.webhook(fake_message("m-other-4", "bob"), channel_id="other")).status == 200
        assert (await hub.webhook(fake_message("m-fk-3", "alice"))).status == 200
        after = await _events(ws, _message("m-fk-3"))
        assert not any(e["channel_id"] == "other" and e["type"].startswith("message") for e in after), after


async def test_a_team_gives_its_members_its_channels(lite_hub: Hub) -> None:
    hub = lite_hub
    _, other_conv = await two_channels(hub)
    carol, carol_h = await new_user(hub, "carol@example.com")
    assert (await hub.client.get(f"/api/v1/conversations/{other_conv}", headers=carol_h)).status == 404
    resp = await hub.client.post(
        "/api/v1/admin/teams",
        json={"name": "Sales", "member_ids": [carol], "channel_ids": ["other"]},
        headers=hub.admin,
    )
    assert resp.status == 201, await resp.text()
    team = await resp.json()
    assert (await hub.client.get(f"/api/v1/conversations/{other_conv}", headers=carol_h)).status == 200
    me = await (await hub.client.get("/api/v1/me", headers=carol_h)).json()
    assert me["channel_ids"] == ["other"] and me["teams"] == [{"id": team["id"], "name": "Sales"}]
    # Leaving the team takes the channel away.
    await hub.client.patch(f"/api/v1/admin/teams/{team['id']}", json={"member_ids": []}, headers=hub.admin)
    assert (await hub.client.get(f"/api/v1/conversations/{other_conv}", headers=carol_h)).status == 404
    bad = await hub.client.post(
        "/api/v1/admin/teams", json={"name": "X", "channel_ids": ["nope"]}, headers=hub.admin
    )
    assert bad.status == 422


async def test_a_custom_role_without_send_gets_403_and_the_catalogue_is_enforced(lite_hub: Hub) -> None:
    hub = lite_hub
    fk_conv, _ = await two_channels(hub)
    catalogue = (await (await hub.client.get("/api/v1/permissions", headers=hub.agent)).json())["permissions"]
    assert "messages.send" in {p["name"] for p in catalogue}
    unknown = await hub.client.post(
        "/api/v1/admin/roles", json={"name": "bogus", "permissions": ["fly"]}, headers=hub.admin
    )
    assert unknown.status == 422 and "fly" in (await unknown.json())["error"]["details"][0]["message"]
    assert (
        await hub.client.post("/api/v1/admin/roles", json={"name": "x", "permissions": []}, headers=hub.agent)
    ).status == 403
    resp = await hub.client.post(
        "/api/v1/admin/roles",
        json={"name": "viewer", "permissions": ["conversations.read.all"], "description": "reads only"},
        headers=hub.admin,
    )
    assert resp.status == 201, await resp.text()
    dana, dana_h = await new_user(hub, "dana@example.com", role="viewer")
    await hub.serve("fk", hub.agent_id, dana)
    me = await (await hub.client.get("/api/v1/me", headers=dana_h)).json()
    assert me["permissions"] == ["conversations.read.all"] and me["role"] == "viewer"
    assert (await hub.client.get(f"/api/v1/conversations/{fk_conv}", headers=dana_h)).status == 200
    send = await hub.client.post(
        f"/api/v1/conversations/{fk_conv}/messages", json={"text": "x"}, headers=dana_h
    )
    assert send.status == 403 and (await send.json())["error"]["code"] == "forbidden"
    patch = await hub.client.patch(
        f"/api/v1/conversations/{fk_conv}", json={"status": "resolved"}, headers=dana_h
    )
    assert patch.status == 403
    # Granting the permission applies at once.
    resp = await hub.client.put(
        "/api/v1/admin/roles/viewer",
        json={"permissions": ["conversations.read.all", "messages.send"]},
        headers=hub.admin,
    )
    assert resp.status == 200
    send = await hub.client.post(
        f"/api/v1/conversations/{fk_conv}/messages", json={"text": "x"}, headers=dana_h
    )
    assert send.status == 202, await send.text()
    # A role someone holds cannot be deleted; built-in roles cannot be changed.
    assert (await hub.client.delete("/api/v1/admin/roles/viewer", headers=hub.admin)).status == 409
    assert (
        await hub.client.put("/api/v1/admin/roles/agent", json={"permissions": []}, headers=hub.admin)
    ).status == 409


async def test_read_levels_mine_and_unassigned(lite_hub: Hub) -> None:
    hub = lite_hub
    fk_conv, _ = await two_channels(hub)
    await hub.client.post(
        "/api/v1/admin/roles",
        json={"name": "mine", "permissions": ["conversations.read.mine"]},
        headers=hub.admin,
    )
    erin, erin_h = await new_user(hub, "erin@example.com", role="mine")
    await hub.serve("fk", hub.agent_id, erin)
    assert (await hub.client.get(f"/api/v1/conversations/{fk_conv}", headers=erin_h)).status == 404
    listed = await (await hub.client.get("/api/v1/conversations", headers=erin_h)).json()
    assert listed["conversations"] == []
    resp = await hub.client.patch(
        f"/api/v1/conversations/{fk_conv}", json={"assignee_id": erin}, headers=hub.admin
    )
    assert resp.status == 200, await resp.text()
    assert (await hub.client.get(f"/api/v1/conversations/{fk_conv}", headers=erin_h)).status == 200
    events = (await (await hub.client.get("/api/v1/events?after=0", headers=erin_h)).json())["events"]
    assert {e["conversation_id"] for e in events} - {None} == {fk_conv}


async def test_admin_only_routes_refuse_agents(lite_hub: Hub) -> None:
    hub = lite_hub
    for method, path in (
        ("GET", "/api/v1/admin/users"),
        ("POST", "/api/v1/admin/users"),
        ("GET", "/api/v1/admin/roles"),
        ("POST", "/api/v1/admin/teams"),
        ("PUT", "/api/v1/admin/channels/fk/members"),
        ("GET", "/api/v1/admin/channels/fk/members"),
        ("GET", "/api/v1/admin/channels"),
        ("DELETE", "/api/v1/admin/channels/fk"),
        ("GET", "/api/v1/plugins"),
    ):
        resp = await hub.client.request(method, path, json={}, headers=hub.agent)
        assert resp.status == 403, (method, path, await resp.text())


async def test_contacts_are_read_and_changed_within_the_scope_and_with_their_permissions(
    lite_hub: Hub,
) -> None:
    hub = lite_hub
    fk_conv, other_conv = await two_channels(hub)
    c = hub.client
    fk = await (await c.get(f"/api/v1/conversations/{fk_conv}", headers=hub.admin)).json()
    other = await (await c.get(f"/api/v1/conversations/{other_conv}", headers=hub.admin)).json()
    mine, theirs = fk["contact"]["id"], other["contact"]["id"]
    got = await c.get(f"/api/v1/contacts/{mine}", headers=hub.agent)
    assert got.status == 200 and (await got.json())["identities"] == fk["contact"]["identities"]
    assert (await c.get(f"/api/v1/contacts/{theirs}", headers=hub.agent)).status == 404
    assert (await c.patch(f"/api/v1/contacts/{theirs}", json={"name": "X"}, headers=hub.agent)).status == 404
    renamed = await c.patch(f"/api/v1/contacts/{mine}", json={"name": "Alice B."}, headers=hub.agent)
    assert renamed.status == 200 and (await renamed.json())["name"] == "Alice B."
    events = [e for e in await hub.events() if e["type"] == "contact.updated"]
    assert events[-1]["data"]["by"]["id"] == hub.agent_id and events[-1]["channel_id"] == "fk"
    await c.post(
        "/api/v1/admin/roles",
        json={"name": "noc", "permissions": ["conversations.read.all"]},
        headers=hub.admin,
    )
    uid, headers = await new_user(hub, "noc@example.com", role="noc")
    await hub.serve("fk", hub.agent_id, uid)
    assert (await c.get(f"/api/v1/contacts/{mine}", headers=headers)).status == 403
    assert (await c.patch(f"/api/v1/contacts/{mine}", json={"name": "Y"}, headers=headers)).status == 403
