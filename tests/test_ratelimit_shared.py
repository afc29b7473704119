"""The shared rate limiter (PostgreSQL): two processes together never take more tokens than one
bucket allows; a provider's throttle holds back every process; SQLite keeps the in-memory one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hub.channel import RateLimit
from hub.db import Database
from hub.migrate import upgrade
from hub.ratelimit import RateLimiter, SharedRateLimiter, limiter_for


@pytest.fixture
async def pg_dbs(pg_session_url: str | None) -> AsyncIterator[tuple[Database, Database]]:
    """Two engines on one database: two hub processes, as far as the limiter can tell."""
    if pg_session_url is None:
        pytest.skip("PostgreSQL not reachable (set HUB_TEST_POSTGRES_URL): the shared limiter lives there")
    from tests.conftest import _reset_postgres

    await _reset_postgres(pg_session_url)
    one, two = Database(pg_session_url), Database(pg_session_url)
    await upgrade(one)
    yield one, two
    await one.dispose()
    await two.dispose()


async def _hammer(
    limiters: list[SharedRateLimiter] | list[RateLimiter], limits: list[RateLimit], seconds: float
) -> tuple[int, float]:
    """Take tokens from every limiter at once, as fast as they give them, for ``seconds``; how
    many were taken, and over how long (from the start to the last token taken)."""
    taken: list[float] = []
    start = time.monotonic()
    deadline = start + seconds

    async def worker(limiter: SharedRateLimiter | RateLimiter) -> None:
        while time.monotonic() < deadline:
            if await limiter.acquire(limits, max_wait=0.05) == 0:
                taken.append(time.monotonic())

    await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(4)))
    return len(taken), max(taken) - start


async def test_two_processes_together_keep_one_buckets_rate(pg_dbs: tuple[Database, Database]) -> None:
    limits = [RateLimit("number:shared", rate=20.0, burst=5.0)]
    taken, elapsed = await _hammer([SharedRateLimiter(pg_dbs[0]), SharedRateLimiter(pg_dbs[1])], limits, 2.0)
    allowed = 5 + 20 * elapsed
    assert allowed * 0.6 <= taken <= allowed + 1, (taken, elapsed)
    # Per-process buckets (what each process kept before) let the two together take twice as many.
    doubled, elapsed = await _hammer([RateLimiter(), RateLimiter()], limits, 2.0)
    assert doubled > (5 + 20 * elapsed) * 1.5, (doubled, elapsed)


async def test_a_send_takes_every_bucket_or_none(pg_dbs: tuple[Database, Database]) -> None:
    a, b = SharedRateLimiter(pg_dbs[0]), SharedRateLimiter(pg_dbs[1])
    sender = RateLimit("number:all-or-none", rate=0.001, burst=3.0)
    pair = RateLimit("pair:all-or-none:1", rate=0.001, burst=1.0)
    assert await a.acquire([sender, pair], max_wait=0) == 0
    # The pair bucket is empty: the sender's token is not spent on a send that cannot go.
    assert await b.acquire([sender, pair], max_wait=0) > 0
    other = RateLimit("pair:all-or-none:2", rate=0.001, burst=1.0)
    assert await b.acquire([sender, other], max_wait=0) == 0
    assert await a.acquire([sender], max_wait=0) == 0
    assert await a.acquire([sender], max_wait=0) > 0


async def test_a_throttle_holds_back_every_process(pg_dbs: tuple[Database, Database]) -> None:
    a, b = SharedRateLimiter(pg_dbs[0]), SharedRateLimiter(pg_dbs[1])
    limit = [RateLimit("number:throttled", rate=100.0, burst=100.0)]
    assert await b.acquire(limit, max_wait=0) == 0
    await a.block("number:throttled", 5.0)
    wait = await b.acquire(limit, max_wait=0)
    assert 4.0 < wait <= 5.0


def test_sqlite_keeps_the_in_memory_limiter(tmp_path: object) -> None:
    assert isinstance(limiter_for(Database(f"sqlite:///{tmp_path}/hub.db")), RateLimiter)
