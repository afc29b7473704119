"""Group commit: writes that arrive while a commit is running are committed together.

On SQLite one transaction writes at a time, and a transaction that awaits several statements
holds the lock across many turns of a busy event loop; committing many callers' writes in one
transaction turns that queue into one short hold. Each caller still learns its own outcome: when
a batch fails, its items are written one by one, so a bad item fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from hub.events import Store, Tx

__all__ = ["GroupCommit"]

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, store: Store, write: Callable[[Tx, list[T]], Awaitable[None]]) -> None:
        self.store = store
        self.write = write
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write ``item`` (with whatever else is waiting); returns once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            await self._flush_all(batch)
        except BaseException as exc:
            # Cancelled (shutdown) or broken: no caller may wait forever for an answer.
            for _, future in batch + self._queue:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError("writer stopped")
                    )
            self._queue = []
            raise

    async def _flush_all(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        while self._queue:
            batch[:] = self._queue
            self._queue = []
            if len(batch) > 1:
                try:
                    await self._commit([item for item, _ in batch])
                except Exception:
                    pass  # written one by one below, so each caller gets its own answer
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
                    continue
            for item, future in batch:
                try:
                    await self._commit([item])
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(None)

    async def _commit(self, items: list[T]) -> None:
        async with self.store.tx() as tx:
            await self.write(tx, items)
