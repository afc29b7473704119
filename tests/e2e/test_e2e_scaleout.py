"""Two ``hub serve`` processes on one PostgreSQL database, driven from the outside.

* webhooks posted to one process reach an app connected to the other, every event in order;
* an admin's change on one process (disable, enable) holds on the other within a second;
* a SIGKILL of one process mid-load loses and doubles nothing: every delivery answered 200 is one
  message, whichever process took it and whichever applied it;
* a rolling restart (each process stopped and started again in turn, under load) loses nothing;
* a channel's send rate limit holds for both processes together;
* both processes apply stored deliveries, and no delivery is applied twice;
* a process carries on when PostgreSQL drops every connection (a server restart).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    PG_HELP,
    Api,
    EventStream,
    HubProcess,
    ThreadedFakeGraph,
    WaChannel,
    create_wa_channel,
    encode,
    inbound_conversation,
    phone,
    postgres_problem,
    postgres_url,
    send_text,
    wa_text_webhook,
    wait_until,
)

from tests.conftest import drop_every_connection

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]


class Pair:
    """Two processes on one database, with one API client each (same admin token)."""

    def __init__(self, a: HubProcess, b: HubProcess, http: aiohttp.ClientSession) -> None:
        self.a, self.b = a, b
        self.api_a = Api(http, a.base_url, a.token)
        self.api_b = Api(http, b.base_url, a.token)


@pytest_asyncio.fixture(loop_scope="module")
async def pair(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Pair]:
    server = postgres_url()
    problem = await postgres_problem(server)
    if problem is not None:
        pytest.skip(PG_HELP.format(url=server, error=problem))
    # A database of this test's own: other runs on the server wipe the shared e2e database.
    import asyncpg

    name = f"hub_scale_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(server)._replace(path="/" + name))
    # Both processes must open the channel secrets the other sealed: one key for the cluster.
    settings = {"secret_key": secrets.token_urlsafe(24)}
    a = HubProcess(tmp_path / "a", database_url=url, extra_hub_settings=settings)
    b = HubProcess(tmp_path / "b", database_url=url, extra_hub_settings=settings)
    try:
        await a.bootstrap()
        b.token = a.token
        await b.start()
        yield Pair(a, b, http)
    finally:
        await b.close()
        await a.close()
        admin = await asyncpg.connect(server, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _post(api: Api, ch: WaChannel, body: bytes) -> int:
    try:
        return (await api.webhook(ch.id, body, ch.app_secret)).status
    except (aiohttp.ClientError, OSError):
        return 0  # the process is down: the provider (or the load balancer) tries again


def _bodies(ch: WaChannel, n: int, contacts: int, tag: str) -> list[tuple[str, bytes]]:
    people = [phone() for _ in range(contacts)]
    out = []
    for i in range(n):
        payload, msg_id = wa_text_webhook(ch.phone_number_id, people[i % contacts], f"{tag} {i}")
        out.append((msg_id, encode(payload)))
    return out


async def test_webhooks_to_one_process_stream_in_order_from_the_other(
    pair: Pair, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Two processes")
    base = await pair.api_b.last_seq()
    bodies = _bodies(ch, 60, 6, "fan-out")
    async with EventStream(pair.api_b.session, pair.b.base_url, pair.a.token or "", base) as stream:
        await stream.wait_live()
        started = time.monotonic()
        # In waves of concurrent posts, so that several deliveries are stored and applied together.
        for i in range(0, len(bodies), 10):
            statuses = await asyncio.gather(*(_post(pair.api_a, ch, b) for _, b in bodies[i : i + 10]))
            assert statuses == [200] * len(statuses)
        expected = {msg_id for msg_id, _ in bodies}

        def streamed() -> set[str]:
            return {
                e["data"]["external_id"]
                for e in stream.find("message.created")
                if e["data"]["external_id"] in expected
            }

        await wait_until(lambda: streamed() == expected, within=30, what="every message on the other process")
        took = time.monotonic() - started
        logged = await pair.api_a.events(base)
        await wait_until(
            lambda: len([e for e in stream.events if e["seq"] <= logged[-1]["seq"]]) >= len(logged),
            within=10,
            what="the stream to catch up with the log",
        )
        seqs = [e["seq"] for e in stream.events]
    # Every event of the log, in seq order, each once: the other process's stream is the log.
    assert seqs == sorted(set(seqs)), "out of order or twice on the stream"
    assert [e["seq"] for e in logged] == [s for s in seqs if s <= logged[-1]["seq"]]
    assert took < 30


async def _processed(api: Api) -> float:
    """The deliveries this process has applied (``hub_inbound_processed_total`` on its /metrics)."""
    text = (await api.get("/metrics", auth=False)).text
    line = next(x for x in text.splitlines() if x.startswith("hub_inbound_processed_total "))
    return float(line.split()[1])


async def test_both_processes_apply_deliveries_and_none_twice(pair: Pair, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Shared applying")
    base = await pair.api_b.last_seq()
    before = [await _processed(pair.api_a), await _processed(pair.api_b)]
    bodies = _bodies(ch, 200, 40, "shared")
    apis = [pair.api_a, pair.api_b]

    async def known() -> bool:  # the other process learns of the new channel from its event
        return await _post(pair.api_b, ch, bodies[1][1]) == 200

    await wait_until(known, within=5, what="the other process to know the new channel")
    # Half to each process, in waves of concurrent posts: each process stores, and is woken for,
    # its own half; which process applies which delivery is up to their claims.
    for i in range(0, len(bodies), 20):
        wave = bodies[i : i + 20]
        statuses = await asyncio.gather(*(_post(apis[j % 2], ch, b) for j, (_, b) in enumerate(wave)))
        assert statuses == [200] * len(wave)
    expected = {m for m, _ in bodies}

    async def applied() -> Counter[str] | None:
        return await _count_messages(pair.api_b, expected, base)

    counts = await wait_until(applied, within=60, what="both processes to apply every delivery")
    assert counts == Counter({m: 1 for m in expected}), "a delivery was applied twice"
    done = [await _processed(pair.api_a) - before[0], await _processed(pair.api_b) - before[1]]
    assert sum(done) == len(bodies), f"applied {done}: each delivery once, by one process or the other"
    assert all(n > 0 for n in done), f"applied {done}: one process did all the applying"


async def test_a_process_recovers_when_postgresql_drops_every_connection(
    pair: Pair, graph: ThreadedFakeGraph
) -> None:
    """A server restart ends every connection, pooled or listening: a webhook may be refused once
    (in the error shape, for the provider to retry), then the process stores, applies and streams
    as before, without being restarted."""
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Server restart")
    base = await pair.api_a.last_seq()
    assert await drop_every_connection(pair.a.database_url), "the processes held no connection to end"
    bodies = _bodies(ch, 20, 4, "after restart")
    statuses = {m: await _post(pair.api_a, ch, b) for m, b in bodies}
    assert set(statuses.values()) <= {200, 500, 503}, statuses
    assert [statuses[m] for m, _ in bodies[-5:]] == [200] * 5, statuses
    for m, b in bodies:  # what was refused, the provider delivers again
        if statuses[m] != 200:
            assert await _post(pair.api_a, ch, b) == 200
    expected = {m for m, _ in bodies}

    async def applied() -> Counter[str] | None:
        return await _count_messages(pair.api_a, expected, base)

    counts = await wait_until(applied, within=30, what="every delivery applied after the restart")
    assert counts == Counter({m: 1 for m in expected})


async def test_disabling_a_channel_on_one_process_holds_on_the_other_within_a_second(
    pair: Pair, graph: ThreadedFakeGraph
) -> None:
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Toggled")
    (_, body), *_ = _bodies(ch, 1, 1, "before")

    async def known() -> bool:
        return await _post(pair.api_b, ch, body) == 200

    await wait_until(known, within=5, what="the other process to know the new channel")

    await pair.api_a.ok("POST", f"/api/v1/admin/channels/{ch.id}/disable")
    changed = time.monotonic()
    (_, body2), *_ = _bodies(ch, 1, 1, "while disabled")

    async def refused() -> bool:
        return await _post(pair.api_b, ch, body2) == 404

    await wait_until(refused, within=5, interval=0.02, what="the other process to refuse the webhook")
    assert time.monotonic() - changed < 1.0

    await pair.api_a.ok("POST", f"/api/v1/admin/channels/{ch.id}/enable")
    changed = time.monotonic()

    async def accepted() -> bool:
        return await _post(pair.api_b, ch, body2) == 200

    await wait_until(accepted, within=5, interval=0.02, what="the other process to accept it again")
    assert time.monotonic() - changed < 1.0

    # Settings: a new messages_per_second (what the other process's outbox will send at).
    await pair.api_a.ok(
        "PATCH", f"/api/v1/admin/channels/{ch.id}", json_body={"settings": {"messages_per_second": 7}}
    )
    changed = time.monotonic()

    async def new_settings() -> bool:
        got = await pair.api_b.ok("GET", f"/api/v1/admin/channels/{ch.id}")
        return bool(got["settings"]["messages_per_second"] == 7)

    await wait_until(new_settings, within=5, interval=0.02, what="the other process to use the new settings")
    assert time.monotonic() - changed < 1.0


async def _count_messages(api: Api, expected: set[str], after: int) -> Counter[str] | None:
    """How many message.created events each expected wamid has, once every one has one and the
    stored messages agree with the log (None while deliveries are still being applied)."""
    events = await api.events(after)
    created = Counter(
        e["data"]["external_id"]
        for e in events
        if e["type"] == "message.created" and e["data"]["external_id"] in expected
    )
    convs = {e["conversation_id"] for e in events if e["type"] == "conversation.created"}
    stored: Counter[str] = Counter()
    for cid in convs:
        for m in await api.messages(cid):
            if m["external_id"] in expected:
                stored[m["external_id"]] += 1
    if set(created) != expected or set(stored) != expected:
        return None
    assert stored == created, "the event log and the stored messages disagree"
    return created


async def _load(pair: Pair, ch: WaChannel, bodies: list[tuple[str, bytes]], during: object) -> set[str]:
    """Post every delivery, alternating processes, retrying on the other one what a process did
    not answer 200 (as a provider or a load balancer does); ``during`` runs halfway through.
    Returns the wamids answered 200."""
    apis = [pair.api_a, pair.api_b]
    answered: set[str] = set()

    async def deliver(i: int, msg_id: str, body: bytes) -> None:
        for attempt in range(40):
            if await _post(apis[(i + attempt) % 2], ch, body) == 200:
                answered.add(msg_id)
                return
            await asyncio.sleep(0.1)

    half = len(bodies) // 2
    first = [deliver(i, m, b) for i, (m, b) in enumerate(bodies[:half])]
    await asyncio.gather(*first[: half // 2])
    # Deliveries in flight while the process goes down.
    pending = asyncio.gather(*first[half // 2 :])
    await during()  # type: ignore[operator]
    await pending
    await asyncio.gather(*(deliver(i, m, b) for i, (m, b) in enumerate(bodies[half:], half)))
    return answered


async def test_a_sigkill_mid_load_loses_and_doubles_nothing(pair: Pair, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Killed mid-load")
    base = await pair.api_b.last_seq()
    bodies = _bodies(ch, 120, 10, "kill")
    # Both apply deliveries: whatever the killed one held in its pass goes back to the other.
    answered = await _load(pair, ch, bodies, pair.a.kill)
    assert answered == {m for m, _ in bodies}, "every delivery was taken by one process or the other"
    expected = set(answered)

    async def applied() -> Counter[str] | None:
        return await _count_messages(pair.api_b, expected, base)

    counts = await wait_until(applied, within=60, what="the survivor to apply every delivery")
    assert counts == Counter({m: 1 for m in expected})
    # The killed process comes back and changes nothing.
    await pair.a.start()
    await asyncio.sleep(1.0)
    assert await _count_messages(pair.api_a, expected, base) == Counter({m: 1 for m in expected})


async def test_a_rolling_restart_loses_nothing(pair: Pair, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Rolling restart")
    base = await pair.api_b.last_seq()
    expected: set[str] = set()

    async def roll(hub: HubProcess) -> None:
        await hub.stop()  # SIGTERM: stops taking requests, finishes what it holds
        await hub.start()

    for hub in (pair.a, pair.b):
        bodies = _bodies(ch, 60, 6, f"rolling {hub.port}")

        async def restart(hub: HubProcess = hub) -> None:
            await roll(hub)

        expected |= await _load(pair, ch, bodies, restart)
    assert len(expected) == 120

    async def applied() -> Counter[str] | None:
        return await _count_messages(pair.api_a, expected, base)

    counts = await wait_until(applied, within=60, what="every delivery applied after the rolling restart")
    assert counts == Counter({m: 1 for m in expected})


async def test_a_send_rate_limit_holds_across_both_processes(pair: Pair, graph: ThreadedFakeGraph) -> None:
    rate = 2  # messages_per_second, also the burst
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Rate limited", messages_per_second=rate)
    convs = [await inbound_conversation(pair.api_a, ch, phone()) for _ in range(4)]
    # Agents on both processes send at once; both processes' outboxes deliver.
    sends = [
        send_text(api, convs[i % 4], f"limited {i}") for i in range(8) for api in (pair.api_a, pair.api_b)
    ]
    await asyncio.gather(*sends)

    def delivered() -> list[float]:
        got = graph.sends(ch.phone_number_id)
        return sorted(r.at for r in got) if len(got) >= len(sends) else []

    times = await wait_until(delivered, within=60, what="every send delivered")
    assert len(times) == len(sends)
    # The token bucket's promise, for every stretch of the run: at most burst + rate x its length
    # (one more for network jitter between the bucket and the provider).
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            sent = j - i + 1
            assert sent <= rate + rate * (times[j] - times[i]) + 1, (
                f"{sent} sends in {times[j] - times[i]:.2f} s at {rate}/s: {times}"
            )


async def test_a_conversations_sends_through_both_processes_arrive_in_order(
    pair: Pair, graph: ThreadedFakeGraph
) -> None:
    """An agent's replies to one conversation, posted to either process: both processes' outboxes
    deliver, and each reply reaches the provider only after the one before it was answered."""
    ch = await create_wa_channel(pair.api_a, graph.base_url, name="Ordered across processes")
    conv = await inbound_conversation(pair.api_a, ch, phone())
    slow = 0.3
    texts = [f"reply {i}" for i in range(6)]
    for i in range(len(texts)):
        graph.call(
            graph.graph.script,
            f"{ch.phone_number_id}/messages",
            200,
            {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": f"wamid.slow{i}{conv}"}]},
            method="POST",
            delay=slow,
        )
    for i, text in enumerate(texts):
        await send_text(pair.api_a if i % 2 == 0 else pair.api_b, conv, text)

    def delivered() -> list[tuple[str, float]]:
        got = [(r.json["text"]["body"], r.at) for r in graph.sends(ch.phone_number_id)]
        return got if len(got) >= len(texts) else []

    calls = await wait_until(delivered, within=60, what="every reply delivered")
    assert [text for text, _ in calls] == texts, calls
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(calls)]
    assert min(gaps) >= slow - 0.05, f"a reply was sent before the one before it was answered: {gaps}"
