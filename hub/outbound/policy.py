"""The outbox's error policy as pure functions: what each ``SendErrorClass`` leads to, and the
backoff. No I/O and no clock here; the worker applies the ``Outcome`` (``hub.outbound.worker``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from hub.channel import HealthState
from hub.errors import SendError, SendErrorClass

__all__ = ["Outcome", "backoff", "is_retryable", "on_send_error"]

Draw = Callable[[float, float], float]
"""Draws a number between two bounds (``random.uniform``; tests pass their own)."""


@dataclass(frozen=True)
class Outcome:
    """What to do with a job whose send failed.

    ``action``: ``retry`` (back to pending after ``delay`` s), ``pause`` (back to pending at once,
    and the channel's sending pauses until an admin fixes its credentials) or ``fail`` (the message
    fails with the error). ``counts``: the attempt counts towards the maximum (a throttle does not).
    ``penalize``: rate-limit keys held back for ``delay`` s. ``health``: the channel's health to
    report, if any.
    """

    action: Literal["retry", "pause", "fail"]
    delay: float = 0.0
    counts: bool = False
    penalize: tuple[str, ...] = ()
    health: HealthState | None = None


def backoff(attempts: int, draw: Draw = random.uniform) -> float:
    """Full-jitter exponential backoff: up to 2^attempts seconds (at least 0.5), capped at 10 minutes."""
    return draw(0.5, min(600.0, 2.0 ** max(attempts, 1)))


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SendError) and exc.error_class is SendErrorClass.RETRYABLE


def on_send_error(
    exc: SendError,
    *,
    attempts: int,
    age: timedelta,
    limit_keys: Sequence[str],
    max_attempts: int,
    max_age: timedelta,
    draw: Draw = random.uniform,
) -> Outcome:
    """The outcome of a failed send, from its class, the job's attempts and age, and the rate-limit
    keys the send drew from (``pair:...`` keys are per recipient)."""
    cls = exc.error_class
    if cls is SendErrorClass.RATE_LIMITED:
        wait = exc.retry_after if exc.retry_after is not None else backoff(attempts, draw)
        # A recipient's throttle holds back that recipient's pair bucket alone; a sender's throttle
        # holds back the sender's buckets. Keys of neither kind: hold back all of them.
        pair = exc.scope == "recipient"
        scoped = tuple(k for k in limit_keys if k.startswith("pair:") == pair) or tuple(limit_keys)
        health = None if pair else HealthState.RATE_LIMITED
        if age > max_age:
            return Outcome("fail", penalize=scoped, delay=wait, health=health)
        return Outcome("retry", delay=wait, counts=False, penalize=scoped, health=health)
    if cls is SendErrorClass.AUTH:
        return Outcome("pause")
    if cls is SendErrorClass.RETRYABLE:
        if attempts >= max_attempts or age > max_age:
            return Outcome("fail")
        return Outcome("retry", delay=backoff(attempts, draw), counts=True, health=HealthState.UNREACHABLE)
    return Outcome("fail")
