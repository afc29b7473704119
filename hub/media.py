"""Inbound media: attachments are recorded at once as ``pending``; this worker fetches each one
through its channel, verifies it, stores it, and publishes the message again with a download URL.
A failed fetch is retried with backoff and never touches the message itself.

Jobs are claimed before they are fetched: the claim moves ``due_at`` a lease ahead (a process that
dies mid-fetch leaves the job to be fetched again when the lease runs out) and counts the attempt;
on PostgreSQL it skips rows another process is claiming (``SKIP LOCKED``). Every later write about
the job is conditional on the attempt count the claim set, so a job is fetched by one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.channels import ChannelService
from hub.events import Store
from hub.models import utcnow
from hub.records import message_dict
from hub.worker import Worker

__all__ = ["MediaStore", "MediaWorker"]

log = logging.getLogger("hub.media")
J = schema.media_jobs
M = schema.messages


class MediaStore:
    """Local files under ``data_dir/media``; the interface is small so another backend can replace it."""

    def __init__(self, root: str | Path, store: Store) -> None:
        self.root = Path(root)
        self.store = store

    async def save(
        self, message_id: str, idx: int, data: bytes, *, sha256_hex: str = "", expected: str | None = None
    ) -> tuple[str, str]:
        """Verify and write one file; (path, sha256 hex). Hashing and disk work run in a thread: a
        file of many megabytes would otherwise hold the event loop (and every webhook) meanwhile."""
        return await asyncio.to_thread(self._save, message_id, idx, data, sha256_hex, expected)

    def _save(
        self, message_id: str, idx: int, data: bytes, sha256_hex: str, expected: str | None
    ) -> tuple[str, str]:
        digest = sha256_hex or hashlib.sha256(data).hexdigest()
        if expected and digest != expected.lower():
            raise ValueError("the fetched file does not match the provider's sha256")
        folder = self.root / message_id[-2:] / message_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / str(idx)
        path.write_bytes(data)
        return str(path), digest

    async def path_for(self, message_id: str, idx: int) -> str | None:
        """The stored file of a message's attachment: fetched inbound media, or an agent's upload."""
        async with self.store.db.read() as conn:
            path = await conn.scalar(
                sa.select(J.c.path).where(J.c.message_id == message_id, J.c.idx == idx, J.c.state == "done")
            )
            if not path:
                content = await conn.scalar(
                    sa.select(M.c.content).where(M.c.id == message_id, M.c.direction == "outbound")
                )
                atts = (content or {}).get("attachments", [])
                path = atts[idx].get("path") if 0 <= idx < len(atts) else None
        if not path or not await asyncio.to_thread(Path(path).exists):
            return None
        return str(path)


class MediaWorker(Worker):
    task_name = "hub-media"

    def __init__(
        self,
        store: Store,
        channels: ChannelService,
        media: MediaStore,
        public_url: str,
        *,
        max_attempts: int = 8,
        lease: float = 120.0,
    ) -> None:
        super().__init__()
        self.lease = lease
        self.store = store
        self.channels = channels
        self.media = media
        self.public_url = public_url
        self.max_attempts = max_attempts

    async def run(self) -> None:
        while True:
            try:
                n = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media worker failed")
                n = 0
            if n == 0:
                await self.idle(2.0)

    async def run_due(self, limit: int = 20) -> int:
        jobs = await self.claim(limit)
        await asyncio.gather(*(self.fetch(j) for j in jobs))
        return len(jobs)

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` due jobs: lease them for ``lease`` seconds and count the attempt."""
        active = list(self.channels.instances)
        if not active:
            return []
        now = utcnow()
        due = (
            sa.select(J)
            .where(J.c.state == "pending", J.c.due_at <= now, J.c.channel_id.in_(active))
            .order_by(J.c.due_at)
            .limit(limit)
        )
        if not self.store.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        async with self.store.db.write() as conn:
            jobs = [dict(j) for j in (await conn.execute(due)).mappings()]
            for job in jobs:
                job["attempts"] += 1
                await conn.execute(
                    J.update()
                    .where(J.c.id == job["id"])
                    .values(attempts=job["attempts"], due_at=now + timedelta(seconds=self.lease))
                )
        return jobs

    async def fetch(self, job: dict[str, Any]) -> None:
        channel = self.channels.get(job["channel_id"])
        if channel is None:
            return
        async with self.store.db.read() as conn:
            msg = (await conn.execute(sa.select(M).where(M.c.id == job["message_id"]))).mappings().one()
        atts = list((msg["content"] or {}).get("attachments", []))
        if job["idx"] >= len(atts):  # the message was deleted meanwhile (a tombstone has no files)
            return
        att = atts[job["idx"]]
        try:
            content = await channel.fetch_media(att.get("external_id") or "", att.get("source_url"))
            path, digest = await self.media.save(
                msg["id"],
                job["idx"],
                content.data,
                sha256_hex=content.sha256_hex,
                expected=att.get("sha256"),
            )
        except Exception as exc:
            attempts = job["attempts"]  # this one counted when the job was claimed
            state = "failed" if attempts >= self.max_attempts else "pending"
            log.warning("media %s/%s fetch failed (attempt %d): %s", msg["id"], job["idx"], attempts, exc)
            delay = random.uniform(1, min(600, 2**attempts * 2))
            async with self.store.tx() as tx:
                claimed = await tx.conn.execute(
                    J.update()
                    .where(J.c.id == job["id"], J.c.state == "pending", J.c.attempts == attempts)
                    .values(state=state, error=str(exc)[:500], due_at=utcnow() + timedelta(seconds=delay))
                )
                if claimed.rowcount and state == "failed":
                    await self._update_attachment(tx, msg["id"], job["idx"], {"state": "failed"})
            return
        url = f"{self.public_url}/api/v1/attachments/{msg['id']}/{job['idx']}"
        async with self.store.tx() as tx:
            claimed = await tx.conn.execute(
                # Conditional: a message deleted meanwhile keeps its job "deleted", its file
                # unserved; a claim that ran out (this process stalled) leaves it to the next one.
                J.update()
                .where(J.c.id == job["id"], J.c.state == "pending", J.c.attempts == job["attempts"])
                .values(state="done", path=path, error=None)
            )
            if not claimed.rowcount:
                return
            await self._update_attachment(
                tx,
                msg["id"],
                job["idx"],
                {
                    "state": "ready",
                    "url": url,
                    "size": len(content.data),
                    "mime_type": att.get("mime_type") or content.mime_type,
                    "sha256": digest,
                },
            )

    async def _update_attachment(self, tx: Any, message_id: str, idx: int, changes: dict[str, Any]) -> None:
        msg = dict((await tx.conn.execute(sa.select(M).where(M.c.id == message_id))).mappings().one())
        content = dict(msg["content"] or {})
        atts = [dict(a) for a in content.get("attachments", [])]
        if idx >= len(atts):  # deleted while the file was being fetched: keep the tombstone empty
            return
        atts[idx].update(changes)
        content["attachments"] = atts
        now = utcnow()
        await tx.conn.execute(M.update().where(M.c.id == message_id).values(content=content, updated_at=now))
        msg.update(content=content, updated_at=now)
        await tx.emit(
            "message.updated",
            message_dict(msg),
            channel_id=msg["channel_id"],
            conversation_id=msg["conversation_id"],
        )
