"""Workspace configuration end to end, against a real ``hub serve``: an admin defines labels, custom
attributes, teams and statuses through the admin API; an agent's app reads each one with its ETag,
gets 304 while nothing changed, and hears ``config.updated`` (naming the resource and its new ETag)
on the stream when something does. Labels survive a rename and vanish on delete; an invalid custom
attribute value is a 422 naming the field; two contacts merge."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    assert_error,
    create_wa_channel,
    inbound_conversation,
    phone,
    unique,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(api: Api, graph: ThreadedFakeGraph) -> WaChannel:
    return await create_wa_channel(api, graph.base_url, name="Config")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(api: Api, channel: WaChannel) -> tuple[str, Api]:
    """An agent made through the admin API, serving the channel: (user id, their Api)."""
    email = unique("cfg-agent-") + "@example.com"
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
    await api.ok(
        "PUT", f"/api/v1/admin/channels/{channel.id}/members", json_body={"user_ids": [made["user"]["id"]]}
    )
    return made["user"]["id"], Api(api.session, api.base_url, login["token"])


def etag(resp: Any) -> str:
    """The ETag header, whatever case the transport gave its name."""
    found = {k.lower(): v for k, v in resp.headers.items()}
    return str(found["etag"])


async def cached_read(app: Api, path: str) -> tuple[Any, str]:
    """Read as a caching app does: the body and its ETag, then the same read revalidated gives 304."""
    first = await app.get(path)
    assert first.status == 200, first
    tag = etag(first)
    again = await app.get(path, headers={"If-None-Match": tag})
    assert again.status == 304 and again.text == "", (path, again)
    return first.json, tag


async def test_admin_defines_each_item_and_the_app_caches_and_hears_changes(
    api: Api, agent: tuple[str, Api], shared_hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    _, app = agent
    reads = {
        "labels": "/api/v1/labels",
        "custom_attributes": "/api/v1/custom-attributes",
        "teams": "/api/v1/teams",
        "availability_statuses": "/api/v1/availability-statuses",
        "channels": "/api/v1/channels",
        "permissions": "/api/v1/me/permissions",
        "config": "/api/v1/config",
    }
    etags = {}
    for name, path in reads.items():
        _, etags[name] = await cached_read(app, path)
    assert app.token
    label_name = unique("vip-")
    async with EventStream(http, shared_hub.base_url, app.token, await api.last_seq()) as stream:
        await stream.wait_live()
        # Each admin change: config.updated naming the resource, its ETag what the agent reads next.
        changes: list[tuple[str, str, dict[str, Any]]] = [
            ("labels", "/api/v1/admin/labels", {"name": label_name, "colour": "#00aa00"}),
            (
                "custom_attributes",
                "/api/v1/admin/custom-attributes",
                {
                    "applies_to": "conversation",
                    "key": unique("plan_"),
                    "name": "Plan",
                    "type": "list",
                    "options": ["gold"],
                },
            ),
            ("teams", "/api/v1/admin/teams", {"name": unique("team-")}),
            (
                "availability_statuses",
                "/api/v1/admin/availability-statuses",
                {"id": unique("st-"), "name": "Lunch", "receives": False, "push": False, "shows_as": "away"},
            ),
        ]
        for resource, path, body in changes:
            await api.ok("POST", path, expect=201, json_body=body)
            event = await stream.wait_event("config.updated", resource=resource)
            stale = await app.get(reads[resource], headers={"If-None-Match": etags[resource]})
            assert stale.status == 200, (resource, stale)
            assert etag(stale) == f'"{event["data"]["etag"]}"', resource
            assert etag(stale) != etags[resource]
        labels = (await app.ok("GET", "/api/v1/labels"))["labels"]
        assert any(x["name"] == label_name and x["colour"] == "#00aa00" for x in labels)
    bundle = await app.get("/api/v1/config", headers={"If-None-Match": etags["config"]})
    assert bundle.status == 200
    for resource, path in reads.items():
        if resource != "config":
            assert etag(await app.get(path)) == f'"{bundle.json["etags"][resource]}"', resource
    # Agents read; only admins define.
    assert_error(await app.post("/api/v1/admin/labels", {"name": unique("x")}), 403, "forbidden")


async def test_labels_on_a_conversation_survive_a_rename_and_go_with_a_delete(
    api: Api, agent: tuple[str, Api], channel: WaChannel
) -> None:
    _, app = agent
    conv_id = await inbound_conversation(api, channel, phone())
    label = await api.ok("POST", "/api/v1/admin/labels", expect=201, json_body={"name": unique("Lead-")})
    conv = await app.ok(
        "PATCH", f"/api/v1/conversations/{conv_id}", json_body={"labels": [label["name"].upper()]}
    )
    assert conv["labels"] == [label["name"]]
    assert_error(
        await app.patch(f"/api/v1/conversations/{conv_id}", {"labels": [unique("undefined-")]}),
        422,
        "validation_failed",
    )
    contact_id = conv["contact"]["id"]
    await app.ok("PATCH", f"/api/v1/contacts/{contact_id}", json_body={"labels": [label["name"]]})
    new_name = unique("Customer-")
    after = await api.last_seq()
    await api.ok("PATCH", f"/api/v1/admin/labels/{label['id']}", json_body={"name": new_name})
    assert (await app.ok("GET", f"/api/v1/conversations/{conv_id}"))["labels"] == [new_name]
    assert (await app.ok("GET", f"/api/v1/contacts/{contact_id}"))["labels"] == [new_name]
    updated = [e for e in await app.events(after) if e["type"] == "conversation.updated"]
    assert updated and updated[-1]["data"]["labels"] == [new_name]
    assert (await api.request("DELETE", f"/api/v1/admin/labels/{label['id']}")).status == 204
    assert (await app.ok("GET", f"/api/v1/conversations/{conv_id}"))["labels"] == []
    assert (await app.ok("GET", f"/api/v1/contacts/{contact_id}"))["labels"] == []


async def test_an_invalid_custom_attribute_value_is_a_422_naming_the_field(
    api: Api, agent: tuple[str, Api], channel: WaChannel
) -> None:
    _, app = agent
    conv_id = await inbound_conversation(api, channel, phone())
    key = unique("seats_")
    await api.ok(
        "POST",
        "/api/v1/admin/custom-attributes",
        expect=201,
        json_body={
            "applies_to": "conversation",
            "key": key,
            "name": "Seats",
            "type": "number",
            "min": 1,
            "max": 50,
        },
    )
    err = assert_error(
        await app.patch(f"/api/v1/conversations/{conv_id}", {"custom_attributes": {key: 51}}),
        422,
        "validation_failed",
    )
    assert err["details"] == [{"field": f"custom_attributes.{key}", "message": "Seats must be at most 50"}]
    conv = await app.ok(
        "PATCH", f"/api/v1/conversations/{conv_id}", json_body={"custom_attributes": {key: 7}}
    )
    assert conv["custom_attributes"][key] == 7 and conv["attribute_problems"] == []


async def test_two_contacts_merge_with_their_conversations_and_identities(
    api: Api, agent: tuple[str, Api], channel: WaChannel
) -> None:
    one, two = phone(), phone()
    conv_a = await inbound_conversation(api, channel, one)
    conv_b = await inbound_conversation(api, channel, two)
    keep = (await api.ok("GET", f"/api/v1/conversations/{conv_a}"))["contact"]["id"]
    gone = (await api.ok("GET", f"/api/v1/conversations/{conv_b}"))["contact"]["id"]
    found = await api.ok("GET", "/api/v1/contacts", params={"q": two})
    assert [c["id"] for c in found["contacts"]] == [gone]
    merged = await api.ok("POST", f"/api/v1/contacts/{keep}/merge", json_body={"contact_id": gone})
    assert sorted(i["identity"] for i in merged["channel_identities"]) == sorted([f"wa:{one}", f"wa:{two}"])
    assert (await api.ok("GET", f"/api/v1/conversations/{conv_b}"))["contact"]["id"] == keep
    assert_error(await api.get(f"/api/v1/contacts/{gone}"), 404, "not_found")


async def test_serve_runs_on_uvloop_where_it_is_installed(shared_hub: HubProcess) -> None:
    pytest.importorskip("uvloop", reason="uvloop is installed with the hub except on Windows")
    # hub serve names the loop actually running when it starts serving.
    assert "event loop: uvloop," in shared_hub.log_text()


async def test_business_hours_reach_the_agents_of_the_channel_and_no_one_else(
    api: Api,
    agent: tuple[str, Api],
    graph: ThreadedFakeGraph,
    shared_hub: HubProcess,
    http: aiohttp.ClientSession,
) -> None:
    agent_id, app = agent
    served = await create_wa_channel(api, graph.base_url, name="Hours served")
    other = await create_wa_channel(api, graph.base_url, name="Hours not served")
    await api.ok("PUT", f"/api/v1/admin/channels/{served.id}/members", json_body={"user_ids": [agent_id]})
    _, before = await cached_read(app, "/api/v1/business-hours")
    assert app.token
    async with EventStream(http, shared_hub.base_url, app.token, await api.last_seq()) as stream:
        await stream.wait_live()
        for channel in (served, other):
            body = {
                "name": unique("hours-"),
                "scope_type": "channel",
                "scope_id": channel.id,
                "timezone": "Europe/Berlin",
                "weekly": {"mon": [["09:00", "17:00"]]},
                "autoresponder": {"enabled": True, "text": "We are closed"},
            }
            await api.ok("POST", "/api/v1/admin/business-hours", expect=201, json_body=body)
            event = await stream.wait_event("config.updated", resource="business_hours")
            assert event["data"]["etag"] is None  # it differs per reader: revalidate
    fresh = await app.get("/api/v1/business-hours", headers={"If-None-Match": before})
    assert fresh.status == 200, fresh
    scopes = {h["scope_id"]: h for h in fresh.json["business_hours"]}
    assert served.id in scopes and other.id not in scopes
    assert scopes[served.id]["timezone"] == "Europe/Berlin" and "autoresponder" not in scopes[served.id]
    admin = await api.ok("GET", "/api/v1/business-hours")
    assert {served.id, other.id} <= {h["scope_id"] for h in admin["business_hours"]}
