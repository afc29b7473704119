"""One message that cannot be stored loses neither its siblings nor time for other deliveries:
text no database holds is repaired (the raw delivery kept as sent), each message of a failing
delivery succeeds or fails on its own, and a retry waits without holding up the processor."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
import sqlalchemy as sa

import hub.inbound as inbound
from hub import schema
from hub.appkeys import CHANNELS, PROCESSOR
from hub.inbound import InboundProcessor
from hub.testing.fake_channel import sign
from tests.conftest import SECRET, Hub, eventually
from tests.test_edits import message, processed
from tests.test_pipeline import msg

R = schema.raw_events

# A lone high surrogate, as a buggy client cuts an emoji in half: valid JSON, no valid UTF-8.
BAD = (
    b'{"events": ['
    b'{"type": "message", "id": "bad", "from": "alice", "text": "bad \\ud83d emoji", "ts": 1700000000},'
    b'{"type": "message", "id": "nul", "from": "alice", "text": "nul \\u0000 here", "ts": 1700000001},'
    b'{"type": "message", "id": "good", "from": "bob", "text": "fine \\ud83d\\ude00", "ts": 1700000002}'
    b"]}"
)


async def test_text_no_database_holds_is_repaired_and_the_raw_delivery_kept(hub: Hub) -> None:
    resp = await hub.client.post("/webhooks/fk", data=BAD, headers=sign(SECRET, BAD))
    assert resp.status == 200
    await eventually(lambda: processed(hub))
    assert (await message(hub, "bad"))["text"] == "bad \ufffd emoji"
    assert (await message(hub, "nul"))["text"] == "nul \ufffd here"
    assert (await message(hub, "good"))["text"] == "fine 😀"
    async with hub.store.db.read() as conn:
        state, body = (await conn.execute(sa.select(R.c.state, R.c.body))).one()
    assert (state, bytes(body)) == ("done", BAD), "the delivery is kept byte for byte"
    created = [e["data"]["external_id"] for e in await hub.events() if e["type"] == "message.created"]
    assert sorted(created) == ["bad", "good", "nul"]


async def test_a_message_that_cannot_be_stored_keeps_its_siblings(hub: Hub, monkeypatch: Any) -> None:
    await hub.client.app[PROCESSOR].stop()
    real = inbound.apply_messages

    async def poisoned(tx: Any, items: Any) -> None:
        if any(ev.external_id == "poison" for _, ev in items):
            raise RuntimeError("storage refused this one")
        await real(tx, items)

    monkeypatch.setattr(inbound, "apply_messages", poisoned)
    await hub.webhook(msg("poison", who="carl"), msg("sibling", who="dora"))
    proc = InboundProcessor(hub.store, hub.client.app[CHANNELS], max_attempts=2)
    assert await proc.process_pending() == 1
    async with hub.store.db.read() as conn:
        stored = (await conn.scalars(sa.select(schema.messages.c.external_id))).all()
        row = (await conn.execute(sa.select(R.c.state, R.c.attempts, R.c.error, R.c.due_at))).one()
    assert stored == ["sibling"]
    assert (row.state, row.attempts) == ("pending", 1)
    assert "event 0" in row.error and "storage refused this one" in row.error
    assert row.due_at is not None, "retried later, not now"
    assert await proc.process_pending() == 0, "a delivery waiting for its retry is not taken again"
    async with hub.store.db.write() as conn:
        await conn.execute(R.update().values(due_at=None))
    await proc.process_pending()
    async with hub.store.db.read() as conn:
        state, attempts = (await conn.execute(sa.select(R.c.state, R.c.attempts))).one()
        count = await conn.scalar(sa.select(sa.func.count()).select_from(schema.messages))
    assert (state, attempts, count) == ("failed", 2, 1), "the sibling is not stored twice"
    created = [e["data"]["external_id"] for e in await hub.events() if e["type"] == "message.created"]
    assert created == ["sibling"]


async def test_retries_never_hold_up_other_deliveries(hub: Hub, monkeypatch: Any) -> None:
    real_apply = inbound.apply_messages

    async def poisoned(tx: Any, items: Any) -> None:
        if any(ev.external_id.startswith("poison") for _, ev in items):
            raise RuntimeError("storage refused this one")
        await real_apply(tx, items)

    slept: list[float] = []
    real_sleep = asyncio.sleep

    def spy(delay: float, *args: Any) -> Any:
        # Only the inbound pipeline's own waits count, not other workers' (they share asyncio).
        if sys._getframe(1).f_globals.get("__name__") == "hub.inbound":
            slept.append(delay)
        return real_sleep(delay, *args)

    monkeypatch.setattr(inbound, "apply_messages", poisoned)
    monkeypatch.setattr(inbound.asyncio, "sleep", spy)
    for i in range(30):
        assert (await hub.webhook(msg(f"poison-{i}", who=f"p{i}"))).status == 200
    started = time.monotonic()
    for i in range(50):
        assert (await hub.webhook(msg(f"ok-{i}", who=f"u{i}"))).status == 200

    async def all_good() -> bool:
        async with hub.store.db.read() as conn:
            n = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(schema.messages)
                .where(schema.messages.c.external_id.like("ok-%"))
            )
        return n == 50

    await eventually(all_good, within=60)
    took = time.monotonic() - started
    print(f"50 good deliveries behind 30 failing ones: all stored {took:.2f} s after the first was posted")
    processor_sleeps = [d for d in slept if d >= 0.1]
    assert processor_sleeps == [], f"the processor slept {sum(processor_sleeps):.1f} s in its loop"
    async with hub.store.db.read() as conn:
        states = dict((await conn.execute(sa.select(R.c.state, sa.func.count()).group_by(R.c.state))).all())
    assert states.get("done") == 50 and states.get("pending", 0) + states.get("failed", 0) == 30, states


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="hub.inbound")
