"""The provider client the hub lends to plugins keeps no cookies: one channel's provider cannot
plant a cookie that rides along with another channel's requests."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from hub.http import ProviderClient, provider_client


async def test_a_cookie_set_by_a_provider_is_never_sent_back(aiohttp_server: Any) -> None:
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("session", "planted-by-channel-a")
        return resp

    app = web.Application()
    app.router.add_post("/a", handle)
    app.router.add_post("/b", handle)
    server = await aiohttp_server(app)
    async with provider_client("test-agent") as client:
        assert isinstance(client, ProviderClient)
        first = await client.post(str(server.make_url("/a")), json={})
        assert first.headers.get("set-cookie", "").startswith("session=")
        second = await client.post(str(server.make_url("/b")), json={})
        assert second.json() == {"ok": True}
        assert not client.cookies
    assert seen == [None, None]


async def test_setting_cookies_on_the_client_is_refused() -> None:
    async with provider_client("test-agent") as client:
        with pytest.raises(ValueError, match="keeps no cookies"):
            client.cookies = {"a": "b"}
