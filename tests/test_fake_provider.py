"""FakeProvider, on loopback and in-process: routes with path variables, scripts per route and for
every route, recorded requests, latency, dropped connections, answers slower than the timeout."""

from __future__ import annotations

import time

import httpx
import pytest

from hub.testing.fake_provider import Answer, FakeProvider

SEND = ("POST", "/bot{token}/sendMessage")


def _provider() -> FakeProvider:
    provider = FakeProvider()
    provider.route(*SEND, Answer(200, json={"ok": True, "id": 7}))
    provider.route("GET", "/me", lambda request: Answer(200, json={"asked": request.query.get("q")}))
    return provider


async def test_loopback_routes_scripts_and_records() -> None:
    provider = _provider()
    provider.script(*SEND, Answer(429, json={"error": "slow down"}, headers={"retry-after": "3"}))
    async with provider, httpx.AsyncClient(timeout=5) as http:
        throttled = await http.post(f"{provider.url}/botT0KEN/sendMessage", json={"text": "a"})
        ok = await http.post(f"{provider.url}/botT0KEN/sendMessage", json={"text": "b"})
        echoed = await http.get(f"{provider.url}/me?q=42")
        missing = await http.get(f"{provider.url}/nowhere")
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
    assert ok.json() == {"ok": True, "id": 7} and echoed.json() == {"asked": "42"}
    assert missing.status_code == 404
    assert [r.json()["text"] for r in provider.calls(*SEND)] == ["a", "b"]
    assert provider.requests[0].path == "/botT0KEN/sendMessage"
    assert provider.requests[0].headers["content-type"] == "application/json"


async def test_loopback_drop_and_hang_fail_like_a_network() -> None:
    provider = _provider()
    provider.script(*SEND, Answer.drop(), Answer.hang(3))
    async with provider, httpx.AsyncClient(timeout=0.5) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"{provider.url}/botX/sendMessage", json={})
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{provider.url}/botX/sendMessage", json={})
        assert (await http.post(f"{provider.url}/botX/sendMessage", json={})).status_code == 200


async def test_in_process_raises_scripted_exceptions_and_adds_latency() -> None:
    provider = _provider()
    provider.latency = 0.2
    provider.fail_next(httpx.ConnectError("refused"))
    async with httpx.AsyncClient(transport=provider.transport(), base_url="https://provider.test") as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("/botX/sendMessage", json={})
        with pytest.raises(httpx.ConnectError):
            await http.get("/me")
        started = time.monotonic()
        assert (await http.get("/me")).status_code == 200
        assert time.monotonic() - started >= 0.2
    assert len(provider.requests) == 3
