"""Sequence numbers handed out by ``Tx.emit_many`` are the ones stored, in order, on both databases,
and never reused after the newest events were pruned."""

from __future__ import annotations

import json

import sqlalchemy as sa

from hub import schema
from hub.db import Database
from hub.events import EventBus, Store
from hub.migrate import upgrade


async def _stored(store: Store) -> list[tuple[int, str, int]]:
    async with store.db.read() as conn:
        rows = await conn.execute(sa.select(schema.events.c.seq, schema.events.c.type, schema.events.c.data))
        return [(seq, t, json.loads(data)["i"]) for seq, t, data in rows]


async def test_emitted_seqs_are_the_stored_ones_in_order(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    store = Store(db, EventBus())
    published: list[int] = []
    store.bus.observers.append(lambda ev: published.append(ev.seq))
    handed: list[tuple[int, str, int]] = []
    for batch in range(3):
        async with store.tx() as tx:
            events = await tx.emit_many(
                [(f"t.{batch}", {"i": i}, None, None) for i in range(batch * 10, batch * 10 + 7)]
            )
            handed.extend((ev.seq, ev.type, ev.data["i"]) for ev in events)
            one = await tx.emit("t.single", {"i": 100 + batch})
            handed.append((one.seq, one.type, 100 + batch))
    assert await _stored(store) == sorted(handed)
    assert [s for s, _, _ in handed] == sorted(s for s, _, _ in handed)
    assert published == [s for s, _, _ in handed]
    # Prune everything; the next event still gets a number above every one handed out.
    last = handed[-1][0]
    await store.prune_events(keep=0)
    async with store.tx() as tx:
        (ev,) = await tx.emit_many([("t.after", {"i": 0}, None, None)])
    assert ev.seq == last + 1
    assert await _stored(store) == [(last + 1, "t.after", 0)]
    await db.dispose()
