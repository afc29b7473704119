"""Workspace configuration the app caches (hub.services.config): ETags and 304s on every resource
and on the bundle, ``config.updated`` naming the resource and its new ETag; label definitions
applied to conversations and contacts; custom attribute validation; contacts and merging."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema
from hub.access import system_actor
from hub.appkeys import CONFIG_REGISTRY
from hub.events import Tx
from hub.services.config import ConfigRegistry, etag_of
from tests.conftest import Hub, eventually, fake_message

RESOURCES = {
    "labels": "/api/v1/labels",
    "custom_attributes": "/api/v1/custom-attributes",
    "teams": "/api/v1/teams",
    "availability_statuses": "/api/v1/availability-statuses",
    "channels": "/api/v1/channels",
    "permissions": "/api/v1/me/permissions",
    "quick_replies": "/api/v1/quick-replies",
    "macros": "/api/v1/macros",
    "notification_preferences": "/api/v1/me/notification-preferences",
    "business_hours": "/api/v1/business-hours",
}


async def get(hub: Hub, path: str, headers: dict[str, str] | None = None, **extra: str) -> Any:
    return await hub.client.get(path, headers={**(headers or hub.agent), **extra})


async def conversation(hub: Hub, who: str = "alice") -> dict[str, Any]:
    assert (await hub.webhook(fake_message(f"m-{who}", who))).status == 200

    async def find() -> dict[str, Any] | None:
        return next(
            (c for c in await hub.conversations() if c["contact"]["identities"] == [f"fake:{who}"]), None
        )

    found: dict[str, Any] = await eventually(find)
    return found


async def config_events(hub: Hub, after: int) -> list[dict[str, Any]]:
    return [e for e in await hub.events(after) if e["type"] == "config.updated"]


async def last_seq(hub: Hub) -> int:
    return max((e["seq"] for e in await hub.events()), default=0)


# ---- the registry and the HTTP contract ---------------------------------------------------------


async def test_every_resource_and_the_bundle_answer_304_to_their_etag(lite_hub: Hub) -> None:
    hub = lite_hub
    bundle = await get(hub, "/api/v1/config")
    assert bundle.status == 200
    body = await bundle.json()
    assert set(RESOURCES) <= set(body["etags"])
    for name, path in RESOURCES.items():
        first = await get(hub, path)
        assert first.status == 200, path
        etag = first.headers["ETag"]
        assert first.headers["Cache-Control"] == "private, no-cache"
        # The bundle holds each resource exactly as its route answers, with that route's ETag.
        assert body[name] == await first.json(), name
        assert etag == f'"{body["etags"][name]}"', name
        again = await get(hub, path, **{"If-None-Match": etag})
        assert again.status == 304, path
        assert again.headers["ETag"] == etag and await again.read() == b""
        weak = await get(hub, path, **{"If-None-Match": f'"nope", W/{etag}'})
        assert weak.status == 304, path
        other = await get(hub, path, **{"If-None-Match": '"something-else"'})
        assert other.status == 200 and await other.json() == await first.json()
    whole = await get(hub, "/api/v1/config", **{"If-None-Match": bundle.headers["ETag"]})
    assert whole.status == 304


async def test_a_change_announces_the_resource_with_the_etag_a_read_then_gets(lite_hub: Hub) -> None:
    hub = lite_hub
    before = await get(hub, "/api/v1/labels")
    old = before.headers["ETag"]
    seq = await last_seq(hub)
    await hub.define_label("VIP", colour="#FF0000", description="important")
    [event] = await config_events(hub, seq)
    assert event["data"]["resource"] == "labels" and event["data"]["by"]["type"] == "user"
    now = await get(hub, "/api/v1/labels", **{"If-None-Match": old})
    assert now.status == 200
    assert now.headers["ETag"] == f'"{event["data"]["etag"]}"' != old
    labels = (await now.json())["labels"]
    assert [(x["name"], x["colour"], x["description"]) for x in labels] == [("VIP", "#ff0000", "important")]


async def test_workspace_resources_are_announced_with_the_etag_a_read_then_gets(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    seq = await last_seq(hub)
    made = await c.post(
        "/api/v1/admin/quick-replies",
        json={"code": "hi", "text": "Hello {{contact.name}}"},
        headers=hub.admin,
    )
    assert made.status == 201
    [event] = [e["data"] for e in await config_events(hub, seq) if e["data"]["resource"] == "quick_replies"]
    read = await get(hub, "/api/v1/quick-replies")
    assert read.headers["ETag"] == f'"{event["etag"]}"'
    assert [q["code"] for q in (await read.json())["quick_replies"]] == ["hi"]
    # A search is not the cacheable resource: it answers without an ETag.
    search = await get(hub, "/api/v1/quick-replies?q=hello")
    assert search.status == 200 and "ETag" not in search.headers
    # Per-user resources: a personal macro and one's own preferences name the user and revalidate.
    seq = await last_seq(hub)
    before = (await get(hub, "/api/v1/macros")).headers["ETag"]
    macro = {
        "name": "Close",
        "visibility": "personal",
        "actions": [{"type": "set_status", "status": "resolved"}],
    }
    assert (await c.post("/api/v1/macros", json=macro, headers=hub.agent)).status == 201
    prefs = {"preferences": {"mention": {"email": False}}}
    assert (await c.patch("/api/v1/me/notification-preferences", json=prefs, headers=hub.agent)).status == 200
    events = {e["data"]["resource"]: e["data"] for e in await config_events(hub, seq)}
    me = await (await get(hub, "/api/v1/me")).json()
    for name in ("macros", "notification_preferences"):
        assert events[name]["etag"] is None and events[name]["user_id"] == me["id"], name
    after = await get(hub, "/api/v1/macros", **{"If-None-Match": before})
    assert after.status == 200 and [m["name"] for m in (await after.json())["macros"]] == ["Close"]
    bundle = await (await get(hub, "/api/v1/config")).json()
    assert bundle["notification_preferences"]["preferences"]["mention"]["email"] is False


async def test_business_hours_reach_every_agent_as_a_resource_without_the_reply(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    channel_id = (await (await get(hub, "/api/v1/channels", hub.admin)).json())["channels"][0]["id"]
    before = (await get(hub, "/api/v1/business-hours")).headers["ETag"]
    seq = await last_seq(hub)
    hours = {
        "name": "Support",
        "scope_type": "channel",
        "scope_id": channel_id,
        "timezone": "Europe/Berlin",
        "weekly": {"mon": [["09:00", "17:00"]]},
        "holidays": ["2026-12-25"],
        "autoresponder": {"enabled": True, "text": "We are closed"},
    }
    made = await c.post("/api/v1/admin/business-hours", json=hours, headers=hub.admin)
    assert made.status == 201, await made.text()
    hours_id = (await made.json())["id"]
    # An agent, who may not manage automations, reads the schedule; the reply text stays admin's.
    # Without a token, nobody does.
    assert (await get(hub, "/api/v1/admin/business-hours")).status == 403
    assert (await c.get("/api/v1/business-hours")).status == 401
    read = await get(hub, "/api/v1/business-hours")
    assert read.status == 200 and read.headers["ETag"] != before
    [schedule] = (await read.json())["business_hours"]
    assert schedule["id"] == hours_id and schedule["scope_id"] == channel_id
    assert schedule["weekly"] == {"mon": [["09:00", "17:00"]]} and schedule["holidays"] == ["2026-12-25"]
    assert "autoresponder" not in schedule
    # It differs per reader (a channel's hours only to those who serve it): announced without an
    # ETag, and a revalidation then sees the change.
    [event] = [e["data"] for e in await config_events(hub, seq) if e["data"]["resource"] == "business_hours"]
    assert event["etag"] is None and event["by"]["type"] == "user"
    # A change and a deletion are announced too.
    for change in (
        c.patch(f"/api/v1/admin/business-hours/{hours_id}", json={"timezone": "UTC"}, headers=hub.admin),
        c.delete(f"/api/v1/admin/business-hours/{hours_id}", headers=hub.admin),
    ):
        seq = await last_seq(hub)
        etag = (await get(hub, "/api/v1/business-hours")).headers["ETag"]
        assert (await change).status in (200, 204)
        assert [e for e in await config_events(hub, seq) if e["data"]["resource"] == "business_hours"]
        assert (await get(hub, "/api/v1/business-hours", **{"If-None-Match": etag})).status == 200
    assert (await (await get(hub, "/api/v1/business-hours")).json())["business_hours"] == []


async def test_an_agent_sees_only_the_business_hours_of_channels_it_serves(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    channel_id = (await (await get(hub, "/api/v1/channels", hub.admin)).json())["channels"][0]["id"]
    hours = {
        "name": "Support",
        "scope_type": "channel",
        "scope_id": channel_id,
        "timezone": "UTC",
        "weekly": {"mon": [["09:00", "17:00"]]},
    }
    assert (await c.post("/api/v1/admin/business-hours", json=hours, headers=hub.admin)).status == 201
    assert len((await (await get(hub, "/api/v1/business-hours")).json())["business_hours"]) == 1
    await hub.serve(channel_id)  # the agent no longer serves the channel
    outside = await get(hub, "/api/v1/business-hours")
    assert (await outside.json())["business_hours"] == []
    bundle = await (await get(hub, "/api/v1/config")).json()
    assert bundle["business_hours"]["business_hours"] == []
    admin = await (await get(hub, "/api/v1/business-hours", hub.admin)).json()
    assert [h["scope_id"] for h in admin["business_hours"]] == [channel_id]


async def test_existing_config_events_are_unified_on_resource_and_etag(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    seq = await last_seq(hub)
    status = {"id": "lunch", "name": "Lunch", "receives": False, "push": False, "shows_as": "away"}
    assert (await c.post("/api/v1/admin/availability-statuses", json=status, headers=hub.admin)).status == 201
    team = await c.post("/api/v1/admin/teams", json={"name": "Billing"}, headers=hub.admin)
    assert team.status == 201
    events = await config_events(hub, seq)
    by_resource = {e["data"]["resource"]: e["data"] for e in events}
    for name, path in (
        ("availability_statuses", "/api/v1/availability-statuses"),
        ("teams", "/api/v1/teams"),
    ):
        assert (await get(hub, path)).headers["ETag"] == f'"{by_resource[name]["etag"]}"', name
    assert all(set(e["data"]) >= {"resource", "etag"} for e in events)


async def test_per_user_resources_are_announced_without_an_etag(lite_hub: Hub) -> None:
    hub = lite_hub
    seq = await last_seq(hub)
    perms = await get(hub, "/api/v1/me/permissions")
    assert "labels.manage" not in (await perms.json())["permissions"]
    await hub.serve("fk")  # the agent no longer serves the channel
    events = {e["data"]["resource"]: e["data"] for e in await config_events(hub, seq)}
    assert events["channels"]["etag"] is None and events["permissions"]["etag"] is None
    channels = await get(hub, "/api/v1/channels")
    assert (await channels.json())["channels"] == []


async def test_the_registry_is_reusable_by_a_later_feature(lite_hub: Hub) -> None:
    """What a later feature (or a plugin) does: register a loader, announce a change inside a transaction."""
    hub = lite_hub
    registry: ConfigRegistry = hub.client.app[CONFIG_REGISTRY]
    state = {"n": 1}

    async def load(conn: Any, actor: Any) -> dict[str, Any]:
        return {"loyalty_tiers": [{"code": "hi", "n": state["n"]}]}

    registry.register("loyalty_tiers", load)
    with pytest.raises(ValueError):
        registry.register("loyalty_tiers", load)
    first = await registry.read(system_actor(), "loyalty_tiers")
    assert first.etag == etag_of(first.body)
    bundle = await (await get(hub, "/api/v1/config")).json()
    assert bundle["loyalty_tiers"] == {"loyalty_tiers": [{"code": "hi", "n": 1}]}
    assert bundle["etags"]["loyalty_tiers"] == first.etag
    state["n"] = 2
    tx: Tx
    async with hub.store.tx() as tx:
        etag = await registry.changed(tx, "loyalty_tiers", by=system_actor().ref)
    assert etag is not None and etag != first.etag
    [event] = [e for e in await hub.events() if e["data"].get("resource") == "loyalty_tiers"]
    assert event["data"]["etag"] == etag


# ---- labels -------------------------------------------------------------------------------------


async def test_labels_are_definitions_unique_whatever_their_case(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    made = await hub.define_label("Billing")
    dup = await c.post("/api/v1/admin/labels", json={"name": "BILLING"}, headers=hub.admin)
    assert dup.status == 409 and (await dup.json())["error"]["code"] == "conflict"
    agent_try = await c.post("/api/v1/admin/labels", json={"name": "x"}, headers=hub.agent)
    assert agent_try.status == 403
    bad = await c.post("/api/v1/admin/labels", json={"name": "y", "colour": "red"}, headers=hub.admin)
    assert bad.status == 422 and (await bad.json())["error"]["details"][0]["field"] == "colour"
    other = await hub.define_label("Other")
    clash = await c.patch(f"/api/v1/admin/labels/{other['id']}", json={"name": "billing"}, headers=hub.admin)
    assert clash.status == 409
    missing = await c.patch("/api/v1/admin/labels/lbl_nope", json={"name": "z"}, headers=hub.admin)
    assert missing.status == 404
    assert made["colour"] == "#1f93ff"


async def test_unknown_label_is_a_422_naming_it_and_nothing_changes(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    await hub.define_label("vip")
    seq = await last_seq(hub)
    resp = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"labels": ["VIP", "ghost"]}, headers=hub.agent
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["details"] == [
        {"field": "labels.1", "message": "no label named 'ghost'; an admin defines labels first"}
    ]
    assert await last_seq(hub) == seq
    ok = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"labels": ["VIP"]}, headers=hub.agent
    )
    assert (await ok.json())["labels"] == ["vip"]


async def test_a_renamed_label_stays_applied_and_a_deleted_one_goes_everywhere(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    conv = await conversation(hub)
    label = await hub.define_label("vip")
    await hub.define_label("keep")
    resp = await c.patch(
        f"/api/v1/conversations/{conv['id']}", json={"labels": ["vip", "keep"]}, headers=hub.agent
    )
    assert (await resp.json())["labels"] == ["keep", "vip"]
    contact_id = conv["contact"]["id"]
    resp = await c.patch(f"/api/v1/contacts/{contact_id}", json={"labels": ["vip"]}, headers=hub.agent)
    assert resp.status == 200 and (await resp.json())["labels"] == ["vip"]
    seq = await last_seq(hub)
    renamed = await c.patch(f"/api/v1/admin/labels/{label['id']}", json={"name": "Gold"}, headers=hub.admin)
    assert renamed.status == 200 and (await renamed.json())["name"] == "Gold"
    got = await (await get(hub, f"/api/v1/conversations/{conv['id']}")).json()
    assert got["labels"] == ["Gold", "keep"]
    assert (await (await get(hub, f"/api/v1/contacts/{contact_id}")).json())["labels"] == ["Gold"]
    events = await hub.events(seq)
    kinds = [e["type"] for e in events]
    assert kinds == ["conversation.updated", "contact.updated", "config.updated"]
    assert events[0]["data"]["labels"] == ["Gold", "keep"] and events[0]["data"]["changed"] == ["labels"]
    assert events[1]["data"]["labels"] == ["Gold"]
    # Filtering by the new name finds it; the old name finds nothing.
    page = await (await get(hub, "/api/v1/conversations?label=gold")).json()
    assert [x["id"] for x in page["conversations"]] == [conv["id"]]
    assert (await (await get(hub, "/api/v1/conversations?label=vip")).json())["conversations"] == []
    seq = await last_seq(hub)
    assert (await c.delete(f"/api/v1/admin/labels/{label['id']}", headers=hub.admin)).status == 204
    got = await (await get(hub, f"/api/v1/conversations/{conv['id']}")).json()
    assert got["labels"] == ["keep"]
    assert (await (await get(hub, f"/api/v1/contacts/{contact_id}")).json())["labels"] == []
    assert [e["type"] for e in await hub.events(seq)] == [
        "conversation.updated",
        "contact.updated",
        "config.updated",
    ]
    async with hub.store.db.read() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(schema.conversation_labels))
    assert left == 1


async def test_deleting_a_team_clears_it_from_conversations(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    conv = await conversation(hub)
    team = await (await c.post("/api/v1/admin/teams", json={"name": "T"}, headers=hub.admin)).json()
    unknown = await c.patch(f"/api/v1/conversations/{conv['id']}", json={"team": "Sales"}, headers=hub.agent)
    assert unknown.status == 422 and (await unknown.json())["error"]["details"][0]["field"] == "team"
    resp = await c.patch(f"/api/v1/conversations/{conv['id']}", json={"team": team["id"]}, headers=hub.admin)
    assert (await resp.json())["team"] == team["id"]
    assert (await c.delete(f"/api/v1/admin/teams/{team['id']}", headers=hub.admin)).status == 204
    got = await (await get(hub, f"/api/v1/conversations/{conv['id']}", hub.admin)).json()
    assert got["team"] is None


# ---- custom attributes --------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], Any]] = [
    ("text", {"pattern": "[A-Z]{3}-[0-9]+"}, "abc-1"),
    ("text", {"max": 3}, "abcd"),
    ("number", {"min": 1, "max": 10}, 11),
    ("number", {}, "12"),
    ("number", {}, True),
    ("date", {"min": "2026-01-01"}, "2025-12-31"),
    ("date", {}, "31/12/2026"),
    ("list", {"options": ["gold", "silver"]}, "bronze"),
    ("checkbox", {}, "yes"),
    ("link", {}, "ftp://x.example"),
    ("link", {}, "not a url"),
]
VALID: list[tuple[str, dict[str, Any], Any]] = [
    ("text", {"pattern": "[A-Z]{3}-[0-9]+"}, "ABC-12"),
    ("number", {"min": 1, "max": 10}, 2.5),
    ("date", {"min": "2026-01-01", "max": "2026-12-31"}, "2026-06-01"),
    ("list", {"options": ["gold", "silver"]}, "gold"),
    ("checkbox", {}, False),
    ("link", {}, "https://example.com/x"),
]


async def test_each_type_refuses_a_misfit_with_a_422_naming_the_field(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    for i, (kind, constraints, _) in enumerate(INVALID + VALID):
        await hub.define_attribute(f"a{i}", kind, **constraints)
    seq = await last_seq(hub)
    for i, (kind, _, value) in enumerate(INVALID):
        resp = await hub.client.patch(
            f"/api/v1/conversations/{conv['id']}",
            json={"custom_attributes": {f"a{i}": value}},
            headers=hub.agent,
        )
        assert resp.status == 422, (kind, value)
        err = (await resp.json())["error"]
        assert err["code"] == "validation_failed"
        assert [d["field"] for d in err["details"]] == [f"custom_attributes.a{i}"], (kind, value, err)
    assert await last_seq(hub) == seq  # nothing half-stored
    values = {f"a{len(INVALID) + i}": value for i, (_, _, value) in enumerate(VALID)}
    ok = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"custom_attributes": values}, headers=hub.agent
    )
    assert ok.status == 200, await ok.text()
    data = await ok.json()
    assert data["custom_attributes"] == values and data["attribute_problems"] == []
    undefined = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"custom_attributes": {"nope": 1}}, headers=hub.agent
    )
    assert (await undefined.json())["error"]["details"][0]["field"] == "custom_attributes.nope"


async def test_definitions_are_checked_when_made(lite_hub: Hub) -> None:
    hub = lite_hub
    cases = [
        ({"type": "list"}, "list.options"),
        ({"type": "list", "options": ["a", "a"]}, "list.options"),
        ({"type": "text", "options": ["a"]}, "text.options"),
        ({"type": "number", "pattern": "x"}, "number.pattern"),
        ({"type": "text", "pattern": "("}, "pattern"),
        ({"type": "date", "min": "tomorrow"}, "date.min"),
        ({"type": "checkbox", "max": 1}, "checkbox.max"),
        ({"type": "number", "min": True}, "number.min"),
        ({"type": "text", "key": "Bad Key"}, "text.key"),
        ({"type": "colour"}, "(body)"),
    ]
    for extra, field in cases:
        body = {"applies_to": "contact", "key": "k", "name": "K", **extra}
        resp = await hub.client.post("/api/v1/admin/custom-attributes", json=body, headers=hub.admin)
        assert resp.status == 422, (extra, await resp.text())
        fields = [d["field"] for d in (await resp.json())["error"]["details"]]
        assert field in fields, (extra, fields)


async def test_a_required_attribute_must_stay_set(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    await hub.define_attribute("order_id", required=True)
    await hub.define_attribute("note")
    url = f"/api/v1/conversations/{conv['id']}"
    # The conversation predates the definition: flagged, not refused on read.
    got = await (await get(hub, url)).json()
    assert got["attribute_problems"] == [{"key": "order_id", "message": "is required"}]
    resp = await hub.client.patch(url, json={"custom_attributes": {"note": "hi"}}, headers=hub.agent)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "custom_attributes.order_id"
    both = {"note": "hi", "order_id": "A1"}
    assert (await hub.client.patch(url, json={"custom_attributes": both}, headers=hub.agent)).status == 200
    removing = await hub.client.patch(url, json={"custom_attributes": {"order_id": None}}, headers=hub.agent)
    assert removing.status == 422


async def test_a_definition_change_keeps_values_and_flags_misfits(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    conv = await conversation(hub)
    plan = await hub.define_attribute("plan", "list", options=["gold", "silver"])
    seats = await hub.define_attribute("seats", "number")
    url = f"/api/v1/conversations/{conv['id']}"
    resp = await c.patch(url, json={"custom_attributes": {"plan": "silver", "seats": 40}}, headers=hub.agent)
    assert resp.status == 200
    narrowed = await c.patch(
        f"/api/v1/admin/custom-attributes/{plan['id']}", json={"options": ["gold"]}, headers=hub.admin
    )
    assert narrowed.status == 200
    capped = await c.patch(
        f"/api/v1/admin/custom-attributes/{seats['id']}", json={"max": 10}, headers=hub.admin
    )
    assert capped.status == 200 and (await capped.json())["max"] == 10
    got = await (await get(hub, url)).json()
    assert got["custom_attributes"] == {"plan": "silver", "seats": 40}
    assert got["attribute_problems"] == [
        {"key": "plan", "message": "must be one of: gold"},
        {"key": "seats", "message": "must be at most 10"},
    ]
    # A write of another attribute keeps the flagged value as it is.
    await hub.define_attribute("note")
    resp = await c.patch(url, json={"custom_attributes": {"note": "x"}}, headers=hub.agent)
    assert (await resp.json())["custom_attributes"] == {"plan": "silver", "seats": 40, "note": "x"}
    assert (await c.delete(f"/api/v1/admin/custom-attributes/{plan['id']}", headers=hub.admin)).status == 204
    got = await (await get(hub, url)).json()
    assert got["custom_attributes"]["plan"] == "silver"
    assert {"key": "plan", "message": "no attribute of this key is defined (any more)"} in got[
        "attribute_problems"
    ]
    # Correcting the value clears the flag.
    resp = await c.patch(url, json={"custom_attributes": {"seats": 5}}, headers=hub.agent)
    assert {p["key"] for p in (await resp.json())["attribute_problems"]} == {"plan"}


# ---- contacts -----------------------------------------------------------------------------------


async def test_contacts_list_search_update_and_scope(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    alice = (await conversation(hub, "alice"))["contact"]
    bob = (await conversation(hub, "bob"))["contact"]
    await hub.define_attribute("tier", "list", applies_to="contact", options=["a", "b"])
    await hub.define_label("lead")
    page = await (await get(hub, "/api/v1/contacts")).json()
    assert {x["id"] for x in page["contacts"]} == {alice["id"], bob["id"]}
    found = await (await get(hub, "/api/v1/contacts?q=BO")).json()
    assert [x["id"] for x in found["contacts"]] == [bob["id"]]
    one = await (await get(hub, "/api/v1/contacts?limit=1")).json()
    assert len(one["contacts"]) == 1 and one["next_cursor"]
    two = await (await get(hub, f"/api/v1/contacts?limit=1&cursor={one['next_cursor']}")).json()
    assert len(two["contacts"]) == 1 and two["contacts"][0]["id"] != one["contacts"][0]["id"]
    assert (await get(hub, "/api/v1/contacts?cursor=garbage")).status == 400
    bad = await c.patch(
        f"/api/v1/contacts/{bob['id']}", json={"custom_attributes": {"tier": "z"}}, headers=hub.agent
    )
    assert bad.status == 422
    assert (await bad.json())["error"]["details"][0]["field"] == "custom_attributes.tier"
    resp = await c.patch(
        f"/api/v1/contacts/{bob['id']}",
        json={
            "name": "Bob B",
            "email": "bob@example.com",
            "labels": ["lead"],
            "custom_attributes": {"tier": "a"},
        },
        headers=hub.agent,
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert (data["name"], data["email"], data["labels"], data["custom_attributes"]) == (
        "Bob B",
        "bob@example.com",
        ["lead"],
        {"tier": "a"},
    )
    assert data["channel_identities"] == [{"channel_id": "fk", "identity": "fake:bob"}]
    by_label = await (await get(hub, "/api/v1/contacts?label=LEAD")).json()
    assert [x["id"] for x in by_label["contacts"]] == [bob["id"]]
    await hub.serve("fk")  # the agent leaves the channel: its contacts go out of scope
    assert (await get(hub, f"/api/v1/contacts/{bob['id']}")).status == 404
    assert (await (await get(hub, "/api/v1/contacts")).json())["contacts"] == []


async def test_merging_moves_conversations_and_keeps_every_identity(hub: Hub) -> None:
    c = hub.client
    a = await conversation(hub, "alice")
    b = await conversation(hub, "alice2")
    await hub.define_label("vip")
    await c.patch(
        f"/api/v1/contacts/{b['contact']['id']}",
        json={"labels": ["vip"], "email": "a@x.io"},
        headers=hub.agent,
    )
    keep, gone = a["contact"]["id"], b["contact"]["id"]
    assert (
        await c.post(f"/api/v1/contacts/{keep}/merge", json={"contact_id": gone}, headers=hub.agent)
    ).status == 403
    seq = max(e["seq"] for e in await hub.events())
    resp = await c.post(f"/api/v1/contacts/{keep}/merge", json={"contact_id": gone}, headers=hub.admin)
    assert resp.status == 200, await resp.text()
    merged = await resp.json()
    assert merged["identities"] == ["fake:alice", "fake:alice2"]
    assert merged["labels"] == ["vip"] and merged["email"] == "a@x.io"
    assert (await get(hub, f"/api/v1/contacts/{gone}", hub.admin)).status == 404
    for conv in (a, b):
        got = await (await get(hub, f"/api/v1/conversations/{conv['id']}", hub.admin)).json()
        assert got["contact"]["id"] == keep
    types = [e["type"] for e in await hub.events(seq)]
    assert types[:2] == ["contact.merged", "contact.updated"] and types.count("conversation.updated") == 2
    # A later message from the merged identity lands on the kept contact.
    assert (await hub.webhook(fake_message("m-again", "alice2"))).status == 200

    async def landed() -> bool:
        texts = [m["text"] for m in await hub.messages(a["id"])]
        return len(texts) == 2

    await eventually(landed)
    async with hub.store.db.read() as conn:
        owners = set(await conn.scalars(sa.select(schema.conversations.c.contact_id)))
    assert owners == {keep}
    itself = await c.post(f"/api/v1/contacts/{keep}/merge", json={"contact_id": keep}, headers=hub.admin)
    assert itself.status == 422


@pytest.mark.parametrize(
    ("pattern", "portable"),
    [
        ("[A-Z]{3}-[0-9]+", True),
        ("a+?", True),
        (r"(a)\1", True),
        ("]", False),  # Python reads a literal, ECMAScript refuses it
        ("a{", False),
        ("a++", False),  # possessive: Python 3.11 only
        ("(?P<x>a)", False),
        ("(?i)a", False),
        (r"\A", False),
        (r"\310", False),
        ("(", False),
    ],
)
def test_patterns_are_ones_python_and_the_app_read_alike(pattern: str, portable: bool) -> None:
    from hub.services.attributes import pattern_problem

    assert (pattern_problem(pattern) is None) is portable
