"""The outbox's error policy (``hub.outbound.policy``): pure functions, tested without a hub."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.channel import HealthState
from hub.errors import SendError, SendErrorClass
from hub.outbound.policy import Outcome, backoff, is_retryable, on_send_error

KEYS = ["sender:pn1", "pair:pn1:555"]
YOUNG = timedelta(minutes=1)
OLD = timedelta(hours=25)


def decide(exc: SendError, *, attempts: int = 1, age: timedelta = YOUNG) -> Outcome:
    return on_send_error(
        exc,
        attempts=attempts,
        age=age,
        limit_keys=KEYS,
        max_attempts=8,
        max_age=timedelta(hours=24),
        draw=lambda low, high: high,  # the longest wait the jitter allows
    )


def test_backoff_grows_to_ten_minutes_and_never_under_half_a_second() -> None:
    upper = [backoff(n, lambda low, high: high) for n in (0, 1, 2, 5, 9, 10, 30)]
    assert upper == [2.0, 2.0, 4.0, 32.0, 512.0, 600.0, 600.0]
    assert backoff(7, lambda low, high: low) == 0.5
    assert all(0.5 <= backoff(n) <= 600 for n in range(40))


def test_a_retryable_error_retries_with_backoff_and_counts() -> None:
    out = decide(SendError(SendErrorClass.RETRYABLE, "502"), attempts=3)
    assert out == Outcome("retry", delay=8.0, counts=True, health=HealthState.UNREACHABLE)


@pytest.mark.parametrize(("attempts", "age"), [(8, YOUNG), (2, OLD)])
def test_a_retryable_error_fails_past_the_attempts_or_the_age(attempts: int, age: timedelta) -> None:
    assert decide(SendError(SendErrorClass.RETRYABLE, "502"), attempts=attempts, age=age) == Outcome("fail")


def test_a_sender_throttle_holds_the_sender_and_does_not_count() -> None:
    out = decide(SendError(SendErrorClass.RATE_LIMITED, "slow down", retry_after=7.5))
    assert out == Outcome(
        "retry", delay=7.5, counts=False, penalize=("sender:pn1",), health=HealthState.RATE_LIMITED
    )


def test_a_recipient_throttle_holds_that_pair_alone_and_leaves_health_alone() -> None:
    out = decide(SendError(SendErrorClass.RATE_LIMITED, "pair", scope="recipient"), attempts=4)
    assert out == Outcome("retry", delay=16.0, counts=False, penalize=("pair:pn1:555",))


def test_a_throttle_with_no_matching_key_holds_every_key() -> None:
    out = on_send_error(
        SendError(SendErrorClass.RATE_LIMITED, "pair", scope="recipient", retry_after=1.0),
        attempts=1,
        age=YOUNG,
        limit_keys=["sender:pn1"],
        max_attempts=8,
        max_age=timedelta(hours=24),
    )
    assert out.penalize == ("sender:pn1",)


def test_a_throttle_past_the_age_fails_yet_still_holds_the_key() -> None:
    out = decide(SendError(SendErrorClass.RATE_LIMITED, "slow", retry_after=3.0), age=OLD)
    assert out.action == "fail" and out.penalize == ("sender:pn1",)


def test_revoked_credentials_pause_the_channel() -> None:
    assert decide(SendError(SendErrorClass.AUTH, "token expired")) == Outcome("pause")


@pytest.mark.parametrize(
    "cls", [SendErrorClass.NEEDS_TEMPLATE, SendErrorClass.RECIPIENT, SendErrorClass.PERMANENT]
)
def test_the_other_classes_fail_at_once(cls: SendErrorClass) -> None:
    assert decide(SendError(cls, "no")) == Outcome("fail")


def test_only_a_retryable_send_error_is_retried_inside_an_attempt() -> None:
    assert is_retryable(SendError(SendErrorClass.RETRYABLE, "x"))
    assert not is_retryable(SendError(SendErrorClass.RATE_LIMITED, "x"))
    assert not is_retryable(RuntimeError("x"))
