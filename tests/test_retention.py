"""Retention: the event log is pruned in bounded chunks, and what outlived its retention goes
(rows and files) while everything newer stays. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.db import Database
from hub.events import EventBus, Store
from hub.migrate import upgrade
from hub.models import utcnow
from hub.retention import Retention, RetentionPolicy

E = schema.events


async def _store(url: str) -> Store:
    db = Database(url)
    await upgrade(db)
    return Store(db, EventBus())


def _watch_statements(db: Database) -> list[tuple[str, int]]:
    """(first words of each statement, rows it touched), in execution order."""
    seen: list[tuple[str, int]] = []

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        words = " ".join(statement.split()[:3]).upper()
        seen.append((words, cursor.rowcount))

    sa.event.listen(db.engine.sync_engine, "after_cursor_execute", after)
    return seen


async def _count(store: Store, table: sa.Table) -> int:
    async with store.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_a_large_event_log_is_pruned_in_bounded_chunks_while_others_write(database_url: str) -> None:
    store = await _store(database_url)
    for start in range(0, 10_500, 1500):
        async with store.tx() as tx:
            await tx.emit_many(
                [("t.x", {"i": i}, None, None) for i in range(start, min(start + 1500, 10_500))]
            )
    seen = _watch_statements(store.db)
    writes = 0

    async def webhook_like_writes() -> None:
        nonlocal writes
        while True:
            async with store.tx() as tx:
                await tx.emit("t.live", {})
            writes += 1
            await asyncio.sleep(0)

    writer = asyncio.create_task(webhook_like_writes())
    try:
        deleted = await store.prune_events(keep=1000, chunk=1000, pause=0.005)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    # The live writer may commit a few events before the prune takes its cutoff (on PostgreSQL it
    # does): those are older than the newest 1,000 too.
    assert 9_500 <= deleted <= 9_500 + writes, (deleted, writes)
    deletes = [(i, n) for i, (words, n) in enumerate(seen) if words.startswith("DELETE FROM EVENTS")]
    assert len(deletes) == -(-deleted // 1000), deletes
    assert all(0 < n <= 1000 for _, n in deletes), deletes
    # Other writers got the lock between the chunks, not only after the whole prune.
    first, last = deletes[0][0], deletes[-1][0]
    between = [w for w, _ in seen[first:last] if w.startswith("INSERT INTO EVENTS")]
    assert between, "no other write committed while the log was being pruned"
    assert await store.pruned_through() == deleted  # seqs 1..deleted went, the newest stayed
    async with store.db.read() as conn:
        oldest = await conn.scalar(sa.select(sa.func.min(E.c.seq)))
    assert oldest == deleted + 1
    await store.db.dispose()


async def _conversation(store: Store, n_messages: int) -> list[str]:
    now = utcnow()
    async with store.db.write() as conn:
        await conn.execute(
            schema.contacts.insert().values(id="ct1", channel_id="ch", created_at=now, updated_at=now)
        )
        await conn.execute(
            schema.conversations.insert().values(
                id="cv1",
                channel_id="ch",
                contact_id="ct1",
                thread_key="",
                status="open",
                custom_attributes={},
                inbound_count=0,
                created_at=now,
                updated_at=now,
            )
        )
        ids = [f"msg{i}" for i in range(n_messages)]
        await conn.execute(
            schema.messages.insert(),
            [
                {
                    "id": mid,
                    "conversation_id": "cv1",
                    "channel_id": "ch",
                    "direction": "outbound",
                    "kind": "text",
                    "content": {},
                    "reactions": [],
                    "sender": {},
                    "status": "sent",
                    "status_at": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for mid in ids
            ],
        )
    return ids


async def test_rows_and_files_past_their_retention_go_and_newer_ones_stay(
    database_url: str, tmp_path: Path
) -> None:
    store = await _store(database_url)
    now = utcnow()
    old, recent = now - timedelta(days=10), now - timedelta(hours=12)
    # The event log: 30 old events, then 10 recent ones; keeping 10 puts its horizon at `recent`.
    async with store.db.write() as conn:
        await conn.execute(
            E.insert(),
            [{"type": "t", "data": "{}", "created_at": old} for _ in range(30)]
            + [{"type": "t", "data": "{}", "created_at": recent} for _ in range(10)],
        )
    msgs = await _conversation(store, 5)
    media_root, uploads = tmp_path / "media", tmp_path / "uploads"
    files = {}
    for name in ("old", "new"):
        f = media_root / "xx" / f"msg-{name}" / "0"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"media")
        files[name] = f
    R, O, J, P = schema.raw_events, schema.outbox, schema.media_jobs, schema.pending_statuses  # noqa: E741
    raw = {"channel_id": "ch", "body": b"{}", "headers": {}, "attempts": 0}
    async with store.db.write() as conn:
        await conn.execute(
            R.insert(),
            [
                {**raw, "dedupe_key": "old-done", "received_at": now - timedelta(days=31), "state": "done"},
                {
                    **raw,
                    "dedupe_key": "old-failed",
                    "received_at": now - timedelta(days=40),
                    "state": "failed",
                },
                {
                    **raw,
                    "dedupe_key": "old-pending",
                    "received_at": now - timedelta(days=40),
                    "state": "pending",
                },
                {**raw, "dedupe_key": "new-done", "received_at": now - timedelta(days=29), "state": "done"},
            ],
        )
        job = {"channel_id": "ch", "attempts": 1, "due_at": old, "created_at": old}
        await conn.execute(
            O.insert(),
            [
                {**job, "message_id": msgs[0], "state": "done", "updated_at": old},
                {**job, "message_id": msgs[1], "state": "done", "updated_at": now},
                {**job, "message_id": msgs[2], "state": "pending", "updated_at": old},
                {**job, "message_id": msgs[3], "state": "failed", "updated_at": old},
            ],
        )
        await conn.execute(
            J.insert(),
            [
                {"message_id": msgs[0], "idx": 0, "channel_id": "ch", "state": "done", "attempts": 1,
                 "due_at": old, "path": str(files["old"])},
                {"message_id": msgs[1], "idx": 0, "channel_id": "ch", "state": "done", "attempts": 1,
                 "due_at": now, "path": str(files["new"])},
                {"message_id": msgs[2], "idx": 0, "channel_id": "ch", "state": "pending", "attempts": 0,
                 "due_at": old, "path": None},
            ],
        )  # fmt: skip
        await conn.execute(
            P.insert(),
            [
                {"channel_id": "ch", "external_id": "x-old", "update": {}, "created_at": old},
                {"channel_id": "ch", "external_id": "x-new", "update": {}, "created_at": now},
            ],
        )
    uploads.mkdir()
    for name, when in (("up_old", old), ("up_new", now)):
        for path in (uploads / name, uploads / f"{name}.json"):
            path.write_text("{}")
            os.utime(path, (when.timestamp(), when.timestamp()))

    worker = Retention(store, RetentionPolicy(events=10, chunk=2, pause=0), media_root, uploads, interval=300)
    # Before the log is ever pruned nothing it refers to goes; the raw deliveries' 30 days apply.
    counts = await worker.run_once(now)

    async def keys(table: sa.Table, column: sa.Column[Any]) -> set[Any]:
        async with store.db.read() as conn:
            return set(await conn.scalars(sa.select(column)))

    assert counts["events"] == 30
    assert counts["raw_deliveries"] == 2
    assert await keys(R, R.c.dedupe_key) == {"old-pending", "new-done"}
    assert await keys(O, O.c.message_id) == {msgs[1], msgs[2], msgs[3]}  # only sent jobs go
    assert await keys(J, J.c.message_id) == {msgs[1], msgs[2]}
    assert not files["old"].exists() and not files["old"].parent.exists()
    assert files["new"].read_bytes() == b"media"
    assert await keys(P, P.c.external_id) == {"x-new"}
    assert sorted(p.name for p in uploads.iterdir()) == ["up_new", "up_new.json"]
    assert await _count(store, E) == 10
    # A second pass finds nothing more.
    again = await worker.run_once(now)
    assert not any(again.values()), again
    await store.db.dispose()


async def test_explicit_retentions_apply_before_the_log_is_ever_pruned(
    database_url: str, tmp_path: Path
) -> None:
    store = await _store(database_url)
    now = utcnow()
    P = schema.pending_statuses
    async with store.db.write() as conn:
        await conn.execute(
            P.insert(),
            [
                {
                    "channel_id": "ch",
                    "external_id": "x-3d",
                    "update": {},
                    "created_at": now - timedelta(days=3),
                },
                {
                    "channel_id": "ch",
                    "external_id": "x-1d",
                    "update": {},
                    "created_at": now - timedelta(days=1),
                },
            ],
        )
    policy = RetentionPolicy(receipts=timedelta(days=2))
    worker = Retention(store, policy, tmp_path / "media", tmp_path / "uploads", interval=300)
    counts = await worker.run_once(now)
    assert counts["receipts"] == 1 and "outbox" not in counts  # the log was never pruned
    async with store.db.read() as conn:
        assert set(await conn.scalars(sa.select(P.c.external_id))) == {"x-1d"}
    await store.db.dispose()


async def test_the_automation_run_log_is_kept_its_days_and_chain_depths_go_with_the_log(
    database_url: str, tmp_path: Path
) -> None:
    """Runs older than ``automation_run_retention_days`` go, newer ones stay (long enough to debug,
    not a handful); the depth of an event in a rule chain goes once the event left the log."""
    store = await _store(database_url)
    now = utcnow()
    AR, AC = schema.automation_runs, schema.automation_caused
    async with store.tx() as tx:
        events = await tx.emit_many([("t.x", {"i": i}, None, None) for i in range(5)])
        rows = [
            {
                "id": f"run_{age:03d}",
                "rule_id": "ar_1",
                "rule_version": 1,
                "trigger": "message_created",
                "depth": 0,
                "mode": "live",
                "outcome": "applied",
                "conditions": [],
                "actions": [],
                "created_at": now - timedelta(days=age),
            }
            for age in (0, 30, 89, 91, 400)
        ]
        await tx.conn.execute(AR.insert(), rows)
        await tx.conn.execute(AC.insert(), [{"seq": e.seq, "depth": 1, "rule_id": "ar_1"} for e in events])
    await store.prune_events(keep=2, chunk=10, pause=0)
    policy = RetentionPolicy(events=2, automation_runs=timedelta(days=90))
    worker = Retention(store, policy, tmp_path / "media", tmp_path / "uploads", interval=300)
    counts = await worker.run_once(now)
    assert counts["automation_runs"] == 2 and counts["automation_caused"] == 3
    async with store.db.read() as conn:
        assert set(await conn.scalars(sa.select(AR.c.id))) == {"run_000", "run_030", "run_089"}
        assert set(await conn.scalars(sa.select(AC.c.seq))) == {e.seq for e in events[-2:]}


async def test_expired_tokens_and_old_notifications_go_and_pending_ones_stay(
    database_url: str, tmp_path: Path
) -> None:
    store = await _store(database_url)
    now = utcnow()
    old, recent = now - timedelta(days=100), now - timedelta(days=1)
    AT, RT = schema.api_tokens, schema.refresh_tokens
    N, ND = schema.notifications, schema.notification_deliveries
    async with store.db.write() as conn:
        await conn.execute(
            schema.users.insert().values(
                id="u1", email="u1@example.com", role="agent", active=True, created_at=old
            )
        )
        await conn.execute(
            AT.insert(),
            [
                {
                    "id": "t-expired",
                    "user_id": "u1",
                    "token_hash": "h1",
                    "created_at": old,
                    "expires_at": now - timedelta(minutes=1),
                },
                {
                    "id": "t-live",
                    "user_id": "u1",
                    "token_hash": "h2",
                    "created_at": old,
                    "expires_at": now + timedelta(hours=1),
                },
                {"id": "t-cli", "user_id": "u1", "token_hash": "h3", "created_at": old, "expires_at": None},
            ],
        )
        await conn.execute(
            RT.insert(),
            [
                {
                    "token_hash": "r-expired",
                    "user_id": "u1",
                    "family_id": "f",
                    "created_at": old,
                    "expires_at": now - timedelta(seconds=1),
                    "used_at": old,
                },
                # spent but not expired: kept, so a second use is still recognised
                {
                    "token_hash": "r-spent",
                    "user_id": "u1",
                    "family_id": "f",
                    "created_at": recent,
                    "expires_at": now + timedelta(days=1),
                    "used_at": recent,
                },
            ],
        )

        def note(nid: str, when: datetime) -> dict[str, Any]:
            return {
                "id": nid,
                "user_id": "u1",
                "event": "assigned",
                "title": "t",
                "data": {},
                "in_app": True,
                "created_at": when,
            }

        await conn.execute(
            N.insert(), [note("n-old", old), note("n-old-pending", old), note("n-new", recent)]
        )
        await conn.execute(
            ND.insert(),
            [
                {"notification_id": nid, "notifier": "email", "state": state, "attempts": 1,
                 "due_at": when, "created_at": when, "updated_at": when}
                for nid, state, when in (
                    ("n-old", "sent", old), ("n-old-pending", "pending", old), ("n-new", "sent", recent)
                )
            ],
        )  # fmt: skip
    worker = Retention(store, RetentionPolicy(), tmp_path / "media", tmp_path / "uploads", interval=300)
    counts = await worker.run_once(now)
    async with store.db.read() as conn:
        assert set(await conn.scalars(sa.select(AT.c.id))) == {"t-live", "t-cli"}
        assert set(await conn.scalars(sa.select(RT.c.token_hash))) == {"r-spent"}
        assert set(await conn.scalars(sa.select(N.c.id))) == {"n-old-pending", "n-new"}
        assert set(await conn.scalars(sa.select(ND.c.notification_id))) == {"n-old-pending", "n-new"}
    assert (counts["tokens"], counts["refresh_tokens"], counts["notifications"]) == (1, 1, 1)
    again = await worker.run_once(now)
    assert not any(again.values()), again
    await store.db.dispose()


async def test_finished_bot_deliveries_go_and_pending_ones_stay(database_url: str, tmp_path: Path) -> None:
    store = await _store(database_url)
    now = utcnow()
    BD = schema.bot_deliveries

    def row(seq: int, state: str, age: timedelta) -> dict[str, Any]:
        at = now - age
        return {
            "bot_id": "bot_1",
            "conversation_id": "cv_1",
            "seq": seq,
            "payload": {},
            "state": state,
            "attempts": 1,
            "due_at": at,
            "created_at": at,
            "updated_at": at,
        }

    async with store.db.write() as conn:
        await conn.execute(
            BD.insert(),
            [
                row(1, "delivered", timedelta(days=3)),
                row(2, "failed", timedelta(days=3)),
                row(3, "pending", timedelta(days=3)),
                row(4, "delivered", timedelta(hours=1)),
            ],
        )
    policy = RetentionPolicy(outbox=timedelta(days=2))
    worker = Retention(store, policy, tmp_path / "media", tmp_path / "uploads", interval=300)
    counts = await worker.run_once(now)
    assert counts["bot_deliveries"] == 2
    async with store.db.read() as conn:
        assert set(await conn.scalars(sa.select(BD.c.seq))) == {3, 4}
    await store.db.dispose()
