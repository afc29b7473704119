"""Users through the admin API: create with a one-time invitation, set a password, log in, change
role, deactivate (tokens revoked and open streams closed at once)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Hub

pytestmark = pytest.mark.usefixtures("fast_passwords")


async def _invite(hub: Hub, email: str, role: str = "agent") -> tuple[dict[str, object], str]:
    resp = await hub.client.post(
        "/api/v1/admin/users", json={"email": email, "name": "Gil", "role": role}, headers=hub.admin
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["invitation"]["url"].endswith(body["invitation"]["token"])
    return body["user"], body["invitation"]["token"]


async def _login(hub: Hub, email: str, password: str) -> aiohttp.ClientResponse:
    return await hub.client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_an_invited_user_sets_a_password_once_and_logs_in(lite_hub: Hub) -> None:
    hub = lite_hub
    user, token = await _invite(hub, "Gil@Example.com")
    assert user["email"] == "gil@example.com" and user["role"] == "agent" and user["active"] is True
    # No password yet: nobody can log in as them.
    assert (await _login(hub, "gil@example.com", "")).status in (401, 422)
    short = await hub.client.post("/api/v1/auth/set-password", json={"token": token, "password": "x"})
    assert short.status == 422
    ok = await hub.client.post(
        "/api/v1/auth/set-password", json={"token": token, "password": "a good password"}
    )
    assert ok.status == 200, await ok.text()
    again = await hub.client.post(
        "/api/v1/auth/set-password", json={"token": token, "password": "another one!"}
    )
    assert again.status == 404
    resp = await _login(hub, "gil@example.com", "a good password")
    assert resp.status == 200
    body = await resp.json()
    assert "messages.send" in body["user"]["permissions"]
    assert (await _login(hub, "gil@example.com", "another one!")).status == 401
    dup = await hub.client.post(
        "/api/v1/admin/users", json={"email": "gil@example.com", "role": "agent"}, headers=hub.admin
    )
    assert dup.status == 409
    bad_role = await hub.client.post(
        "/api/v1/admin/users", json={"email": "h@example.com", "role": "wizard"}, headers=hub.admin
    )
    assert bad_role.status == 422 and (await bad_role.json())["error"]["details"][0]["field"] == "role"


async def test_deactivating_refuses_the_user_at_once_and_closes_their_stream(lite_hub: Hub) -> None:
    hub = lite_hub
    user, token = await _invite(hub, "ivy@example.com")
    await hub.client.post("/api/v1/auth/set-password", json={"token": token, "password": "ivy's password"})
    bearer = (await (await _login(hub, "ivy@example.com", "ivy's password")).json())["token"]
    headers = {"Authorization": f"Bearer {bearer}"}
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200  # now cached
    async with hub.client.ws_connect("/api/v1/stream?after=0", headers=headers) as ws:
        while (await ws.receive_json(timeout=5))["type"] != "live":
            pass
        resp = await hub.client.patch(
            f"/api/v1/admin/users/{user['id']}", json={"active": False}, headers=hub.admin
        )
        assert resp.status == 200 and (await resp.json())["active"] is False
        closing = await ws.receive(timeout=5)
        while closing.type == aiohttp.WSMsgType.TEXT:
            closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 4401
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401
    assert (await _login(hub, "ivy@example.com", "ivy's password")).status == 401
    listed = (await (await hub.client.get("/api/v1/admin/users", headers=hub.admin)).json())["users"]
    assert {u["email"]: u["active"] for u in listed}["ivy@example.com"] is False
    colleagues = (await (await hub.client.get("/api/v1/users", headers=hub.agent)).json())["users"]
    assert "ivy@example.com" not in {u["email"] for u in colleagues}
    # Reactivated, they log in again (the old token stays revoked).
    await hub.client.patch(f"/api/v1/admin/users/{user['id']}", json={"active": True}, headers=hub.admin)
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401
    assert (await _login(hub, "ivy@example.com", "ivy's password")).status == 200


async def test_changing_a_role_changes_permissions_at_once(lite_hub: Hub) -> None:
    hub = lite_hub
    me = await (await hub.client.get("/api/v1/me", headers=hub.agent)).json()
    assert "users.manage" not in me["permissions"]
    assert (await hub.client.get("/api/v1/admin/users", headers=hub.agent)).status == 403
    resp = await hub.client.patch(
        f"/api/v1/admin/users/{hub.agent_id}", json={"role": "administrator"}, headers=hub.admin
    )
    assert resp.status == 200 and (await resp.json())["role"] == "administrator"
    assert (await hub.client.get("/api/v1/admin/users", headers=hub.agent)).status == 200
    admin_id = (await (await hub.client.get("/api/v1/me", headers=hub.admin)).json())["id"]
    selfie = await hub.client.patch(
        f"/api/v1/admin/users/{admin_id}", json={"active": False}, headers=hub.admin
    )
    assert selfie.status == 409
    missing = await hub.client.patch("/api/v1/admin/users/usr_nope", json={"name": "x"}, headers=hub.admin)
    assert missing.status == 404
