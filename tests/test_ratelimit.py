"""Token-bucket math of hub.ratelimit.RateLimiter, on a clock the tests move by hand."""

from __future__ import annotations

import asyncio

import pytest

from hub.channel import RateLimit
from hub.ratelimit import RateLimiter


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> RateLimiter:
    rl = RateLimiter()
    rl._clock = clock
    return rl


def drain(limiter: RateLimiter, limits: list[RateLimit]) -> int:
    """Take tokens while no wait is needed; how many were taken."""
    n = 0
    while limiter.delay(limits) == 0 and n < 1000:
        limiter.take(limits)
        n += 1
    return n


def test_burst_then_refill_at_rate(limiter: RateLimiter, clock: Clock) -> None:
    limits = [RateLimit("number:1", rate=2.0, burst=3)]
    assert drain(limiter, limits) == 3
    assert limiter.delay(limits) == pytest.approx(0.5)
    clock.advance(0.2)
    assert limiter.delay(limits) == pytest.approx(0.3)
    clock.advance(0.3)
    assert limiter.delay(limits) == 0
    limiter.take(limits)
    assert limiter.delay(limits) == pytest.approx(0.5)


def test_refill_is_capped_at_burst(limiter: RateLimiter, clock: Clock) -> None:
    limits = [RateLimit("number:1", rate=10.0, burst=4)]
    assert drain(limiter, limits) == 4
    clock.advance(3600)
    assert drain(limiter, limits) == 4
    assert limiter.delay(limits) == pytest.approx(0.1)


def test_delay_takes_nothing(limiter: RateLimiter) -> None:
    limits = [RateLimit("k", rate=1.0, burst=2)]
    for _ in range(5):
        assert limiter.delay(limits) == 0
    assert drain(limiter, limits) == 2


def test_burst_below_one_still_allows_one_send(limiter: RateLimiter, clock: Clock) -> None:
    limits = [RateLimit("k", rate=0.5, burst=0)]
    assert drain(limiter, limits) == 1
    assert limiter.delay(limits) == pytest.approx(2.0)


def test_zero_rate_waits_an_hour_once_empty(limiter: RateLimiter) -> None:
    limits = [RateLimit("k", rate=0.0, burst=1)]
    assert drain(limiter, limits) == 1
    assert limiter.delay(limits) == 3600.0


def test_every_bucket_must_have_a_token(limiter: RateLimiter, clock: Clock) -> None:
    number = RateLimit("number:1", rate=100.0, burst=100)
    pair = RateLimit("pair:1:2", rate=1 / 6, burst=2)
    assert drain(limiter, [number, pair]) == 2
    # The pair bucket is empty: the next send to that recipient waits its refill (6 s)...
    assert limiter.delay([number, pair]) == pytest.approx(6.0)
    # ...while another recipient on the same number may go now.
    assert limiter.delay([number, RateLimit("pair:1:3", rate=1 / 6, burst=2)]) == 0
    clock.advance(6.0)
    assert limiter.delay([number, pair]) == 0


def test_penalize_blocks_only_that_key(limiter: RateLimiter, clock: Clock) -> None:
    a = [RateLimit("pair:a", rate=5.0, burst=5)]
    b = [RateLimit("pair:b", rate=5.0, burst=5)]
    assert limiter.delay(a) == 0 and limiter.delay(b) == 0
    limiter.penalize("pair:a", 30.0)
    assert limiter.delay(a) == pytest.approx(30.0)
    assert limiter.delay(b) == 0
    assert drain(limiter, b) == 5
    clock.advance(29.0)
    assert limiter.delay(a) == pytest.approx(1.0)
    clock.advance(1.0)
    assert limiter.delay(a) == 0


def test_penalize_an_unknown_key_then_use_it(limiter: RateLimiter, clock: Clock) -> None:
    limiter.penalize("channel:x", 2.0)
    limits = [RateLimit("channel:x", rate=4.0, burst=2)]
    assert limiter.delay(limits) == pytest.approx(2.0)
    clock.advance(2.0)
    assert limiter.delay(limits) == 0
    # The bucket takes the limit's own rate once it is used.
    limiter.take(limits)
    assert drain(limiter, limits) == 1
    assert limiter.delay(limits) == pytest.approx(0.25)


def test_a_shorter_penalty_never_shortens_a_longer_one(limiter: RateLimiter, clock: Clock) -> None:
    limits = [RateLimit("k", rate=1.0, burst=1)]
    limiter.penalize("k", 10.0)
    limiter.penalize("k", 1.0)
    assert limiter.delay(limits) == pytest.approx(10.0)


async def test_acquire_takes_sleeps_or_gives_the_wait_back(
    limiter: RateLimiter, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    limits = [RateLimit("k", rate=1.0, burst=1)]
    assert await limiter.acquire(limits, max_wait=2.0) == 0.0
    # Empty bucket, wait 1 s <= max_wait: acquire sleeps it out and takes the token.
    assert await limiter.acquire(limits, max_wait=2.0) == 0.0
    assert slept == [pytest.approx(1.0)]
    # A long throttle is handed back to the caller (the outbox reschedules the job) untaken.
    limiter.penalize("k", 60.0)
    assert await limiter.acquire(limits, max_wait=2.0) == pytest.approx(60.0)
    assert slept == [pytest.approx(1.0)]
    clock.advance(60.0)
    assert await limiter.acquire(limits, max_wait=2.0) == 0.0
    assert limiter.delay(limits) == pytest.approx(1.0)


def test_changed_limit_takes_effect(limiter: RateLimiter, clock: Clock) -> None:
    assert drain(limiter, [RateLimit("k", rate=1.0, burst=1)]) == 1
    faster = [RateLimit("k", rate=10.0, burst=1)]
    assert limiter.delay(faster) == pytest.approx(0.1)


def test_idle_buckets_are_evicted_and_a_fresh_one_behaves_the_same(
    limiter: RateLimiter, clock: Clock
) -> None:
    for n in range(500):  # one pair bucket per recipient, as a busy number makes
        limiter.take([RateLimit(f"pair:{n}", rate=1.0, burst=2.0)])
    held = RateLimit("pair:held", rate=1.0, burst=2.0)
    limiter.penalize(held.key, 600)
    busy = RateLimit("sender", rate=10.0, burst=5.0)
    assert len(limiter) == 501
    clock.advance(61)
    drain(limiter, [busy])  # a send 61 s later sweeps: refilled buckets go, held ones stay
    assert len(limiter) == 2, "only the drained sender and the held-back pair remain"
    assert limiter.delay([held]) > 500
    # A bucket that was evicted starts full again, exactly as the refilled one would have been.
    assert drain(limiter, [RateLimit("pair:7", rate=1.0, burst=2.0)]) == 2


def test_a_bucket_still_refilling_is_kept(limiter: RateLimiter, clock: Clock) -> None:
    slow = RateLimit("pair:slow", rate=0.01, burst=3.0)
    drain(limiter, [slow])
    clock.advance(61)
    limiter.evict_idle()
    assert len(limiter) == 1
    assert limiter.delay([slow]) > 0, "its empty state is kept: eviction would have refilled it"
