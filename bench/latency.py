"""``latency``: webhook POST to ``message.created`` on the ``/api/v1/stream`` WebSocket.

Open loop: webhooks leave at a fixed rate whatever the hub does (a late answer does not slow the
sender), each timed from just before its POST to the arrival of its event on the WebSocket.
Several rates are run in turn on one hub; the target is p99 < 50 ms at 1,000 msg/s. The floor
beside it is the POST round trip to the bare aiohttp handler at the same rate (no storage, no
processing, no WebSocket).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bench.common import (
    Api,
    BenchError,
    Channel,
    analyze,
    ceiling_server,
    cpu_seconds,
    percentile,
    stage_counts,
    stage_summary,
    wa_ids,
    wait_seq,
)
from bench.context import Context
from bench.ingest import ingest_into_hub
from hub.metrics import STAGES

TARGET_RATE = 1000
TARGET_P99_MS = 50.0


def summary(values_s: list[float]) -> dict[str, float]:
    v = sorted(values_s)
    return {
        "p50_ms": 1000 * percentile(v, 50),
        "p95_ms": 1000 * percentile(v, 95),
        "p99_ms": 1000 * percentile(v, 99),
        "max_ms": 1000 * v[-1] if v else float("nan"),
    }


async def open_loop(
    url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float, on_sent: Any = None
) -> dict[str, Any]:
    """POST ``requests`` at ``rate``/s on a schedule; per request its start time and HTTP latency."""
    connector = aiohttp.TCPConnector(limit=64)  # keep-alive reuse; more connections only add churn
    starts: list[float] = [0.0] * len(requests)
    http: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            nonlocal errors
            body, headers = requests[i]
            t0 = time.perf_counter()
            starts[i] = t0
            if on_sent is not None:
                on_sent(i, t0)
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except (aiohttp.ClientError, OSError):
                errors += 1
                return
            http.append(time.perf_counter() - t0)

        tasks = []
        begin = time.perf_counter()
        for i in range(len(requests)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.sleep(0)
        send_span = max(starts) - begin
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    lag = [starts[i] - (begin + i / rate) for i in range(len(requests))]
    return {
        "offered_per_s": (len(requests) - 1) / send_span if send_span > 0 else float("nan"),
        "send_lag_max_ms": 1000 * max(lag),
        "http": summary(http),
        "statuses": statuses,
        "errors": errors,
    }


async def one_rate(
    api: Api,
    channel: Channel,
    rate: int,
    seconds: float,
    senders: list[str],
    drain_timeout: float,
    post_to: str | None = None,
) -> dict[str, Any]:
    """Webhooks at ``rate`` for ``seconds``, timed to their events on ``api``'s WebSocket; POSTed to
    ``api``'s hub, or to the hub at base URL ``post_to`` (another process of the cluster)."""
    n = int(rate * seconds)
    tag = f"latency {rate}/s"
    requests, wamids = [], []
    for i in range(n):
        body, headers, wamid = channel.webhook(senders[i % len(senders)], f"{tag} {i}")
        requests.append((body, headers))
        wamids.append(wamid)
    index = {w: i for i, w in enumerate(wamids)}
    sent_at: dict[int, float] = {}
    received: dict[int, float] = {}
    hub = api.hub
    after = await api.last_seq()
    ws = await api.session.ws_connect(
        f"{hub.base_url}/api/v1/stream?after={after}", headers=api.auth, max_msg_size=0, heartbeat=None
    )
    done = asyncio.Event()

    async def reader() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            data = json.loads(msg.data)
            if data.get("type") != "event" or data["event"]["type"] != "message.created":
                continue
            i = index.get(data["event"]["data"].get("external_id"))
            if i is not None and i not in received:
                received[i] = now
                if len(received) == n:
                    done.set()

    try:
        first = await asyncio.wait_for(ws.receive_json(), 10)
        while first.get("type") != "live":
            first = await asyncio.wait_for(ws.receive_json(), 10)
        reading = asyncio.create_task(reader())
        stages0 = await stage_counts(api.session, hub)
        cpu0 = cpu_seconds(hub.pid) or 0.0
        url = f"{post_to or hub.base_url}/webhooks/{channel.id}"
        loop = await open_loop(url, requests, rate, on_sent=lambda i, t: sent_at.__setitem__(i, t))
        # A hub that falls behind delivers late: wait while events still flow, within bounds.
        deadline = time.monotonic() + drain_timeout
        last_count, still_since = -1, time.monotonic()
        while not done.is_set() and time.monotonic() < deadline and time.monotonic() - still_since < 3.0:
            if len(received) != last_count:
                last_count, still_since = len(received), time.monotonic()
            try:
                await asyncio.wait_for(done.wait(), 0.2)
            except TimeoutError:
                pass
        cpu = (cpu_seconds(hub.pid) or 0.0) - cpu0
        stages = stage_summary(stages0, await stage_counts(api.session, hub))
        reading.cancel()
    finally:
        await ws.close()
    lat = [received[i] - sent_at[i] for i in received if i in sent_at]
    out = {
        "rate": rate,
        "seconds": seconds,
        "messages": n,
        "received": len(received),
        "lost": n - len(received),
        **summary(lat),
        "offered_per_s": loop["offered_per_s"],
        "send_lag_max_ms": loop["send_lag_max_ms"],
        "http_to_200": loop["http"],
        "http_errors": loop["errors"],
        "non_200": sum(c for s, c in loop["statuses"].items() if s != 200),
        "hub_cpu_s": cpu,
        # Each stage's p50/p99 from the hub's own histograms (hub.metrics.STAGES), on the process
        # the app is connected to (with ``post_to``, accept and group commit happen on the other).
        "stages": {name: stages[name] for name in STAGES if name in stages},
    }
    return out


async def floor(rate: int, seconds: float, channel: Channel, senders: list[str]) -> dict[str, Any]:
    requests = [channel.webhook(senders[i % len(senders)], "floor")[:2] for i in range(int(rate * seconds))]
    async with ceiling_server() as base:
        res = await open_loop(f"{base}/webhooks/ceiling", requests, rate)
    return {"rate": rate, "offered_per_s": res["offered_per_s"], **res["http"]}


async def run(ctx: Context) -> dict[str, Any]:
    rates = [50] if ctx.quick else [100, 250, 500, TARGET_RATE]
    seconds = 1.0 if ctx.quick else 5.0
    drain_timeout = 3.0 if ctx.quick else 120.0
    phases: list[dict[str, Any]] = []
    async with ctx.hub() as hub, aiohttp.ClientSession() as session:
        api = Api(hub, session)
        channel = await api.create_whatsapp()
        senders = wa_ids(10 if ctx.quick else 200)
        # Warm-up: every sender's contact and conversation exist before the timed phases.
        warm = [channel.webhook(s, f"warm-up {i}")[:2] for i, s in enumerate(senders)]
        await ingest_into_hub(api, channel, warm, concurrency=16, within=120)
        await analyze(hub)
        for rate in rates:
            phases.append(await one_rate(api, channel, rate, seconds, senders, drain_timeout))
            if rate != rates[-1]:
                # Let a backlog drain before the next rate, so phases do not overlap.
                await wait_seq(api, 1 << 62, within=drain_timeout, settle=2.0)
    top = phases[-1]
    floor_res = await floor(top["rate"], seconds, channel, senders)
    if top["received"] == 0:
        raise BenchError("no message.created arrived on the WebSocket")
    sustained = [p for p in phases if p["lost"] == 0 and p["offered_per_s"] >= 0.95 * p["rate"]]
    return {
        "phases": phases,
        "floor_at_top_rate": floor_res,
        "top_rate": top["rate"],
        "top_rate_sustained": bool(sustained and sustained[-1] is top),
        "p99_ms_at_top_rate": top["p99_ms"],
        "target": f"p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE} msg/s",
        "target_met": top["rate"] >= TARGET_RATE and top["p99_ms"] < TARGET_P99_MS and top["lost"] == 0,
    }
