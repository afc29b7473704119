"""The shape every background worker of the hub shares: one task, a wake-up signal, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["Worker", "cancel_and_wait", "wait_event"]

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for ``event`` at most ``seconds``; True if it is set.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when the task is cancelled just as
    the event fires, and the cancel is lost, so a worker's loop would go on after ``stop()``.
    ``asyncio.timeout`` keeps a cancel from outside apart from its own.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], what: str, *, within: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they end; cancel again whichever is still running after
    ``within`` seconds (a library that swallowed the first cancel sees the second), saying which."""
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=within)
        for task in pending:
            log.warning(
                "%s: task %s did not stop within %.0f s of its cancel; cancelling again",
                what,
                task.get_name(),
                within,
            )
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("%s: task %s ended with %r", what, task.get_name(), task.exception())


class Worker:
    """Subclasses implement ``run`` (a loop until cancelled) and call ``idle`` when out of work."""

    task_name = "hub-worker"

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def notify(self, *_: Any) -> None:
        """There may be new work: end the current ``idle`` at once."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task], self.task_name)

    async def idle(self, seconds: float | None) -> None:
        """Wait for ``notify`` (or ``seconds``). A notify that came while working counts."""
        await wait_event(self._wake, seconds)
        self._wake.clear()

    async def run(self) -> None:
        raise NotImplementedError
