"""``ingest``: signed WhatsApp webhooks, N concurrent keep-alive clients, a fixed count.

Figures: requests/s answered 200 (stored durably), processed/s (first POST to the last
``message.created`` in the event log), and the ceiling: the same client against a bare aiohttp
handler that only reads the body and answers 200. Target: processed/s >= 0.5 x ceiling.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from bench.common import (
    Api,
    BenchError,
    Channel,
    DriveResult,
    analyze,
    ceiling_server,
    cpu_seconds,
    drive,
    wait_events,
)
from bench.context import Context

TARGET_RATIO = 0.5


def build(
    channel: Channel, count: int, senders: int, tag: str
) -> tuple[list[tuple[bytes, dict[str, str]]], list[str]]:
    """``count`` signed one-text webhooks (distinct message ids) from a pool of ``senders`` wa_ids."""
    from bench.common import wa_ids

    pool = wa_ids(senders)
    requests, wamids = [], []
    for i in range(count):
        body, headers, wamid = channel.webhook(pool[i % senders], f"{tag} message {i}")
        requests.append((body, headers))
        wamids.append(wamid)
    return requests, wamids


def inbound_created(channel_id: str) -> Any:
    def match(ev: dict[str, Any]) -> bool:
        return (
            ev["type"] == "message.created"
            and ev.get("channel_id") == channel_id
            and ev["data"].get("direction") == "inbound"
        )

    return match


async def ingest_into_hub(
    api: Api,
    channel: Channel,
    requests: list[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    within: float,
) -> dict[str, Any]:
    """POST the webhooks to the hub and wait until all are processed; the figures of that run."""
    hub = api.hub
    base = await api.last_seq()
    cpu0 = cpu_seconds(hub.pid) or 0.0
    url = f"{hub.base_url}/webhooks/{channel.id}"
    res = await drive(lambda _i: url, requests, concurrency=concurrency, within=within)
    cpu_accept = (cpu_seconds(hub.pid) or 0.0) - cpu0
    if res.ok != len(requests):
        raise BenchError(
            f"hub answered {dict(res.statuses)} errors {dict(res.errors)} for {len(requests)} webhooks"
        )
    count, last = await wait_events(
        api, base, res.ok, match=inbound_created(channel.id), within=within, min_seq_per_item=2
    )
    cpu_total = (cpu_seconds(hub.pid) or 0.0) - cpu0
    if count < res.ok or last is None:
        raise BenchError(f"only {count} of {res.ok} webhooks were processed within {within:g} s")
    processing_elapsed = max(last - res.start, 1e-9)
    return {
        "webhooks": len(requests),
        "concurrency": concurrency,
        "accepted_per_s": res.rate,
        "accept_elapsed_s": res.elapsed,
        "processed_per_s": count / processing_elapsed,
        "processed_elapsed_s": processing_elapsed,
        "hub_cpu_s_while_accepting": cpu_accept,
        "hub_cpu_s_total": cpu_total,
        "hub_cpu_ms_per_webhook": 1000 * cpu_total / count,
    }


async def ceiling(
    requests: list[tuple[bytes, dict[str, str]]], *, concurrency: int, within: float
) -> DriveResult:
    pids: list[int] = []
    async with ceiling_server(pids) as base:
        url = f"{base}/webhooks/ceiling"
        await drive(
            lambda _i: url, requests[: min(200, len(requests))], concurrency=concurrency, within=within
        )
        before = cpu_seconds(pids[0])
        res = await drive(lambda _i: url, requests, concurrency=concurrency, within=within)
        after = cpu_seconds(pids[0])
    if res.ok != len(requests):
        raise BenchError(f"ceiling server answered {dict(res.statuses)} errors {dict(res.errors)}")
    # What the bare handler costs a request: the floor under the hub's CPU per webhook.
    res.cpu_ms_per_request = (
        1000 * (after - before) / len(requests) if before is not None and after is not None else None
    )
    return res


async def run(ctx: Context) -> dict[str, Any]:
    count = 60 if ctx.quick else 5000
    concurrency = 16 if ctx.quick else 64
    senders = 100
    within = 60.0 if ctx.quick else 180.0
    async with ctx.hub() as hub, aiohttp.ClientSession() as session:
        api = Api(hub, session)
        channel = await api.create_whatsapp()
        warm, _ = build(channel, 10 if ctx.quick else 200, senders, "warm-up")
        await ingest_into_hub(api, channel, warm, concurrency=concurrency, within=within)
        await analyze(hub)
        requests, _ = build(channel, count, senders, "ingest")
        t0 = time.monotonic()
        figures = await ingest_into_hub(api, channel, requests, concurrency=concurrency, within=within)
        figures["wall_s"] = time.monotonic() - t0
    ceil = await ceiling(requests, concurrency=concurrency, within=within)
    figures["ceiling_per_s"] = ceil.rate
    figures["ceiling_cpu_ms_per_request"] = ceil.cpu_ms_per_request
    figures["ratio_accepted"] = figures["accepted_per_s"] / ceil.rate
    figures["ratio_processed"] = figures["processed_per_s"] / ceil.rate
    figures["target"] = f"processed/s >= {TARGET_RATIO} x ceiling"
    figures["target_met"] = figures["ratio_processed"] >= TARGET_RATIO
    return figures
