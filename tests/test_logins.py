"""Password logins: checks off the event loop in a bounded pool, rate limits per address and per
account, and one answer (in one time) for every refusal."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from hub.appkeys import LOGINS
from hub.logins import LoginGuard, LoginLimits, LoginRefused, TooManyLogins
from hub.users import create_user
from tests.conftest import Hub
from tests.test_api import error_of


@pytest.fixture
async def guarded(lite_hub: Hub) -> Hub:
    await create_user(lite_hub.store.db, "pw@example.com", "agent", "the right password")
    return lite_hub


async def attempt(guard: LoginGuard, hub: Hub, address: str, email: str, password: str = "wrong") -> str:
    try:
        await guard.login(hub.store.db, address, email, password)
    except LoginRefused:
        return "refused"
    except TooManyLogins as exc:
        assert exc.retry_after >= 1
        return "limited"
    return "ok"


async def test_attempts_are_limited_per_account_and_per_address(guarded: Hub) -> None:
    guard = LoginGuard(LoginLimits(per_address=6, per_account=3))
    try:
        # Per account, whatever the address: the fourth attempt within the minute waits.
        got = [await attempt(guard, guarded, f"10.0.0.{i}", "pw@example.com") for i in range(4)]
        assert got == ["refused"] * 3 + ["limited"]
        # Even with the right password: the limit is on attempts.
        assert await attempt(guard, guarded, "10.0.1.1", "pw@example.com", "the right password") == "limited"
        # Per address, whatever the account (unknown ones too).
        got = [await attempt(guard, guarded, "10.9.9.9", f"u{i}@example.com") for i in range(7)]
        assert got == ["refused"] * 6 + ["limited"]
        # Another account from another address is untouched.
        assert await attempt(guard, guarded, "10.0.2.2", "other@example.com") == "refused"
    finally:
        guard.close()


async def test_checks_run_off_the_loop_and_a_full_pool_answers_at_once(
    guarded: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    release = threading.Event()

    def slow_verify(stored: str, password: str) -> bool:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return False

    monkeypatch.setattr("hub.logins.verify_password", slow_verify)
    guard = LoginGuard(LoginLimits(per_address=1000, per_account=1000, workers=1, queue=2))
    try:
        tasks = [
            asyncio.create_task(attempt(guard, guarded, f"10.1.0.{i}", f"u{i}@example.com")) for i in range(6)
        ]
        await asyncio.sleep(0.3)
        # One checking and two waiting: the other three were answered without waiting.
        done = [t.result() for t in tasks if t.done()]
        assert done == ["limited"] * 3
        release.set()
        assert sorted(await asyncio.gather(*tasks)) == ["limited"] * 3 + ["refused"] * 3
    finally:
        release.set()
        guard.close()
    assert threads and all(name.startswith("hub-password") for name in threads), threads


async def test_login_answers_429_with_retry_after_in_the_one_error_shape(guarded: Hub) -> None:
    hub = guarded
    guard = hub.client.app[LOGINS]
    body: dict[str, Any] = {"email": "pw@example.com", "password": "wrong"}
    statuses = []
    # A minute's worth at once, then 429 (a slow machine may refill a token meanwhile).
    for _ in range(int(guard.limits.per_account) + 3):
        resp = await hub.client.post("/api/v1/auth/login", json=body)
        statuses.append(resp.status)
        if resp.status == 429:
            break
    assert statuses[: int(guard.limits.per_account)] == [401] * int(guard.limits.per_account)
    assert statuses[-1] == 429, statuses
    err = await error_of(resp, 429, "too_many_requests")
    assert int(resp.headers["Retry-After"]) == err["details"]["retry_after"] >= 1
