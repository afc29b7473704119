"""Token buckets for outbound sends, keyed per sender and per recipient.

A send waits on every bucket its channel names (``Channel.rate_limits``); a provider's throttle
answer pushes that bucket's next token out (``penalize``), so only the throttled key waits.

There is a bucket per recipient pair, so buckets come and go with the customers. A bucket that has
refilled and is not held back is the same as no bucket (a new one starts full): those are dropped
every ``sweep_every`` seconds, and memory follows the recipients active now, not all there were.

``RateLimiter`` keeps its buckets in memory: right for one process (SQLite). Several processes on
one PostgreSQL database share ``SharedRateLimiter``, whose buckets are rows of ``rate_buckets``:
a send's tokens are taken in one statement that locks the buckets' rows, on the database's clock,
so two processes together never send faster than one bucket allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from hub.channel import RateLimit
from hub.db import Database

__all__ = ["Limiter", "RateLimiter", "SharedRateLimiter", "limiter_for"]

log = logging.getLogger("hub.ratelimit")


class Limiter(Protocol):
    async def acquire(self, limits: list[RateLimit], max_wait: float) -> float: ...

    async def block(self, key: str, seconds: float) -> None: ...


def limiter_for(db: Database) -> Limiter:
    """In memory for one process (SQLite); shared through the database on PostgreSQL."""
    return RateLimiter() if db.is_sqlite else SharedRateLimiter(db)


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

    async def block(self, key: str, seconds: float) -> None:
        self.penalize(key, seconds)

    def penalize(self, key: str, seconds: float) -> None:
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(1.0, 1.0, 0.0, self._clock())
            self._buckets[key] = b
        b.blocked_until = max(b.blocked_until, self._clock() + seconds)
        b.tokens = min(b.tokens, 0.0)


_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS float8)"
# Take one token of each bucket that has one and is not held back, in one statement that is its
# own transaction: a bucket's row is locked only while the statement runs, not across round trips
# (a send's take was BEGIN, SET, one INSERT per bucket and COMMIT, with the channel's bucket locked
# all along: on a loaded machine that serialised every process's sends at a few ms each, profiled
# at ~25 sends/s). Rows come back for the buckets taken; the caller gives those back when another
# bucket had no token, so a send's buckets are taken all or none. Keys in order: two sends lock
# shared buckets in the same order. The commit does not wait for the disk: a token lost on a
# crash costs nothing.
_TAKE = sa.text(
    f"""
    WITH quick AS (SELECT set_config('synchronous_commit', 'off', true) AS done),
    want AS (
        SELECT w.key, w.rate, w.burst
        FROM unnest(CAST(:keys AS text[]), CAST(:rates AS float8[]), CAST(:bursts AS float8[]))
            AS w(key, rate, burst), quick
        ORDER BY w.key
    )
    INSERT INTO rate_buckets AS r (key, rate, burst, tokens, stamp, blocked_until)
    SELECT key, rate, burst, burst - 1, {_NOW}, 0 FROM want
    ON CONFLICT (key) DO UPDATE SET
        rate = EXCLUDED.rate,
        burst = EXCLUDED.burst,
        tokens = LEAST(EXCLUDED.burst, r.tokens + (EXCLUDED.stamp - r.stamp) * r.rate) - 1,
        stamp = EXCLUDED.stamp
    WHERE r.blocked_until <= EXCLUDED.stamp
        AND LEAST(EXCLUDED.burst, r.tokens + (EXCLUDED.stamp - r.stamp) * r.rate) >= 1
    RETURNING r.key
    """
)
# Give back the tokens of a send that could not have all of its buckets.
_GIVE_BACK = sa.text("UPDATE rate_buckets SET tokens = LEAST(burst, tokens + 1) WHERE key = ANY(:keys)")
_STATE = sa.text(
    f"SELECT key, rate, burst, tokens, stamp, blocked_until, {_NOW} FROM rate_buckets WHERE key = ANY(:keys)"
)
_BLOCK = sa.text(
    f"""
    INSERT INTO rate_buckets AS r (key, rate, burst, tokens, stamp, blocked_until)
    VALUES (:key, 1, 1, 0, {_NOW}, {_NOW} + CAST(:seconds AS float8))
    ON CONFLICT (key) DO UPDATE SET
        blocked_until = GREATEST(r.blocked_until, EXCLUDED.blocked_until), tokens = 0, stamp = EXCLUDED.stamp
    """
)
_SWEEP = sa.text(
    f"DELETE FROM rate_buckets WHERE blocked_until <= {_NOW} AND tokens + ({_NOW} - stamp) * rate >= burst"
)


class SharedRateLimiter:
    """Token buckets in the database, shared by every process (PostgreSQL)."""

    def __init__(self, db: Database, sweep_every: float = 60.0) -> None:
        self.db = db
        self.sweep_every = sweep_every
        self._next_sweep = 0.0

    async def acquire(self, limits: list[RateLimit], max_wait: float) -> float:
        """As ``RateLimiter.acquire``: 0 once a token of each bucket was taken, else the wait."""
        if not limits:
            return 0.0
        await self._maybe_sweep()
        while True:
            wait = await self._take(limits)
            if wait <= 0:
                return 0.0
            if wait > max_wait:
                return wait
            await asyncio.sleep(wait)

    async def _take(self, limits: list[RateLimit]) -> float:
        ordered = sorted({lim.key: lim for lim in limits}.values(), key=lambda lim: lim.key)
        keys = [lim.key for lim in ordered]
        params = {
            "keys": keys,
            "rates": [float(lim.rate) for lim in ordered],
            "bursts": [max(float(lim.burst), 1.0) for lim in ordered],
        }
        async with self.db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            taken = set(await conn.scalars(_TAKE, params))
            if len(taken) == len(keys):
                return 0.0
            if taken:
                await conn.execute(_GIVE_BACK, {"keys": sorted(taken)})
            rows = (await conn.execute(_STATE, {"keys": [k for k in keys if k not in taken]})).all()
        wait = 0.0
        for _key, rate, burst, tokens, stamp, blocked_until, now in rows:
            tokens = min(burst, tokens + (now - stamp) * rate)
            wait = max(wait, blocked_until - now)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / rate if rate > 0 else 3600.0)
        # Never 0 here: the token was not taken, so whoever asks again must not spin.
        return max(wait, 0.001)

    async def block(self, key: str, seconds: float) -> None:
        """A provider throttled this key: no token for it, in any process, for ``seconds``."""
        async with self.db.write() as conn:
            await conn.execute(_BLOCK, {"key": key, "seconds": seconds})

    async def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every
        try:
            async with self.db.write() as conn:
                await conn.execute(_SWEEP)
        except Exception as exc:  # buckets left behind cost a row each, nothing more
            log.warning("dropping idle rate buckets failed: %s", exc)
