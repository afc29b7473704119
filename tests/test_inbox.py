"""The inbox an app shows: filters that combine, cursors and filter values that are checked (400 in
the one error shape), last-message previews, unread counts per user, counts per status, the agents
to assign to."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conftest import Hub, eventually, fake_message


async def inbound(hub: Hub, who: str, text: str = "hi", mid: str | None = None, ts: int | None = None) -> str:
    element = fake_message(mid or f"m-{who}-{text}", who, text)
    if ts is not None:
        element["ts"] = ts
    resp = await hub.webhook(element)
    assert resp.status == 200

    async def find() -> str | None:
        resp = await hub.client.get("/api/v1/conversations?limit=200", headers=hub.admin)
        for c in (await resp.json())["conversations"]:
            if c["contact"]["identities"] == [f"fake:{who}"]:
                texts = [m["text"] for m in await hub.messages(c["id"])]
                if text in texts:
                    return str(c["id"])
        return None

    return str(await eventually(find))


async def listed(hub: Hub, query: str, headers: dict[str, str] | None = None) -> list[str]:
    resp = await hub.client.get(f"/api/v1/conversations?{query}", headers=headers or hub.agent)
    assert resp.status == 200, await resp.text()
    return [c["id"] for c in (await resp.json())["conversations"]]


async def assert_400(hub: Hub, path: str, field: str | None = None) -> dict[str, Any]:
    resp = await hub.client.get(path, headers=hub.agent)
    assert resp.status == 400, f"{path}: {resp.status} {await resp.text()}"
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "bad_request"
    if field is not None:
        assert [d["field"] for d in body["error"]["details"]] == [field]
    return dict(body["error"])


async def test_unknown_filter_values_and_cursors_are_400(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await inbound(hub, "ann")
    await assert_400(hub, "/api/v1/conversations?status=bogus", "status")
    await assert_400(hub, "/api/v1/conversations?assignee=someone", "assignee")
    await assert_400(hub, "/api/v1/conversations?priority=meh", "priority")
    await assert_400(hub, "/api/v1/conversations?cursor=not-a-cursor")
    await assert_400(hub, f"/api/v1/conversations/{conv}/messages?before=msg_UNKNOWN")
    await assert_400(hub, f"/api/v1/conversations/{conv}/messages?after=msg_UNKNOWN")
    other = await inbound(hub, "bob")
    (theirs,) = [m["id"] for m in await hub.messages(other)]
    # A message of another conversation is no cursor of this one.
    await assert_400(hub, f"/api/v1/conversations/{conv}/messages?before={theirs}")


async def test_history_pages_back_with_before_and_forward_with_after(lite_hub: Hub) -> None:
    hub = lite_hub
    for i in range(5):
        conv = await inbound(hub, "ann", f"text {i}", mid=f"m{i}")
    ids = [m["id"] for m in await hub.messages(conv)]
    assert len(ids) == 5
    base = f"/api/v1/conversations/{conv}/messages"
    page = await (await hub.client.get(f"{base}?limit=2", headers=hub.agent)).json()
    assert [m["id"] for m in page["messages"]] == ids[3:]
    older = await (
        await hub.client.get(f"{base}?limit=2&before={page['next_before']}", headers=hub.agent)
    ).json()
    assert [m["id"] for m in older["messages"]] == ids[1:3]
    newer = await (await hub.client.get(f"{base}?after={ids[1]}&limit=2", headers=hub.agent)).json()
    assert [m["id"] for m in newer["messages"]] == ids[2:4]


async def test_filters_combine_mine_unassigned_team_channel_status(lite_hub: Hub) -> None:
    hub = lite_hub
    ann = await inbound(hub, "ann")
    bob = await inbound(hub, "bob")
    cat = await inbound(hub, "cat")
    take = await hub.client.patch(
        f"/api/v1/conversations/{ann}", json={"assignee_id": hub.agent_id}, headers=hub.agent
    )
    assert take.status == 200, await take.text()
    resolve = await hub.client.patch(
        f"/api/v1/conversations/{bob}", json={"status": "resolved"}, headers=hub.agent
    )
    assert resolve.status == 200
    assert await listed(hub, "assignee=mine") == [ann]
    assert set(await listed(hub, "assignee=unassigned")) == {bob, cat}
    assert await listed(hub, "assignee=unassigned&status=open") == [cat]
    assert await listed(hub, "assignee=assigned") == [ann]
    assert await listed(hub, "status=resolved") == [bob]
    assert set(await listed(hub, "channel_id=fk")) == {ann, bob, cat}
    assert await listed(hub, "channel_id=other") == []
    team = await hub.client.post(
        "/api/v1/admin/teams",
        json={"name": "Billing", "member_ids": [hub.agent_id], "channel_ids": ["fk"]},
        headers=hub.admin,
    )
    assert team.status == 201, await team.text()
    team_id = (await team.json())["id"]
    moved = await hub.client.patch(f"/api/v1/conversations/{cat}", json={"team": team_id}, headers=hub.admin)
    assert moved.status == 200, await moved.text()
    assert await listed(hub, f"team={team_id}") == [cat]
    assert await listed(hub, f"team={team_id}&status=resolved") == []


# ---- previews ---------------------------------------------------------------------------------


async def conv_of(hub: Hub, conv_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await hub.client.get(f"/api/v1/conversations/{conv_id}", headers=headers or hub.agent)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_the_preview_follows_inbound_outbound_edits_and_deletions(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await inbound(hub, "ann", "first words", mid="m1")
    preview = (await conv_of(hub, conv))["last_message"]
    assert (preview["text"], preview["direction"], preview["kind"]) == ("first words", "inbound", "text")
    assert preview["sender"]["type"] == "contact"
    listed_conv = next(c for c in await hub.conversations() if c["id"] == conv)
    assert listed_conv["last_message"] == preview
    sent = await hub.client.post(
        f"/api/v1/conversations/{conv}/messages", json={"text": "our answer"}, headers=hub.agent
    )
    assert sent.status == 202
    preview = (await conv_of(hub, conv))["last_message"]
    assert (preview["text"], preview["direction"], preview["id"]) == (
        "our answer",
        "outbound",
        (await sent.json())["id"],
    )
    later = int(time.time()) + 5
    # A second after the reply (whose time is the hub's clock): the newest message again.
    await inbound(hub, "ann", "secret plans", mid="m2", ts=later - 3)
    after = max(e["seq"] for e in await hub.events())
    edit = {"type": "edit", "id": "e1", "target": "m2", "from": "ann", "text": "public plans", "ts": later}
    assert (await hub.webhook(edit)).status == 200

    async def edited() -> dict[str, Any] | None:
        p = (await conv_of(hub, conv))["last_message"]
        return p if p["text"] == "public plans" else None

    assert (await eventually(edited))["edited"] is True
    delete = {"type": "delete", "id": "d1", "target": "m2", "from": "ann", "ts": later + 1}
    assert (await hub.webhook(delete)).status == 200

    async def deleted() -> dict[str, Any] | None:
        p = (await conv_of(hub, conv))["last_message"]
        return p if p["deleted"] else None

    preview = await eventually(deleted)
    assert preview["text"] is None
    listed_conv = next(c for c in await hub.conversations() if c["id"] == conv)
    assert "plans" not in json.dumps(listed_conv), "a deleted last message leaked its text"
    updates = [
        e["data"]
        for e in await hub.events(after)
        if e["type"] == "conversation.updated" and e["data"]["id"] == conv
    ]
    assert [u["last_message"]["text"] for u in updates][-2:] == ["public plans", None]
    assert updates[-1]["last_message"]["deleted"] is True


# ---- unread per user ----------------------------------------------------------------------------


async def test_unread_counts_and_read_markers_are_per_user(lite_hub: Hub) -> None:
    hub = lite_hub
    await inbound(hub, "ann", "one", mid="m1")
    conv = await inbound(hub, "ann", "two", mid="m2")
    assert (await conv_of(hub, conv))["unread_count"] == 2
    assert (await conv_of(hub, conv, hub.admin))["unread_count"] == 2
    assert await listed(hub, "unread=true") == [conv]
    after = max(e["seq"] for e in await hub.events(headers=hub.admin))
    read = await hub.client.post(f"/api/v1/conversations/{conv}/read", headers=hub.agent)
    assert read.status == 200, await read.text()
    assert (await read.json())["unread_count"] == 0
    mine = await conv_of(hub, conv)
    assert (mine["unread_count"], mine["inbound_count"]) == (0, 2)
    assert mine["last_read_at"] is not None
    # The administrator has not read it: their count is their own.
    theirs = await conv_of(hub, conv, hub.admin)
    assert (theirs["unread_count"], theirs["last_read_at"]) == (2, None)
    assert await listed(hub, "unread=true") == []
    assert await listed(hub, "unread=false") == [conv]
    assert await listed(hub, "unread=true", hub.admin) == [conv]
    # The reader's other devices hear of it; nobody else does.
    reads = [e for e in await hub.events(after) if e["type"] == "conversation.read"]
    assert [(e["data"]["user_id"], e["data"]["unread_count"]) for e in reads] == [(hub.agent_id, 0)]
    assert not [e for e in await hub.events(after, hub.admin) if e["type"] == "conversation.read"]
    await inbound(hub, "ann", "three", mid="m3")
    assert (await conv_of(hub, conv))["unread_count"] == 1
    assert (await conv_of(hub, conv, hub.admin))["unread_count"] == 3


# ---- counts and agents --------------------------------------------------------------------------


async def test_counts_per_status_follow_the_other_filters(lite_hub: Hub) -> None:
    hub = lite_hub
    ann = await inbound(hub, "ann")
    bob = await inbound(hub, "bob")
    await inbound(hub, "cat")
    await hub.client.patch(f"/api/v1/conversations/{bob}", json={"status": "resolved"}, headers=hub.agent)
    await hub.client.patch(
        f"/api/v1/conversations/{ann}", json={"assignee_id": hub.agent_id}, headers=hub.agent
    )

    async def counts(query: str) -> dict[str, Any]:
        resp = await hub.client.get(f"/api/v1/conversations/counts?{query}", headers=hub.agent)
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())

    everything = await counts("")
    assert everything == {"counts": {"open": 2, "pending": 0, "resolved": 1, "snoozed": 0}, "total": 3}
    # The status filter is the tab itself: the counts ignore it.
    assert await counts("status=resolved") == everything
    assert (await counts("assignee=unassigned"))["counts"] == {
        "open": 1,
        "pending": 0,
        "resolved": 1,
        "snoozed": 0,
    }
    assert (await counts("assignee=mine"))["total"] == 1
    resp = await hub.client.get("/api/v1/conversations/counts?assignee=bogus", headers=hub.agent)
    assert resp.status == 400


async def test_the_agents_list_shows_who_can_be_assigned_with_availability(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await inbound(hub, "ann")
    outsider = await hub.client.post(
        "/api/v1/admin/users",
        json={"email": "out@example.com", "name": "Out", "role": "agent"},
        headers=hub.admin,
    )
    assert outsider.status == 201, await outsider.text()
    outsider_id = (await outsider.json())["user"]["id"]
    busy = await hub.client.put("/api/v1/me/availability", json={"status": "busy"}, headers=hub.agent)
    assert busy.status == 200, await busy.text()

    async def agents(query: str = "", headers: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        resp = await hub.client.get(f"/api/v1/agents{query}", headers=headers or hub.agent)
        assert resp.status == 200, await resp.text()
        return {a["id"]: a for a in (await resp.json())["agents"]}

    seen = await agents()
    assert hub.agent_id in seen and outsider_id not in seen, "an agent sees who shares a channel"
    me = seen[hub.agent_id]
    assert (me["availability"], me["shows_as"], me["receives"]) == ("busy", "away", False)
    assert outsider_id in await agents(headers=hub.admin), "an administrator sees everyone"
    for_conv = await agents(f"?conversation_id={conv}", hub.admin)
    assert hub.agent_id in for_conv and outsider_id not in for_conv, "only who may be assigned there"
    assert (await hub.client.get("/api/v1/agents?channel_id=nope", headers=hub.agent)).status == 404
    assigned = await hub.client.patch(
        f"/api/v1/conversations/{conv}", json={"assignee_id": hub.agent_id}, headers=hub.admin
    )
    assert assigned.status == 200
    assert (await agents())[hub.agent_id]["open_conversations"] == 1


# ---- search -------------------------------------------------------------------------------------


async def search(hub: Hub, q: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await hub.client.get("/api/v1/search", params={"q": q}, headers=headers or hub.agent)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_search_follows_inserts_edits_and_deletions_within_scope(hub: Hub) -> None:
    conv = await inbound(hub, "ann", "Where is my parcel, Ünïcode-Straße 5?", mid="m1")
    await inbound(hub, "bob", "nothing to see", mid="m2")
    found = await search(hub, "PARCEL")
    assert [m["id"] for m in found["messages"]] == [m["id"] for m in await hub.messages(conv)]
    assert [m["conversation_id"] for m in found["messages"]] == [conv]
    assert (await search(hub, "where parc"))["messages"], "the last word is a prefix"
    assert (await search(hub, "parcel bob"))["messages"] == [], "every word must appear"
    assert (await search(hub, '"); DROP TABLE messages; --'))["messages"] == []
    assert (await search(hub, ""))["messages"] == []
    assert [c["name"] for c in (await search(hub, "ann"))["contacts"]] == ["Ann"]
    edit = {
        "type": "edit",
        "id": "e1",
        "target": "m1",
        "from": "ann",
        "text": "my box",
        "ts": int(time.time()) + 1,
    }
    assert (await hub.webhook(edit)).status == 200

    async def reindexed() -> bool:
        return not (await search(hub, "parcel"))["messages"] and bool((await search(hub, "box"))["messages"])

    assert await eventually(reindexed)
    delete = {"type": "delete", "id": "d1", "target": "m1", "from": "ann", "ts": int(time.time()) + 2}
    assert (await hub.webhook(delete)).status == 200

    async def gone() -> bool:
        return not (await search(hub, "box"))["messages"]

    assert await eventually(gone), "a deleted message is still found by its text"
    # An agent who serves no channel finds nothing, message or contact.
    await hub.serve("fk")
    assert await search(hub, "nothing") == {"messages": [], "contacts": []}
    assert (await search(hub, "nothing", hub.admin))["messages"]
