"""An overloaded hub refuses new webhooks with 503 and ``Retry-After`` before storing anything,
instead of growing its heap; everything it answered 200 to is kept and processed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema
from hub.appkeys import RAW_INBOX
from hub.db import Database
from hub.events import EventBus, Store
from hub.inbound import Overloaded, RawInbox
from hub.migrate import upgrade
from tests.conftest import Hub


async def test_the_accept_queue_is_bounded(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await upgrade(db)
    inbox = RawInbox(Store(db, EventBus()), max_queued=3)
    release = asyncio.Event()
    real_write = inbox._write

    async def slow_write(batch: Sequence[Any]) -> list[int | None]:
        await release.wait()  # the database is slow: deliveries pile up in the queue
        return await real_write(batch)

    inbox._write = slow_write  # type: ignore[method-assign]
    await inbox.start()
    try:
        first = asyncio.create_task(inbox.store_raw("ch", "k0", b"{}", {}))
        await asyncio.sleep(0.05)  # the writer took it and waits on the database
        queued = [asyncio.create_task(inbox.store_raw("ch", f"k{i}", b"{}", {})) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="3 deliveries are waiting to be stored"):
            await inbox.store_raw("ch", "k4", b"{}", {})
        release.set()
        ids = await asyncio.gather(first, *queued)
        assert all(ids) and len(set(ids)) == 4
        assert await inbox.store_raw("ch", "k4", b"{}", {})  # room again
    finally:
        await inbox.stop()
        await db.dispose()


async def test_webhooks_past_the_pending_bound_answer_503_and_nothing_accepted_is_lost(
    make_hub: Any, sqlite_url: str
) -> None:
    from tests.test_pipeline import msg

    hub: Hub = await make_hub(sqlite_url, max_pending_deliveries=3, run_workers=False)
    await hub.create_channel()
    answers = [await hub.webhook(msg(f"m{i}", text=f"n{i}")) for i in range(5)]
    assert [r.status for r in answers] == [200, 200, 200, 503, 503]
    refused = await answers[3].json()
    assert refused["error"]["code"] == "overloaded"
    assert answers[3].headers["Retry-After"] == "5"
    async with hub.store.db.read() as conn:
        stored = await conn.scalar(sa.select(sa.func.count()).select_from(schema.raw_events))
    assert stored == 3
    inbox = hub.client.app[RAW_INBOX]
    assert inbox.backlog.pending == 3
