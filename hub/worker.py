"""The shape every background worker of the hub shares: one task, a wake-up signal, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["Worker"]


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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def idle(self, seconds: float | None) -> None:
        """Wait for ``notify`` (or ``seconds``). A notify that came while working counts."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def run(self) -> None:
        raise NotImplementedError
