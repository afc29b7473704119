"""A SQLite hub under webhooks that never pause keeps its WAL bounded (``Checkpointer``).

SQLite starts its WAL over only when a writer begins with every frame copied; a busy hub always
has a write open across the checkpoint, so before the fix the WAL of this test grew to 462 MB
(18,000 webhooks in 8 s), and its mapped index showed as the hub's memory growth."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiohttp
import pytest
from e2e_support import (
    Api,
    HubFactory,
    ThreadedFakeGraph,
    create_wa_channel,
    encode,
    phone,
    settle,
    sign,
    wa_text_webhook,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# journal_size_limit is 64 MB, and up to a second of writes (~50 MB at full speed) may come
# before the next restart.
WAL_BOUND = 120_000_000
LOAD_SECONDS = 8.0
# At ~25 kB of WAL a webhook, enough for an unbounded WAL to pass the bound; a slow machine loads
# for longer to get there.
MIN_SENT = 6_000


async def test_the_wal_stays_bounded_while_webhooks_never_pause(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory()
    assert hub.token
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="WAL")
    wal = hub.dir / "hub.db-wal"
    senders = [phone() for _ in range(200)]
    url = f"{hub.base_url}/webhooks/{ch.id}"
    sent = 0
    largest = 0
    start = time.monotonic()

    def loading() -> bool:
        elapsed = time.monotonic() - start
        return elapsed < LOAD_SECONDS or (sent < MIN_SENT and elapsed < 60)

    async def client(n: int) -> None:
        nonlocal sent
        i = n
        while loading():
            payload, _ = wa_text_webhook(ch.phone_number_id, senders[i % len(senders)], f"load {i}")
            body = encode(payload)
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, ch.app_secret)}
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            sent += 1
            i += 32

    async def sampler() -> None:
        nonlocal largest
        while loading():
            if wal.exists():
                largest = max(largest, wal.stat().st_size)
            await asyncio.sleep(0.05)

    await asyncio.gather(sampler(), *(client(n) for n in range(32)))
    await settle(api, ch, after=await api.last_seq())
    largest = max(largest, wal.stat().st_size)
    assert sent >= MIN_SENT, sent
    assert largest < WAL_BOUND, (largest, sent)
    # Nothing was lost on the way: every webhook answered 200 is a stored message (and the
    # sentinel), read from the database file beside the running hub.
    db = sqlite3.connect(f"file:{hub.dir / 'hub.db'}?mode=ro", uri=True)
    try:
        (stored,) = db.execute(
            "SELECT count(*) FROM messages WHERE channel_id = ? AND direction = 'inbound'", (ch.id,)
        ).fetchone()
    finally:
        db.close()
    assert stored == sent + 1, (stored, sent)
