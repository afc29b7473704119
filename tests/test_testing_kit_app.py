"""The kit's in-process hub fixture, as a plugin author would use it."""

from __future__ import annotations

from typing import Any

from hub.testing.fake_channel import sign, webhook_body
from hub.testing.pytest_plugin import HubTestApp


async def test_hub_client_runs_a_webhook_through_the_pipeline(hub_client: HubTestApp) -> None:
    created = await hub_client.create_channel("fake", {"secret": "kit-secret-1", "verify_token": "v"}, "kit")
    assert created["setup"]["webhook_url"] == "http://hub.test/webhooks/kit"
    assert created["settings"]["secret"] == "********"
    body = webhook_body({"type": "message", "id": "k1", "from": "bob", "text": "hello", "ts": 1_700_000_000})
    resp = await hub_client.post_webhook("kit", body, sign("kit-secret-1", body))
    assert resp.status == 200
    ev: dict[str, Any] = await hub_client.wait_for_event("message.created")
    assert ev["data"]["text"] == "hello"
    assert ev["channel_id"] == "kit"


async def test_admin_can_test_a_channels_credentials(hub_client: HubTestApp) -> None:
    await hub_client.create_channel(
        "fake", {"secret": "kit-secret-2", "verify_token": "v", "fail_with": "auth"}, "bad"
    )
    resp = await hub_client.client.post("/api/v1/admin/channels/bad/check", headers=hub_client.admin_headers)
    assert resp.status == 200
    health = await resp.json()
    assert health["state"] == "auth_failed"
    assert "credentials" in health["action"]
    listed = await (
        await hub_client.client.get("/api/v1/admin/channels/bad", headers=hub_client.admin_headers)
    ).json()
    assert listed["health"]["state"] == "auth_failed"
    missing = await hub_client.client.post(
        "/api/v1/admin/channels/nope/check", headers=hub_client.admin_headers
    )
    assert missing.status == 404
