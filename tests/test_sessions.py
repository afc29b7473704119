"""Sessions: login tokens expire, refresh tokens rotate (a reused one ends the session), logout,
expiry and an admin's revocation close the open streams of the token, and CORS for configured
origins only."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from hub.web.stream import REVOKED_CLOSE
from tests.conftest import Hub

PASSWORD = "agent password 1"


async def login(hub: Hub, email: str = "agent@example.com", password: str = PASSWORD) -> dict[str, Any]:
    resp = await hub.client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refresh(hub: Hub, refresh_token: str) -> aiohttp.ClientResponse:
    return await hub.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def live_stream(hub: Hub, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=bearer(token))
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if msg.json()["type"] == "live":
            return ws


async def closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> float:
    """Seconds until the server closed the stream (reading any frames before)."""
    start = time.monotonic()
    while True:
        msg = await ws.receive(timeout=seconds)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return time.monotonic() - start


async def test_login_gives_an_expiring_token_and_a_refresh_token(lite_hub: Hub) -> None:
    body = await login(lite_hub)
    assert body["token_type"] == "bearer" and body["refresh_token"].startswith("rt_")
    assert 3590 <= body["expires_in"] <= 3600
    assert body["refresh_expires_at"] > body["expires_at"]
    assert (await lite_hub.client.get("/api/v1/me", headers=bearer(body["token"]))).status == 200


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(lite_hub: Hub) -> None:
    hub = lite_hub
    first = await login(hub)
    resp = await refresh(hub, first["refresh_token"])
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    assert second["token"] != first["token"] and second["refresh_token"] != first["refresh_token"]
    assert second["user"]["email"] == "agent@example.com"
    assert (await hub.client.get("/api/v1/me", headers=bearer(second["token"]))).status == 200
    # The first refresh token is spent: presenting it again is refused, and ends the session.
    again = await refresh(hub, first["refresh_token"])
    assert again.status == 401
    assert (await again.json())["error"]["code"] == "refresh_token_reused"
    for token in (first["token"], second["token"]):
        assert (await hub.client.get("/api/v1/me", headers=bearer(token))).status == 401
    assert (await refresh(hub, second["refresh_token"])).status == 401
    unknown = await refresh(hub, "rt_nothing")
    assert unknown.status == 401 and (await unknown.json())["error"]["code"] == "invalid_refresh_token"
    # Another session of the same user is untouched.
    other = await login(hub)
    assert (await hub.client.get("/api/v1/me", headers=bearer(other["token"]))).status == 200


async def test_logout_closes_the_tokens_open_streams_at_once(lite_hub: Hub) -> None:
    hub = lite_hub
    session = await login(hub)
    other = await login(hub)  # the same user on another device
    ws = await live_stream(hub, session["token"])
    ws_other = await live_stream(hub, other["token"])
    assert (await hub.client.post("/api/v1/auth/logout", headers=bearer(session["token"]))).status == 204
    assert await closed_within(ws, 1.0) < 1.0
    assert ws.close_code == REVOKED_CLOSE
    assert (await hub.client.get("/api/v1/me", headers=bearer(session["token"]))).status == 401
    assert (await refresh(hub, session["refresh_token"])).status == 401
    # The other device's stream and token go on.
    assert not ws_other.closed
    assert (await hub.client.get("/api/v1/me", headers=bearer(other["token"]))).status == 200
    await ws_other.close()


async def test_an_admins_revocation_closes_the_users_streams(lite_hub: Hub) -> None:
    hub = lite_hub
    session = await login(hub)
    ws = await live_stream(hub, session["token"])
    resp = await hub.client.post(f"/api/v1/admin/users/{hub.agent_id}/revoke-tokens", headers=hub.admin)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["revoked"] >= 2  # the login's and the fixture's
    assert await closed_within(ws, 1.0) < 1.0
    assert ws.close_code == REVOKED_CLOSE
    assert (await hub.client.get("/api/v1/me", headers=bearer(session["token"]))).status == 401
    assert (await hub.client.get("/api/v1/me", headers=hub.agent)).status == 401
    forbidden = await hub.client.post(f"/api/v1/admin/users/{hub.agent_id}/revoke-tokens", headers=hub.admin)
    assert forbidden.status == 200
    assert (
        await hub.client.post("/api/v1/admin/users/usr_nobody/revoke-tokens", headers=hub.admin)
    ).status == 404
    # The user is still active and may log in again.
    await login(hub)


async def test_an_expired_token_is_refused_and_closes_its_stream(
    make_hub: Callable[..., Awaitable[Hub]], sqlite_url: str
) -> None:
    hub = await make_hub(sqlite_url, access_token_ttl=2)
    await hub.create_channel()
    session = await login(hub)
    assert session["expires_in"] <= 2
    ws = await live_stream(hub, session["token"])
    took = await closed_within(ws, 5.0)
    assert took < 3.0 and ws.close_code == REVOKED_CLOSE
    assert (await hub.client.get("/api/v1/me", headers=bearer(session["token"]))).status == 401
    # The refresh token outlives it.
    assert (await refresh(hub, session["refresh_token"])).status == 200


@pytest.mark.parametrize(
    "origin, allowed", [("https://app.example.com", True), ("https://evil.example", False)]
)
async def test_cors_for_configured_origins_only(
    make_hub: Callable[..., Awaitable[Hub]], sqlite_url: str, origin: str, allowed: bool
) -> None:
    hub = await make_hub(sqlite_url, cors_origins=["https://app.example.com"])
    pre = await hub.client.options(
        "/api/v1/conversations",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status == 204
    got = await hub.client.get("/api/v1/conversations", headers={**hub.agent, "Origin": origin})
    assert got.status == 200
    if allowed:
        assert pre.headers["Access-Control-Allow-Origin"] == origin
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
        assert "GET" in pre.headers["Access-Control-Allow-Methods"]
        assert got.headers["Access-Control-Allow-Origin"] == origin
        assert "X-Hub-Seq" in got.headers["Access-Control-Expose-Headers"]
        # Errors carry it too, so the page can read them.
        denied = await hub.client.get("/api/v1/conversations", headers={"Origin": origin})
        assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == origin
    else:
        for resp in (pre, got):
            assert not any(h.lower().startswith("access-control-") for h in resp.headers)
