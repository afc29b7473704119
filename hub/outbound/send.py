"""One delivery attempt's provider call: a timeout per try, and a few jittered quick retries of a
retryable failure inside the attempt (tenacity); durable backoff across attempts is the policy's."""

from __future__ import annotations

import asyncio
import random

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from hub.channel import Channel
from hub.errors import SendError, SendErrorClass
from hub.models import OutboundMessage, SendReceipt
from hub.outbound.policy import is_retryable

__all__ = ["send_with_retries"]


async def send_with_retries(
    channel: Channel, out: OutboundMessage, *, quick_retries: int, per_try: float
) -> SendReceipt:
    """Send, with ``quick_retries`` jittered retries of a retryable failure inside this attempt.

    Most sends succeed the first time, so that try runs bare: tenacity's bookkeeping per call
    was a tenth of the outbox's CPU per send (profiled). A retryable failure enters tenacity.
    """
    try:
        return await _send_once(channel, out, per_try)
    except SendError as exc:
        if not quick_retries or not is_retryable(exc):
            raise
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(quick_retries),
        # Attempt n of these is try n + 1: its wait is drawn up to 0.2 * 2^n s, capped at 2 s.
        wait=wait_random_exponential(multiplier=0.4, max=2.0),
        retry=retry_if_exception(is_retryable),
        before=_first_wait,
        reraise=True,
    ):
        with attempt:
            return await _send_once(channel, out, per_try)
    raise AssertionError("unreachable")


async def _send_once(channel: Channel, out: OutboundMessage, per_try: float) -> SendReceipt:
    try:
        # asyncio.timeout runs the send in this task; wait_for would start a task per send.
        async with asyncio.timeout(per_try):
            return await channel.send(out)
    except TimeoutError:
        raise SendError(
            SendErrorClass.RETRYABLE,
            f"the provider did not answer within {per_try:.0f} s",
        ) from None


async def _first_wait(state: RetryCallState) -> None:
    """The wait before the first retry (tenacity waits only between its own attempts)."""
    if state.attempt_number == 1:
        await asyncio.sleep(random.uniform(0, 0.2))
