"""Group commit: one transaction for writes that arrive together, and every caller gets an answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hub.groupcommit import GroupCommit


class FakeStore:
    def __init__(self) -> None:
        self.transactions = 0

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[None]:
        self.transactions += 1
        yield None


async def test_concurrent_writes_share_a_transaction_and_a_bad_item_fails_alone() -> None:
    store = FakeStore()
    written: list[list[int]] = []
    gate = asyncio.Event()

    async def write(tx: Any, items: list[int]) -> None:
        await gate.wait()
        if 13 in items and len(items) == 1:
            raise ValueError("unlucky")
        if 13 in items:
            raise ValueError("batch refused")
        written.append(items)

    gc: GroupCommit[int] = GroupCommit(store, write)  # type: ignore[arg-type]
    first = asyncio.create_task(gc.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(gc.submit(i)) for i in (2, 13, 4)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], ValueError) and str(results[2]) == "unlucky"
    assert written == [[1], [2], [4]]  # the batch of three failed, then went one by one


async def test_a_stopped_writer_answers_everyone_waiting() -> None:
    never = asyncio.Event()

    async def write(tx: Any, items: list[int]) -> None:
        await never.wait()

    gc: GroupCommit[int] = GroupCommit(FakeStore(), write)  # type: ignore[arg-type]
    waiting = [asyncio.create_task(gc.submit(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert gc._task is not None
    gc._task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
    assert all(isinstance(r, (RuntimeError, asyncio.CancelledError)) for r in results), results
    with pytest.raises(asyncio.CancelledError):
        await gc._task
