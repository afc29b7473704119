"""The inbox an app shows: filters that combine, cursors and filter values that are checked (400 in
the one error shape), last-message previews, unread counts per user, counts per status, the agents
to assign to."""

from __future__ import annotations

from typing import Any

from tests.conftest import Hub, eventually, fake_message


async def inbound(hub: Hub, who: str, text: str = "hi", mid: str | None = None) -> str:
    resp = await hub.webhook(fake_message(mid or f"m-{who}-{text}", who, text))
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
