"""Crashes: deliveries answered 200 and sends answered 202 survive a SIGKILL and are processed
exactly once by the next process (scenarios 6 and 11), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest
from e2e_support import (
    Api,
    EventStream,
    HubFactory,
    ThreadedFakeGraph,
    create_wa_channel,
    encode,
    inbound_conversation,
    phone,
    settle,
    unique,
    wa_text_webhook,
    wait_until,
    wamid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_deliveries_answered_200_survive_a_crash(
    backend: str, hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(backend, workers=False)
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Crash inbound")

    bodies = []
    for i in range(5):
        payload, msg_id = wa_text_webhook(ch.phone_number_id, phone(), f"answered 200 before the crash {i}")
        bodies.append((msg_id, encode(payload)))
    posts = [api.webhook(ch.id, body, ch.app_secret) for _, body in bodies]
    posts.append(api.webhook(ch.id, bodies[0][1], ch.app_secret))  # a provider retry, too
    answers = await asyncio.gather(*posts)
    assert [r.status for r in answers] == [200] * 6, answers

    # A web-only node stores deliveries and processes none of them.
    await asyncio.sleep(0.5)
    assert not [e for e in await api.events(0) if e["type"] == "message.created"]

    await hub.kill()
    await hub.restart(workers=True)
    assert hub.token
    expected = [msg_id for msg_id, _ in bodies]
    async with EventStream(http, hub.base_url, hub.token, 0) as stream:
        for msg_id in expected:
            await stream.wait_event("message.created", external_id=msg_id, within=20)
        await settle(api, ch)
        await asyncio.sleep(0.2)
        streamed = [
            e["data"]["external_id"]
            for e in stream.find("message.created")
            if e["data"]["external_id"] in expected
        ]
    assert sorted(streamed) == sorted(expected), "each message streamed exactly once"
    logged = [
        e["data"]["external_id"]
        for e in await api.events(0)
        if e["type"] == "message.created" and e["data"]["external_id"] in expected
    ]
    assert sorted(logged) == sorted(expected)
    convs = {e["conversation_id"] for e in await api.events(0) if e["type"] == "conversation.created"}
    stored = [m["external_id"] for cid in convs for m in await api.messages(cid)]
    assert Counter(m for m in stored if m in expected) == Counter(expected)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_hundred_queued_sends_survive_a_crash_and_go_out_once(
    backend: str, hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(backend)
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Crash outbound")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)

    await hub.kill()
    await hub.restart(workers=False)
    texts = [f"queued before the crash #{i:03d} {unique()}" for i in range(100)]

    async def send(text: str) -> str:
        msg = await api.ok(
            "POST",
            f"/api/v1/conversations/{conv_id}/messages",
            expect=202,
            json_body={"text": text},
            headers={"Idempotency-Key": unique("k-")},
        )
        assert msg["status"] == "queued"
        return str(msg["id"])

    ids = list(await asyncio.gather(*(send(t) for t in texts)))
    assert len(set(ids)) == 100
    await asyncio.sleep(0.5)
    assert graph.sends(ch.phone_number_id) == [], "a web-only node sent messages"

    await hub.kill()
    await hub.restart(workers=True)

    async def all_sent() -> list[dict[str, object]] | None:
        out = [m for m in await api.messages(conv_id) if m["direction"] == "outbound"]
        return out if len(out) == 100 and all(m["status"] == "sent" for m in out) else None

    messages = await wait_until(all_sent, within=40, interval=0.25, what="100 messages sent")
    assert sorted(str(m["id"]) for m in messages) == sorted(ids)
    await asyncio.sleep(1.5)  # no late duplicate call
    calls = graph.sends(ch.phone_number_id)
    sent_texts = Counter(c.json["text"]["body"] for c in calls)
    assert sent_texts == Counter(texts), {t: n for t, n in sent_texts.items() if n != 1}
    assert len(calls) == 100
    assert all(c.json["to"] == wa_id for c in calls)
    assert len({m["external_id"] for m in messages}) == 100


async def test_a_send_in_flight_finishes_on_sigterm(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    """A normal stop (SIGTERM) waits for a provider call in flight and records its answer, so the
    next process neither finds the message queued nor sends it again."""
    hub = await hub_factory()
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Graceful stop")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)
    external_id = wamid()
    answer = {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": external_id}]}
    graph.call(graph.graph.script, f"{ch.phone_number_id}/messages", 200, answer, delay=2.0)
    msg = await api.ok(
        "POST",
        f"/api/v1/conversations/{conv_id}/messages",
        expect=202,
        json_body={"text": "in flight during shutdown"},
        headers={"Idempotency-Key": unique()},
    )
    await wait_until(lambda: graph.sends(ch.phone_number_id), within=10, what="the send call")

    assert await hub.stop() == 0, hub.log_tail()
    await hub.restart(workers=True)
    stored = await api.message(msg["id"])
    assert stored["status"] == "sent", stored
    assert stored["external_id"] == external_id
    assert len(graph.sends(ch.phone_number_id)) == 1
