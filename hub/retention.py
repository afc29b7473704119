"""Retention: nothing the hub stores grows without bound.

Every ``retention_interval`` seconds one pass prunes the event log to ``event_retention`` events,
then deletes what is older than its retention (``hub.config.HubSection``):

* raw deliveries processed (or given up on) more than ``raw_delivery_retention_days`` ago: kept
  that long for ``hub replay``; a delivery still pending is never deleted;
* sent outbox jobs, bots' finished deliveries (``hub.bots``), fetched inbound media (rows and
  files), agents' uploads (files) and receipts kept for messages the hub does not know: by default
  as long as the event log that refers to them, i.e. until they are older than the oldest event
  left in the log;
* expired API tokens and refresh tokens (a spent refresh token stays until it expires, so that
  its second use is still recognised and ends the session);
* users' notifications older than ``notification_retention_days``, with their deliveries (one
  still pending, and its notification, stays).

Deletes run in transactions of ``delete_chunk_rows`` rows with a short pause between them, so a
first pass over a large backlog never holds SQLite's write lock (and the webhooks queued on it)
for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.config import HubSection
from hub.events import Store
from hub.models import utcnow
from hub.worker import Worker

__all__ = ["Retention", "RetentionPolicy", "delete_in_chunks"]

log = logging.getLogger("hub.retention")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept; None: as long as the event log."""

    events: int = 1_000_000
    raw_deliveries: timedelta = timedelta(days=30)
    outbox: timedelta | None = None
    media: timedelta | None = None
    uploads: timedelta | None = None
    receipts: timedelta | None = None
    automation_runs: timedelta = timedelta(days=90)
    notifications: timedelta = timedelta(days=90)
    chunk: int = 1000
    pause: float = 0.01

    @classmethod
    def from_config(cls, cfg: HubSection) -> RetentionPolicy:
        def days(value: float | None) -> timedelta | None:
            return None if value is None else timedelta(days=value)

        return cls(
            events=cfg.event_retention,
            raw_deliveries=timedelta(days=cfg.raw_delivery_retention_days),
            outbox=days(cfg.outbox_retention_days),
            media=days(cfg.media_retention_days),
            uploads=days(cfg.upload_retention_days),
            receipts=days(cfg.receipt_retention_days),
            automation_runs=timedelta(days=cfg.automation_run_retention_days),
            notifications=timedelta(days=cfg.notification_retention_days),
            chunk=cfg.delete_chunk_rows,
        )


async def delete_in_chunks(
    store: Store, table: sa.Table, key: sa.Column[Any], *where: Any, chunk: int, pause: float
) -> int:
    """Delete the rows matching ``where``, at most ``chunk`` per transaction; how many went."""
    total = 0
    while True:
        batch = sa.select(key).where(*where).order_by(key).limit(chunk).scalar_subquery()
        async with store.db.write() as conn:
            n = int((await conn.execute(table.delete().where(key.in_(batch)))).rowcount or 0)
        total += n
        if n < chunk:
            return total
        await asyncio.sleep(pause)


class Retention(Worker):
    """The background worker that applies a ``RetentionPolicy`` (one pass per interval)."""

    task_name = "hub-retention"

    def __init__(
        self, store: Store, policy: RetentionPolicy, media_root: Path, uploads_root: Path, interval: float
    ) -> None:
        super().__init__()
        self.store = store
        self.policy = policy
        self.media_root = media_root
        self.uploads_root = uploads_root
        self.interval = interval
        self.last: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            await self.idle(self.interval)
            try:
                self.last = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a retention pass failed; the next one retries")

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass; how many of each kind were deleted."""
        now = now or utcnow()
        p = self.policy
        out = {"events": await self.store.prune_events(p.events, chunk=p.chunk, pause=p.pause)}
        horizon = await self.store.log_horizon()

        def cutoff(keep: timedelta | None) -> datetime | None:
            return now - keep if keep is not None else horizon

        R, OB, P = schema.raw_events, schema.outbox, schema.pending_statuses
        out["raw_deliveries"] = await self._delete(
            R, R.c.id, R.c.received_at < now - p.raw_deliveries, R.c.state != "pending"
        )
        AR, AC = schema.automation_runs, schema.automation_caused
        out["automation_runs"] = await self._delete(AR, AR.c.id, AR.c.created_at < now - p.automation_runs)
        # An event's depth in a rule chain matters only while the event may still be handled.
        oldest = await self._oldest_seq()
        if oldest is not None:
            out["automation_caused"] = await self._delete(AC, AC.c.seq, AC.c.seq < oldest)
        if (before := cutoff(p.outbox)) is not None:
            out["outbox"] = await self._delete(OB, OB.c.id, OB.c.state == "done", OB.c.updated_at < before)
            BD = schema.bot_deliveries
            out["bot_deliveries"] = await self._delete(
                BD, BD.c.id, BD.c.state != "pending", BD.c.updated_at < before
            )
        if (before := cutoff(p.receipts)) is not None:
            out["receipts"] = await self._delete(P, P.c.id, P.c.created_at < before)
        if (before := cutoff(p.media)) is not None:
            out["media"] = await self._delete_media(before)
        if (before := cutoff(p.uploads)) is not None:
            out["uploads"] = await asyncio.to_thread(_delete_uploads, self.uploads_root, before)
        AT, RT = schema.api_tokens, schema.refresh_tokens
        out["tokens"] = await self._delete(AT, AT.c.id, AT.c.expires_at < now)
        out["refresh_tokens"] = await self._delete(RT, RT.c.token_hash, RT.c.expires_at < now)
        N, ND = schema.notifications, schema.notification_deliveries
        old = now - p.notifications
        out["notification_deliveries"] = await self._delete(
            ND, ND.c.id, ND.c.state != "pending", ND.c.created_at < old
        )
        still_pending = sa.select(ND.c.id).where(ND.c.notification_id == N.c.id)
        out["notifications"] = await self._delete(N, N.c.id, N.c.created_at < old, ~sa.exists(still_pending))
        if any(out.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {k}" for k, n in out.items() if n))
        return out

    async def _oldest_seq(self) -> int | None:
        async with self.store.db.read() as conn:
            value = await conn.scalar(sa.select(sa.func.min(schema.events.c.seq)))
        return None if value is None else int(value)

    async def _delete(self, table: sa.Table, key: sa.Column[Any], *where: Any) -> int:
        return await delete_in_chunks(
            self.store, table, key, *where, chunk=self.policy.chunk, pause=self.policy.pause
        )

    async def _delete_media(self, before: datetime) -> int:
        """Finished media jobs last scheduled before ``before``, and their files."""
        J = schema.media_jobs
        total = 0
        while True:
            async with self.store.db.read() as conn:
                rows = (
                    await conn.execute(
                        sa.select(J.c.id, J.c.path)
                        .where(J.c.state.in_(["done", "failed"]), J.c.due_at < before)
                        .order_by(J.c.id)
                        .limit(self.policy.chunk)
                    )
                ).all()
            if not rows:
                return total
            async with self.store.db.write() as conn:
                await conn.execute(J.delete().where(J.c.id.in_([r.id for r in rows])))
            files = [Path(r.path) for r in rows if r.path]
            await asyncio.to_thread(_unlink_all, self.media_root, files)
            total += len(rows)
            if len(rows) < self.policy.chunk:
                return total
            await asyncio.sleep(self.policy.pause)


def _unlink_all(root: Path, files: list[Path]) -> None:
    """Remove each media file (only under the media folder), and its folder once empty."""
    for path in files:
        if not path.resolve().is_relative_to(root.resolve()):
            log.warning("media file %s is outside %s; left alone", path, root)
            continue
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass  # other attachments of the message are still there


def _delete_uploads(folder: Path, before: datetime) -> int:
    """Uploads (the file and its ``.json`` description) last written before ``before``."""
    if not folder.is_dir():
        return 0
    limit = before.timestamp()
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(".json") or entry.stat().st_mtime >= limit:
                continue
            (folder / entry.name.removesuffix(".json")).unlink(missing_ok=True)
            os.unlink(entry.path)
            count += 1
    return count
