"""A stop always stops: a cancel that meets a wake-up, or a library that swallows one cancel, must
not leave a background loop running (a shutdown that hangs is a hub that cannot restart)."""

from __future__ import annotations

import asyncio

from hub.worker import Worker, cancel_and_wait, wait_event


class Looper(Worker):
    task_name = "test-looper"

    def __init__(self) -> None:
        super().__init__()
        self.rounds = 0

    async def run(self) -> None:
        while True:
            self.rounds += 1
            await self.idle(5)


async def test_a_cancel_that_meets_a_wake_up_still_stops_the_worker() -> None:
    # The wake-up and the cancel land in the same loop iteration: with asyncio.wait_for on
    # Python 3.11 the idle returned normally, the cancel was lost and stop() waited for ever.
    for _ in range(50):
        worker = Looper()
        await worker.start()
        await asyncio.sleep(0)
        task = worker._task
        assert task is not None
        worker.notify()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the worker went on after its cancel"
        await worker.stop()


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_the_first() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed += 1  # as a library that turns a cancel into a result would
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], "test", within=0.05), 5)
    assert swallowed == 1
    assert task.cancelled()


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
