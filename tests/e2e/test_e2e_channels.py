"""Admin channel set-up and the provider handshake, against a real hub process (scenarios 1 and 2)."""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import (
    Api,
    HubProcess,
    ThreadedFakeGraph,
    assert_error,
    create_wa_channel,
    deliver_text,
    phone,
    settle,
    unique,
    wa_text_webhook,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MASK = "********"


def _fields(error: dict[str, object]) -> list[str]:
    details = error["details"]
    assert isinstance(details, list) and details, error
    return [str(d["field"]) for d in details if isinstance(d, dict)]


async def test_admin_creates_lists_disables_whatsapp_channel(
    api: Api, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Support line")
    secrets_planted = [ch.access_token, ch.app_secret]

    # The creation answer: setup instructions (webhook URL + verify token), secrets masked.
    created = ch.created
    assert created["type"] == "whatsapp"
    assert created["name"] == "Support line"
    assert created["enabled"] is True
    assert created["setup"]["webhook_url"] == f"{shared_hub.base_url}/webhooks/{ch.id}"
    assert created["setup"]["verify_token"] == ch.verify_token
    assert created["settings"]["access_token"] == MASK
    assert created["settings"]["app_secret"] == MASK
    assert created["settings"]["phone_number_id"] == ch.phone_number_id
    assert created["settings"]["api_base_url"] == graph.base_url

    # The app's channel list: type, name, capabilities and health; no settings at all.
    listed = {c["id"]: c for c in await api.channels()}
    assert ch.id in listed, listed
    mine = listed[ch.id]
    assert mine["type"] == "whatsapp"
    assert mine["name"] == "Support line"
    caps = mine["capabilities"]
    assert caps["text"] is True and caps["templates"] is True and caps["read_receipts"] is True
    assert caps["max_text_length"] == 4096
    assert caps["reply_window"] == {"hours": 24, "outside": "template"}
    assert set(mine["health"]) >= {"state", "action", "last_error"}
    assert isinstance(mine["health"]["state"], str) and mine["health"]["state"]
    assert "settings" not in mine

    # A masked secret written back keeps its value: the webhook still verifies with the old secret.
    patched = await api.ok(
        "PATCH",
        f"/api/v1/admin/channels/{ch.id}",
        json_body={"name": "Support line 2", "settings": {"access_token": MASK, "app_secret": MASK}},
    )
    assert patched["settings"]["app_secret"] == MASK
    await deliver_text(api, ch, phone(), "still verified after a masked PATCH")

    # Disabled: gone from the app's list, and the webhook door answers 404 in the error shape.
    await api.ok("POST", f"/api/v1/admin/channels/{ch.id}/disable")
    assert ch.id not in {c["id"] for c in await api.channels()}
    admin_view = {c["id"]: c for c in (await api.ok("GET", "/api/v1/admin/channels"))["channels"]}
    assert admin_view[ch.id]["enabled"] is False
    payload, _ = wa_text_webhook(ch.phone_number_id, phone(), "to a disabled channel")
    assert_error(await api.webhook(ch.id, payload, ch.app_secret), 404, "not_found")
    handshake = f"/webhooks/{ch.id}?hub.mode=subscribe&hub.verify_token={ch.verify_token}&hub.challenge=42"
    assert_error(await api.get(handshake, auth=False), 404, "not_found")

    # Enabled again: back in the list, the handshake answers.
    await api.ok("POST", f"/api/v1/admin/channels/{ch.id}/enable")
    assert ch.id in {c["id"] for c in await api.channels()}
    resp = await api.get(handshake, auth=False)
    assert (resp.status, resp.text) == (200, "42")

    # Invalid settings are refused with 422 naming the field, and never echo a planted secret.
    base = {
        "phone_number_id": unique("pn"),
        "access_token": secrets_planted[0],
        "app_secret": secrets_planted[1],
        "verify_token": "v",
        "api_base_url": graph.base_url,
    }
    cases = [
        ({**base, "messages_per_second": 0}, "settings.messages_per_second"),
        ({**base, "api_base_url": "ftp://graph.example"}, "settings.api_base_url"),
        ({k: v for k, v in base.items() if k != "phone_number_id"}, "settings.phone_number_id"),
        ({k: v for k, v in base.items() if k != "app_secret"}, "settings.app_secret"),
        ({**base, "phone_numbr_id": "typo"}, "settings.phone_numbr_id"),  # unknown field
    ]
    for settings, field in cases:
        resp = await api.post(
            "/api/v1/admin/channels", {"type": "whatsapp", "name": "bad", "settings": settings}
        )
        error = assert_error(resp, 422, "validation_failed")
        assert field in _fields(error), (field, error)
    # Unknown top-level field and unknown type.
    resp = await api.post(
        "/api/v1/admin/channels", {"type": "whatsapp", "name": "bad", "settings": base, "colour": "red"}
    )
    assert "colour" in _fields(assert_error(resp, 422, "validation_failed"))
    resp = await api.post("/api/v1/admin/channels", {"type": "telepathy", "name": "bad", "settings": {}})
    assert "type" in _fields(assert_error(resp, 422, "validation_failed"))
    # A PATCH with an invalid value is refused the same way and changes nothing.
    resp = await api.patch(f"/api/v1/admin/channels/{ch.id}", {"settings": {"messages_per_second": 5000}})
    assert "settings.messages_per_second" in _fields(assert_error(resp, 422, "validation_failed"))
    resp = await api.patch(f"/api/v1/admin/channels/{ch.id}", {"settings": {"bogus": 1}})
    assert "settings.bogus" in _fields(assert_error(resp, 422, "validation_failed"))
    assert (await api.ok("GET", f"/api/v1/admin/channels/{ch.id}"))["settings"]["messages_per_second"] == 1000
    # The failed creations left no channel behind.
    names = [c["name"] for c in (await api.ok("GET", "/api/v1/admin/channels"))["channels"]]
    assert "bad" not in names

    # Secrets appear nowhere: not in any response so far, the event log, the admin views, the log.
    await api.get("/api/v1/events?after=0&limit=500")
    await api.get(f"/api/v1/admin/channels/{ch.id}")
    await api.get("/api/v1/admin/channels")
    await api.get("/api/v1/plugins")
    await api.get("/openapi.json", auth=False)
    await api.get("/metrics", auth=False)
    for secret in secrets_planted:
        leaks = [body[:200] for body in api.bodies if secret in body]
        assert not leaks, f"secret value leaked in responses: {leaks}"
        assert secret not in shared_hub.log_text(), "secret value leaked in the hub's log"


async def test_webhook_handshake(api: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Handshake")
    url = f"/webhooks/{ch.id}"

    resp = await api.get(
        url,
        params={"hub.mode": "subscribe", "hub.verify_token": ch.verify_token, "hub.challenge": "1158201444"},
        auth=False,
    )
    assert resp.status == 200, resp
    assert resp.text == "1158201444"

    # The challenge is echoed as given, never cast to a number (leading zeros, non-digits survive).
    for challenge in ("0012345", "abc-1158201444"):
        resp = await api.get(
            url,
            params={"hub.mode": "subscribe", "hub.verify_token": ch.verify_token, "hub.challenge": challenge},
            auth=False,
        )
        assert (resp.status, resp.text) == (200, challenge)

    wrong = [
        {"hub.mode": "subscribe", "hub.verify_token": ch.verify_token + "x", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": ch.verify_token, "hub.challenge": "1"},
    ]
    for params in wrong:
        resp = await api.get(url, params=params, auth=False)
        assert_error(resp, 403, "forbidden")
        assert "1" != resp.text

    resp = await api.get(
        f"/webhooks/{unique('nochannel')}",
        params={"hub.mode": "subscribe", "hub.verify_token": ch.verify_token, "hub.challenge": "1"},
        auth=False,
    )
    assert_error(resp, 404, "not_found")


async def test_the_app_api_needs_a_valid_token(api: Api, shared_hub: HubProcess) -> None:
    assert_error(await api.get("/api/v1/channels", auth=False), 401, "unauthorized")
    bad = {"Authorization": "Bearer not-a-token"}
    assert_error(await api.get("/api/v1/events?after=0", headers=bad, auth=False), 401, "unauthorized")
    resp = await api.post(
        "/api/v1/auth/login", {"email": "admin@example.com", "password": "wrong password"}, auth=False
    )
    assert_error(resp, 401)
    assert_error(await api.get("/api/v1/events?after=abc"), 400, "bad_request")


async def test_cli_writes_beside_a_busy_hub_and_token_changes_take_effect_at_once(
    api: Api, shared_hub: HubProcess, graph: ThreadedFakeGraph
) -> None:
    """The CLI writes to the SQLite file while the hub ingests: neither waits inside SQLite for the
    other's lock, nothing fails; a token the CLI just made works at once, and a token logged out
    through the hub is refused on the next request although the hub had it cached."""
    ch = await create_wa_channel(api, graph.base_url, name=unique("cli-beside"))
    after = await api.last_seq()
    email = f"{unique('agent')}@example.com"
    wamids: list[str] = []

    async def webhooks() -> list[int]:
        statuses = []
        for i in range(40):
            payload, msg_id = wa_text_webhook(ch.phone_number_id, phone(), f"busy {i}")
            wamids.append(msg_id)
            statuses.append((await api.webhook(ch.id, payload, ch.app_secret)).status)
        return statuses

    async def cli() -> str:
        await shared_hub.cli(
            "users", "create", email, "--role", "agent", "--password-stdin", stdin="pw-123456789"
        )
        return await shared_hub.create_token(email)

    statuses, token = await asyncio.gather(webhooks(), cli())
    assert statuses == [200] * 40
    # Made by another process a moment ago, the token works at once.
    agent = Api(api.session, api.base_url, token)
    assert (await agent.ok("GET", "/api/v1/me"))["email"] == email
    # Every delivery stored while the CLI wrote is processed, once.
    await settle(api, ch, after)
    created = [
        e["data"]["external_id"]
        for e in await api.events(after)
        if e["type"] == "message.created" and e["data"].get("external_id") in set(wamids)
    ]
    assert sorted(created) == sorted(wamids)
    # Logged out through this hub, the cached token is refused on the very next request.
    assert (await agent.post("/api/v1/auth/logout")).status == 204
    assert_error(await agent.get("/api/v1/me"), 401, "unauthorized")
