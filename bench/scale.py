"""``scale``: one and two hub processes, SQLite and PostgreSQL, each beside its own ceiling.

For each setup (SQLite with one process; PostgreSQL with one, then two processes on one
database) the same signed webhooks are POSTed round-robin to the setup's processes, and timed
until every one is a ``message.created`` in the log. Its ceiling is measured in the same run: as
many bare aiohttp servers as the setup has processes, driven by the same client at the same
concurrency. Nothing caps either side.

Two processes on SQLite is not a setup: SQLite is the one-process database by design (its
writers share one lock per process), and several processes need PostgreSQL.

With two processes it also times webhook to app across processes: POSTed to one process, each
event timed to its arrival on a WebSocket connected to the other (the fan-out through the log,
woken by NOTIFY), beside the floor of a bare handler's POST round trip at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench.common import (
    Api,
    BenchError,
    Channel,
    Hub,
    analyze,
    ceiling_server,
    cpu_seconds,
    drive,
    wa_ids,
    wait_events,
)
from bench.context import Context
from bench.ingest import build, inbound_created
from bench.latency import floor, one_rate

TWO_PROCESSES_TARGET = 1.6  # two processes on PostgreSQL >= 1.6 x one


@contextlib.asynccontextmanager
async def cluster(ctx: Context, name: str, processes: int, postgres: bool) -> AsyncIterator[list[Hub]]:
    key = secrets.token_urlsafe(24)
    hubs = [Hub(ctx.root / f"{name}-{i}", postgres=postgres, secret_key=key) for i in range(processes)]
    try:
        await hubs[0].start()
        for hub in hubs[1:]:
            await hub.join(hubs[0])
        yield hubs
    finally:
        for hub in hubs:
            await hub.stop()


@contextlib.asynccontextmanager
async def ceilings(n: int) -> AsyncIterator[list[str]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(ceiling_server()) for _ in range(n)]


async def known_everywhere(apis: list[Api], channel_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    for api in apis:
        while True:
            try:
                await api.call("GET", f"/api/v1/admin/channels/{channel_id}")
                break
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def ingest(
    apis: list[Api],
    channel: Channel,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    within: float,
) -> dict[str, Any]:
    urls = [f"{api.hub.base_url}/webhooks/{channel.id}" for api in apis]
    base = await apis[0].last_seq()
    cpu0 = sum(cpu_seconds(api.hub.pid) or 0.0 for api in apis)
    res = await drive(lambda i: urls[i % len(urls)], requests, concurrency=concurrency, within=within)
    if res.ok != len(requests):
        raise BenchError(f"the hubs answered {dict(res.statuses)} errors {dict(res.errors)}")
    count, last = await wait_events(
        apis[0], base, res.ok, match=inbound_created(channel.id), within=within, min_seq_per_item=2
    )
    if count < res.ok or last is None:
        raise BenchError(f"only {count} of {res.ok} webhooks were processed within {within:g} s")
    cpu = sum(cpu_seconds(api.hub.pid) or 0.0 for api in apis) - cpu0
    elapsed = max(last - res.start, 1e-9)
    return {
        "accepted_per_s": res.rate,
        "processed_per_s": count / elapsed,
        "hub_cpu_ms_per_webhook": 1000 * cpu / count,
    }


async def ceiling(
    n: int, requests: list[tuple[bytes, dict[str, str]]], concurrency: int, within: float
) -> float:
    async with ceilings(n) as bases:
        urls = [f"{b}/webhooks/ceiling" for b in bases]
        await drive(lambda i: urls[i % n], requests[:200], concurrency=concurrency, within=within)
        res = await drive(lambda i: urls[i % n], requests, concurrency=concurrency, within=within)
    if res.ok != len(requests):
        raise BenchError(f"the ceiling servers answered {dict(res.statuses)} errors {dict(res.errors)}")
    return res.rate


async def setup(ctx: Context, name: str, processes: int, postgres: bool) -> dict[str, Any]:
    count = 100 if ctx.quick else 4000
    concurrency = 16 if ctx.quick else 64
    within = 60.0 if ctx.quick else 240.0
    out: dict[str, Any] = {"database": "postgresql" if postgres else "sqlite", "processes": processes}
    async with cluster(ctx, name, processes, postgres) as hubs, aiohttp.ClientSession() as session:
        apis = [Api(hub, session) for hub in hubs]
        channel = await apis[0].create_whatsapp()
        # The other processes learn of the new channel from its channel.updated event (ms; more on
        # a loaded machine): until then they answer its webhooks 404, as for an unknown channel.
        await known_everywhere(apis, channel.id, within)
        senders = wa_ids(100)
        warm, _ = build(channel, 20 if ctx.quick else 200, 100, "warm-up")
        await ingest(apis, channel, warm, concurrency, within)
        await analyze(hubs[0])
        requests, _ = build(channel, count, 100, name)
        out.update(await ingest(apis, channel, requests, concurrency, within))
        if processes > 1:
            rate = 50 if ctx.quick else 1000
            seconds = 1.0 if ctx.quick else 5.0
            across = await one_rate(
                apis[1], channel, rate, seconds, senders, 3.0 if ctx.quick else 60.0, post_to=hubs[0].base_url
            )
            out["across_processes"] = {k: across[k] for k in ("rate", "messages", "lost", "p50_ms", "p99_ms")}
    out["ceiling_per_s"] = await ceiling(processes, requests, concurrency, within)
    out["ratio_processed"] = out["processed_per_s"] / out["ceiling_per_s"]
    if processes > 1:
        floor_res = await floor(out["across_processes"]["rate"], 1.0 if ctx.quick else 5.0, channel, senders)
        out["across_processes"]["floor_p99_ms"] = floor_res["p99_ms"]
    return out


async def run(ctx: Context) -> dict[str, Any]:
    t0 = time.monotonic()
    setups = {"sqlite-1": await setup(ctx, "sqlite-1", 1, False)}
    try:
        setups["postgresql-1"] = await setup(ctx, "postgresql-1", 1, True)
        setups["postgresql-2"] = await setup(ctx, "postgresql-2", 2, True)
    except BenchError as exc:
        if "not reachable" not in str(exc):
            raise
        setups["postgresql"] = {"skipped": str(exc)}
    result: dict[str, Any] = {"setups": setups, "wall_s": time.monotonic() - t0}
    one, two = setups.get("postgresql-1"), setups.get("postgresql-2")
    if one and two and "processed_per_s" in one and "processed_per_s" in two:
        result["two_over_one"] = two["processed_per_s"] / one["processed_per_s"]
        result["target"] = f"two PostgreSQL processes >= {TWO_PROCESSES_TARGET} x one"
        result["target_met"] = result["two_over_one"] >= TWO_PROCESSES_TARGET
    return result
