"""Token buckets for outbound sends, keyed per sender and per recipient.

A send waits on every bucket its channel names (``Channel.rate_limits``); a provider's throttle
answer pushes that bucket's next token out (``penalize``), so only the throttled key waits.

There is a bucket per recipient pair, so buckets come and go with the customers. A bucket that has
refilled and is not held back is the same as no bucket (a new one starts full): those are dropped
every ``sweep_every`` seconds, and memory follows the recipients active now, not all there were.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hub.channel import RateLimit

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float
    blocked_until: float = 0.0


class RateLimiter:
    def __init__(self, sweep_every: float = 60.0) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = time.monotonic
        self.sweep_every = sweep_every
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def evict_idle(self) -> int:
        """Drop the buckets a new one would replace unchanged (full, not held back); how many."""
        now = self._clock()
        idle = [
            key
            for key, b in self._buckets.items()
            if now >= b.blocked_until and b.tokens + (now - b.stamp) * b.rate >= b.burst
        ]
        for key in idle:
            del self._buckets[key]
        return len(idle)

    def _maybe_sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            self.evict_idle()

    def _bucket(self, limit: RateLimit) -> _Bucket:
        b = self._buckets.get(limit.key)
        now = self._clock()
        if b is None:
            b = _Bucket(limit.rate, max(limit.burst, 1.0), max(limit.burst, 1.0), now)
            self._buckets[limit.key] = b
        elif b.rate != limit.rate or b.burst != limit.burst:
            b.rate, b.burst = limit.rate, max(limit.burst, 1.0)
        return b

    def delay(self, limits: list[RateLimit]) -> float:
        """Seconds until every bucket has a token (0 when a send may go now); takes nothing."""
        now = self._clock()
        self._maybe_sweep(now)
        wait = 0.0
        for limit in limits:
            b = self._bucket(limit)
            b.tokens = min(b.burst, b.tokens + (now - b.stamp) * b.rate)
            b.stamp = now
            wait = max(wait, b.blocked_until - now)
            if b.tokens < 1.0:
                wait = max(wait, (1.0 - b.tokens) / b.rate if b.rate > 0 else 3600.0)
        return wait

    def take(self, limits: list[RateLimit]) -> None:
        for limit in limits:
            self._bucket(limit).tokens -= 1.0

    async def acquire(self, limits: list[RateLimit], max_wait: float) -> float:
        """Take a token from each bucket, sleeping while the wait is under ``max_wait``.

        Returns 0 when the tokens were taken, else the remaining wait (the caller reschedules the
        job rather than holding a worker for a long throttle).
        """
        while True:
            wait = self.delay(limits)
            if wait <= 0:
                self.take(limits)
                return 0.0
            if wait > max_wait:
                return wait
            await asyncio.sleep(wait)

    def size(self) -> int:
        return len(self._buckets)

    def forget_full(self) -> None:
        """Drop the buckets that have refilled: a new bucket for their key would be the same."""
        now = self._clock()
        self._buckets = {
            key: b
            for key, b in self._buckets.items()
            if b.blocked_until > now or b.tokens + (now - b.stamp) * b.rate < b.burst
        }

    def penalize(self, key: str, seconds: float) -> None:
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(1.0, 1.0, 0.0, self._clock())
            self._buckets[key] = b
        b.blocked_until = max(b.blocked_until, self._clock() + seconds)
        b.tokens = min(b.tokens, 0.0)
