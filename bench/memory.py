"""``memory``: the hub's RSS (``VmRSS`` from /proc/<pid>/status) during a long ingest run.

The hub takes signed webhooks from 1,000 senders as fast as 32 clients can post them, for a
bounded time and count; RSS is sampled every half second. What the hub refuses with 503 (its
backlog bound: it accepts faster than it applies on PostgreSQL) is counted, not failed.
Figures: RSS at start (after a warm-up), at the end (once the backlog is processed), the maximum,
and the least-squares slope in MB/min over the load phase and over its second half (past the
warm-up of caches and pools).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.common import Api, BenchError, Channel, analyze, analyzing, drive, rss_kb, slope, wa_ids, wait_seq
from bench.context import Context
from bench.ingest import ingest_into_hub


class LazyWebhooks:
    """A sequence of signed webhooks built on demand (a long run would not fit in memory)."""

    def __init__(self, channel: Channel, count: int, senders: list[str]) -> None:
        self.channel = channel
        self.count = count
        self.senders = senders

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[bytes, dict[str, str]]:
        body, headers, _ = self.channel.webhook(self.senders[i % len(self.senders)], f"soak {i}")
        return body, headers


async def run(ctx: Context) -> dict[str, Any]:
    seconds = 1.0 if ctx.quick else ctx.soak_seconds
    max_count = 5_000 if ctx.quick else int(5_000 * seconds)
    samples: list[tuple[float, int]] = []
    async with ctx.hub() as hub, aiohttp.ClientSession() as session:
        api = Api(hub, session)
        channel = await api.create_whatsapp()
        senders = wa_ids(1000)
        warm = [channel.webhook(s, "warm-up")[:2] for s in senders[: 10 if ctx.quick else 1000]]
        await ingest_into_hub(api, channel, warm, concurrency=32, within=120)
        await analyze(hub)
        stop = asyncio.Event()
        t0 = time.monotonic()

        async def sampler() -> None:
            while not stop.is_set():
                kb = rss_kb(hub.pid)
                if kb is not None:
                    samples.append((time.monotonic() - t0, kb))
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass

        sampling = asyncio.create_task(sampler())
        # The tables grow all through the soak; autovacuum would analyze them as they do.
        statistics = asyncio.create_task(analyzing(hub, 60.0, stop))
        start_kb = rss_kb(hub.pid) or 0
        base = await api.last_seq()
        url = f"{hub.base_url}/webhooks/{channel.id}"
        res = await drive(
            lambda _i: url,
            LazyWebhooks(channel, max_count, senders),
            concurrency=32,
            within=seconds + 30,
            deadline=time.monotonic() + seconds,
        )
        load_end = time.monotonic() - t0
        # 503 is the hub refusing more than its backlog bound (a provider delivers those again):
        # when it accepts faster than it applies (PostgreSQL), a soak runs into it. Anything else
        # is a failure.
        refused = res.statuses.get(503, 0)
        if res.ok == 0 or res.ok + refused != sum(res.statuses.values()) or res.errors:
            raise BenchError(f"hub answered {dict(res.statuses)} errors {dict(res.errors)}")
        # Each webhook from a known sender logs two events (message.created, conversation.updated);
        # reading them all back would load the hub, so only last_seq is watched here.
        seq = await wait_seq(api, base + 2 * res.ok, within=900)
        processed = (seq - base) // 2
        end_kb = rss_kb(hub.pid) or 0
        stop.set()
        await sampling
        await statistics
    load = [(t / 60, kb / 1024) for t, kb in samples if t <= load_end]
    second_half = [(t, mb) for t, mb in load if t >= load_end / 120]
    return {
        "seconds": round(load_end, 1),
        "webhooks": res.ok,
        "refused_503": refused,
        "accepted_per_s": res.rate,
        "processed": processed,
        "rss_start_mb": start_kb / 1024,
        "rss_end_mb": end_kb / 1024,
        "rss_max_mb": max(kb for _, kb in samples) / 1024 if samples else 0.0,
        "slope_mb_per_min": slope(load),
        "slope_second_half_mb_per_min": slope(second_half),
        "samples": [(round(t, 1), round(kb / 1024, 1)) for t, kb in samples],
        "target": "flat RSS (slope of the second half near 0)",
    }
