"""Password logins that no flood can turn against the hub.

An argon2 check costs ~100 ms of CPU. Run on the event loop, 20 clients looping on wrong passwords
took webhook acknowledgement from 2 ms to a median of 7 s. So:

* checks run in a small thread pool (argon2 releases the GIL), never on the loop, and at most
  ``queue`` of them wait for it; beyond that a login is answered 429 at once;
* attempts are rate-limited per client address and per account (token buckets), answered 429
  with ``Retry-After`` before any database read or hash;
* every refusal costs one argon2 check, whether the account exists, has no password or is
  inactive, so the answer's timing does not tell which accounts exist.
"""

from __future__ import annotations

import asyncio
import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hub.channel import RateLimit
from hub.db import Database
from hub.ratelimit import RateLimiter
from hub.security import hash_password, verify_password
from hub.users import find_user

__all__ = ["LoginGuard", "LoginRefused", "TooManyLogins"]


class LoginRefused(Exception):
    """Wrong email or password (or an account that may not log in): one answer for all."""


class TooManyLogins(Exception):
    """Over a rate limit, or the password checker is saturated: retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@functools.cache
def _dummy_hash() -> str:
    # Same parameters as a real password's hash, so checking it costs the same.
    return hash_password("not a real password")


@dataclass(frozen=True)
class LoginLimits:
    """Attempts per minute (each a bucket holding a minute's worth), and the checking pool: one
    thread leaves the other core to the loop; ``queue`` checks may wait for it."""

    per_address: float = 30.0
    per_account: float = 10.0
    workers: int = 1
    queue: int = 8


class LoginGuard:
    """One per app: the rate limits and the password-check pool."""

    MAX_KEYS = 100_000

    def __init__(self, limits: LoginLimits | None = None) -> None:
        self.limits = limits or LoginLimits()
        self._buckets = RateLimiter()
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="hub-password")
        self._slots = asyncio.Semaphore(self.limits.workers + self.limits.queue)

    async def warm_up(self) -> None:
        """Hash the stand-in password in the pool now, not on the loop at the first unknown email."""
        await asyncio.get_running_loop().run_in_executor(self._pool, _dummy_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check_rate(self, address: str, email: str) -> None:
        if self._buckets.size() > self.MAX_KEYS:
            self._buckets.forget_full()
        lim = self.limits
        keys = [
            RateLimit(f"address:{address}", lim.per_address / 60, lim.per_address),
            RateLimit(f"account:{email}", lim.per_account / 60, lim.per_account),
        ]
        wait = self._buckets.delay(keys)
        if wait > 0:
            raise TooManyLogins("too many login attempts; wait before trying again", wait)
        self._buckets.take(keys)

    async def _verify(self, stored: str, password: str) -> bool:
        if self._slots.locked():
            raise TooManyLogins("the hub is checking too many passwords right now; retry shortly", 1)
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, verify_password, stored, password)

    async def login(self, db: Database, address: str, email: str, password: str) -> dict[str, Any]:
        """The user, for a right password of an active account; else LoginRefused or
        TooManyLogins. (``hub.sessions`` then issues the tokens.)"""
        email = email.strip().lower()
        self._check_rate(address, email)
        user = await find_user(db, email)
        stored = user["password_hash"] if user is not None else None
        ok = await self._verify(stored or _dummy_hash(), password)
        if not (ok and user is not None and stored and user["active"]):
            raise LoginRefused("email or password is wrong")
        return user
