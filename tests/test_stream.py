"""The event log for the app: the WebSocket stream (replay, live, resume, resync), the events
endpoint's cursor errors, and hub_on_event observers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from hub.config import HubConfig
from hub.hookspecs import hookimpl
from hub.models import Event
from hub.testing.fake_channel import FakeChannel, FakePlugin
from hub.timers import SYSTEM
from hub.web.app import create_app
from tests.conftest import Hub, eventually

_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for the fixture users (the real ones cost ~0.5 s a hash)."""
    monkeypatch.setattr("hub.users.hash_password", _cheap.hash)


def msg(mid: str, who: str = "alice", text: str = "hi") -> dict[str, Any]:
    return {
        "type": "message",
        "id": mid,
        "from": who,
        "name": who.title(),
        "text": text,
        "ts": int(time.time()),
    }


async def frame(ws: aiohttp.ClientWebSocketResponse, wait: float = 5.0) -> dict[str, Any]:
    data: dict[str, Any] = await ws.receive_json(timeout=wait)
    return data


async def until_live(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The replayed events, then the ``live`` frame."""
    replayed: list[dict[str, Any]] = []
    while True:
        f = await frame(ws)
        if f["type"] == "live":
            return replayed, f
        assert f["type"] == "event", f
        replayed.append(f["event"])


async def events_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not done(got):
        f = await frame(ws)
        assert f["type"] == "event", f
        got.append(f["event"])
    return got


def has_message(external_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda evs: any(
        e["type"] == "message.created" and e["data"]["external_id"] == external_id for e in evs
    )


async def message_stored(hub: Hub, external_id: str) -> bool:
    return any(
        e["type"] == "message.created" and e["data"]["external_id"] == external_id for e in await hub.events()
    )


async def test_stream_replays_then_goes_live_then_resumes(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(msg("s1"))
    await eventually(lambda: message_stored(hub, "s1"))
    before = await hub.events()
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    replayed, live = await until_live(ws)
    assert [e["seq"] for e in replayed] == [e["seq"] for e in before]
    assert replayed == before
    assert live["last_seq"] == before[-1]["seq"]
    # Live: a webhook that arrives now is streamed.
    await hub.webhook(msg("s2", who="bob"))
    live_events = await events_until(ws, has_message("s2"))
    assert [e["type"] for e in live_events] == ["conversation.created", "message.created"]
    assert [e["seq"] for e in live_events] == list(range(live["last_seq"] + 1, live["last_seq"] + 3))
    ping = await ws.send_json({"type": "ping"})
    assert ping is None
    assert await frame(ws) == {"type": "pong"}
    last = live_events[-1]["seq"]
    await ws.close()
    # While disconnected, two more deliveries arrive.
    await hub.webhook(msg("s3", who="carol"))
    await hub.webhook(msg("s4", who="alice"))
    await eventually(lambda: message_stored(hub, "s4"))
    missed = await hub.events(after=last)
    assert missed and {e["data"].get("external_id") for e in missed} >= {"s3", "s4"}
    ws = await hub.client.ws_connect(f"/api/v1/stream?after={last}", headers=hub.agent)
    replayed, live = await until_live(ws)
    assert replayed == missed
    assert [e["seq"] for e in replayed] == sorted(e["seq"] for e in replayed)
    assert live["last_seq"] == missed[-1]["seq"]
    await ws.close()


async def test_stream_accepts_a_token_in_the_query(lite_hub: Hub) -> None:
    hub = lite_hub
    token = hub.agent["Authorization"].removeprefix("Bearer ")
    ws = await hub.client.ws_connect(f"/api/v1/stream?after=0&token={token}")
    replayed, live = await until_live(ws)
    assert live["last_seq"] == (replayed[-1]["seq"] if replayed else 0)
    await ws.close()
    # The query token is for the stream only.
    me = await hub.client.get(f"/api/v1/me?token={token}")
    assert me.status == 401


async def test_stream_without_a_token_is_refused_before_the_upgrade(lite_hub: Hub) -> None:
    hub = lite_hub
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await hub.client.ws_connect("/api/v1/stream?after=0")
    assert info.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await hub.client.ws_connect("/api/v1/stream?after=0&token=hub_wrong")
    assert info.value.status == 401
    plain = await hub.client.get("/api/v1/stream?after=0")
    assert plain.status == 401
    assert plain.content_type == "application/json"
    assert (await plain.json())["error"]["code"] == "unauthorized"


async def test_bad_cursors_are_400(lite_hub: Hub) -> None:
    hub = lite_hub
    for query in ("after=abc", "after=-1", "after=1.5", "after=0&limit=x"):
        resp = await hub.client.get(f"/api/v1/events?{query}", headers=hub.agent)
        assert resp.status == 400, query
        err = (await resp.json())["error"]
        assert err["code"] == "bad_request"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await hub.client.ws_connect("/api/v1/stream?after=abc", headers=hub.agent)
    assert info.value.status == 400


async def test_events_pages_with_has_more(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(*(msg(f"e{i}", who=f"u{i}") for i in range(3)))
    await eventually(lambda: message_stored(hub, "e2"))
    everything = await hub.events()
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    page = await (await hub.client.get("/api/v1/events?after=0&limit=2", headers=hub.agent)).json()
    assert [e["seq"] for e in page["events"]] == seqs[:2]
    assert page["has_more"] is True and page["last_seq"] == seqs[1]
    rest = await (await hub.client.get(f"/api/v1/events?after={seqs[1]}&limit=500", headers=hub.agent)).json()
    assert [e["seq"] for e in rest["events"]] == seqs[2:]
    assert rest["has_more"] is False and rest["last_seq"] == seqs[-1]
    tail = await (await hub.client.get(f"/api/v1/events?after={seqs[-1]}", headers=hub.agent)).json()
    assert tail == {"events": [], "last_seq": seqs[-1], "has_more": False}


async def test_a_cursor_older_than_the_log_gets_resync(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(*(msg(f"o{i}", who=f"u{i}") for i in range(4)))
    await eventually(lambda: message_stored(hub, "o3"))
    seqs = [e["seq"] for e in await hub.events()]
    assert len(seqs) >= 6
    deleted = await hub.store.prune_events(keep=3)
    assert deleted == len(seqs) - 3
    pruned_through = seqs[-4]
    resp = await hub.client.get("/api/v1/events?after=0", headers=hub.agent)
    assert resp.status == 410
    err = (await resp.json())["error"]
    assert err["code"] == "cursor_too_old"
    assert err["details"]["oldest_seq"] == pruned_through + 1
    assert err["details"]["last_seq"] == seqs[-1]
    # One before the boundary is too old; the boundary itself has lost nothing.
    older = await hub.client.get(f"/api/v1/events?after={pruned_through - 1}", headers=hub.agent)
    assert older.status == 410
    ok = await hub.client.get(f"/api/v1/events?after={pruned_through}", headers=hub.agent)
    assert ok.status == 200
    assert [e["seq"] for e in (await ok.json())["events"]] == seqs[-3:]
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    first = await frame(ws)
    assert first["type"] == "resync"
    assert first["oldest_seq"] == pruned_through + 1
    assert first["last_seq"] == seqs[-1]
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4410
    ws = await hub.client.ws_connect(f"/api/v1/stream?after={pruned_through}", headers=hub.agent)
    replayed, _ = await until_live(ws)
    assert [e["seq"] for e in replayed] == seqs[-3:]
    await ws.close()


# ---- hub_on_event observers --------------------------------------------------------------------


class Observer:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def hub_on_event(self, event: Event) -> None:
        self.seen.append(event)


class Raiser:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def hub_on_event(self, event: Event) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")


async def observed_hub(
    aiohttp_client: Any, config: HubConfig, *plugins: tuple[str, object]
) -> tuple[Hub, type[FakeChannel]]:
    cls = FakeChannel.isolated()
    app = create_app(config, extra_plugins=[("fake", FakePlugin(cls)), *plugins])
    client: TestClient = await aiohttp_client(app)
    hub = Hub(client, cls)
    await hub.setup_users()
    await hub.create_channel()
    return hub, cls


async def test_hub_on_event_sees_every_event_in_order_and_a_raising_one_breaks_nothing(
    aiohttp_client: Any,
    hub_config: Callable[..., HubConfig],
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer, raiser = Observer(), Raiser()
    # The raiser registers first, so the observer after it proves the others still run.
    hub, _ = await observed_hub(
        aiohttp_client, hub_config(sqlite_url), ("raiser", raiser), ("observer", observer)
    )
    assert (await hub.webhook(msg("h1"), msg("h2", who="bob"))).status == 200
    await eventually(lambda: message_stored(hub, "h2"))
    conv = (await hub.conversations())[0]
    resp = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages", json={"text": "observed"}, headers=hub.agent
    )
    assert resp.status == 202
    mid = (await resp.json())["id"]

    async def sent() -> bool:
        return any(
            e["type"] == "message.updated" and e["data"]["id"] == mid and e["data"]["status"] == "sent"
            for e in await hub.events()
        )

    await eventually(sent)
    await hub.define_label("x")
    patch = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"labels": ["x"]}, headers=hub.agent
    )
    assert patch.status == 200
    logged = await hub.events()
    assert [e.seq for e in observer.seen] == [e["seq"] for e in logged]
    assert [e.type for e in observer.seen] == [e["type"] for e in logged]
    assert {"channel.updated", "conversation.created", "message.created", "message.updated"} <= {
        e.type for e in observer.seen
    }
    assert raiser.calls == len(logged)
    assert "raiser" in caplog.text and "observer bug" in caplog.text


async def test_hub_on_event_order_under_concurrent_writers(
    aiohttp_client: Any,
    hub_config: Callable[..., HubConfig],
    database_url: str,
) -> None:
    observer = Observer()
    hub, _ = await observed_hub(aiohttp_client, hub_config(database_url), ("observer", observer))

    async def change(i: int) -> None:
        async with hub.store.tx() as tx:
            await tx.emit("config.updated", {"resource": f"test{i}", "etag": None, "by": SYSTEM})

    for _ in range(3):
        await asyncio.gather(*(change(i) for i in range(40)))
    logged = [e["seq"] for e in await hub.events()]
    seen = [e.seq for e in observer.seen]
    assert sorted(seen) == logged
    assert seen == logged, "hub_on_event must fire in seq order"


async def test_a_raising_observer_does_not_break_webhooks(
    aiohttp_client: Any, hub_config: Callable[..., HubConfig], sqlite_url: str
) -> None:
    raiser = Raiser()
    hub, _ = await observed_hub(aiohttp_client, hub_config(sqlite_url), ("raiser", raiser))
    logging.getLogger("hub.app").setLevel(logging.CRITICAL)
    try:
        resp = await hub.webhook(msg("r1"))
        assert resp.status == 200
        await eventually(lambda: message_stored(hub, "r1"))
        convs = await hub.conversations()
        assert len(convs) == 1 and convs[0]["unread_count"] == 1
    finally:
        logging.getLogger("hub.app").setLevel(logging.NOTSET)
    assert raiser.calls >= 3


async def test_a_burst_of_events_streams_every_one_once_and_in_order(lite_hub: Hub) -> None:
    """Frames already waiting are sent together; none may be dropped, repeated or reordered."""
    hub = lite_hub
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    _, live = await until_live(ws)
    store = hub.store
    store.check = None  # synthetic events: the stream's mechanics, not the catalogue
    start = live["last_seq"]

    async def burst(n: int) -> None:
        for i in range(n):
            async with store.tx() as tx:
                await tx.emit_many([("test.burst", {"i": i, "k": k}, None, None) for k in range(5)])

    # Two writers at once, 300 events, while the stream is live.
    await asyncio.gather(burst(30), burst(30))
    got = await events_until(ws, lambda evs: len(evs) >= 300)
    assert [e["seq"] for e in got] == list(range(start + 1, start + 301))
    assert all(e["type"] == "test.burst" for e in got)
    await ws.close()


async def test_each_stage_of_an_inbound_message_is_timed_in_metrics(lite_hub: Hub) -> None:
    """Accept, group commit, processing and fan-out each get an observation per message in
    ``hub_inbound_stage_seconds``, so a slow stage shows by name (the latency benchmark reads them)."""
    from prometheus_client.parser import text_string_to_metric_families

    async def counts() -> dict[str, float]:
        resp = await hub.client.get("/metrics")
        assert resp.status == 200
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(await resp.text()):
            for s in family.samples:
                if s.name == "hub_inbound_stage_seconds_count":
                    out[s.labels["stage"]] = s.value
        return out

    hub = lite_hub
    ws = await hub.client.ws_connect("/api/v1/stream?after=0", headers=hub.agent)
    await until_live(ws)
    before = await counts()
    for i in range(3):
        await hub.webhook(msg(f"st{i}", who=f"user{i}"))
    await events_until(ws, has_message("st2"))
    await ws.close()
    after = await counts()
    for stage in ("accept", "group_commit", "processing"):
        assert after.get(stage, 0) - before.get(stage, 0) == 3, (stage, before, after)
    assert after.get("fanout", 0) - before.get("fanout", 0) >= 1, (before, after)
