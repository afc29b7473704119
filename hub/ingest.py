"""The ingest loops of pull channels (IMAP): one task per enabled pull channel, kept in step with
the channel instances, and the admin's "resync since DATE" action.

A channel enabled, changed or disabled through the admin API gets its loop started, restarted
with the new settings, or stopped at once, without a restart of the hub. A loop that raises is
restarted after a pause and the channel reported ``unreachable``; a loop is never given up on.
Several processes on one PostgreSQL database run each channel's loop in one of them at a time
(``hub.leader``): the others wait to take over, so a mailbox is not read twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from hub.channel import Channel, HealthState
from hub.channels import ChannelService
from hub.errors import SendError, SendErrorClass
from hub.inbound import ChannelInbox, RawInbox
from hub.leader import key_for, while_leading
from hub.services.errors import Conflict, NotFound, ServiceError
from hub.worker import cancel_and_wait

__all__ = ["IngestRunner", "ProviderFailed", "ResyncUnsupported"]

log = logging.getLogger("hub.ingest")


class ResyncUnsupported(Conflict):
    """The channel is not active, or is not a pull channel that can fetch again."""

    code = "not_supported"


class ProviderFailed(ServiceError):
    """The provider failed while fetching again (answered 502 with its reason)."""

    status = 502

    def __init__(self, exc: SendError) -> None:
        super().__init__(f"the provider failed: {exc.message}")
        self.code = (
            "provider_auth_failed" if exc.error_class is SendErrorClass.AUTH else "provider_unreachable"
        )


class IngestRunner:
    """Runs ``Channel.ingest`` for every active pull channel; ``sync()`` after each channel change."""

    restart_delay = 10.0

    def __init__(self, channels: ChannelService, raw: RawInbox) -> None:
        self.channels = channels
        self.raw = raw
        self._tasks: dict[str, tuple[Channel, asyncio.Task[None]]] = {}
        self._stopped = False

    def sync(self) -> None:
        """Start loops for new pull instances, restart those whose instance changed, stop the rest."""
        if self._stopped:
            return
        wanted = {cid: inst for cid, inst in self.channels.instances.items() if inst.mode == "pull"}
        for cid, (inst, task) in list(self._tasks.items()):
            if wanted.get(cid) is not inst:
                task.cancel()
                del self._tasks[cid]
        for cid, inst in wanted.items():
            if cid not in self._tasks:
                task = asyncio.get_running_loop().create_task(self._run(cid, inst), name=f"hub-ingest-{cid}")
                self._tasks[cid] = (inst, task)

    def running(self) -> list[str]:
        return sorted(cid for cid, (_, task) in self._tasks.items() if not task.done())

    async def _run(self, channel_id: str, inst: Channel) -> None:
        what = f"the ingest loop of channel {channel_id}"
        key = key_for(f"hub-ingest:{channel_id}")
        await while_leading(self.raw.store.db, key, what, lambda: self._loop(channel_id, inst))

    async def _loop(self, channel_id: str, inst: Channel) -> None:
        inbox = ChannelInbox(self.raw, channel_id)
        while True:
            try:
                await inst.ingest(inbox)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "ingest loop of channel %s stopped; restarting in %.0f s", channel_id, self.restart_delay
                )
                self.channels.report_health(channel_id, HealthState.UNREACHABLE, str(exc)[:200])
                await asyncio.sleep(self.restart_delay)

    async def resync(self, channel_id: str, since: date) -> dict[str, int]:
        """Ask a pull channel to fetch everything since ``since`` again (duplicates count once)."""
        if channel_id not in self.channels.rows:
            raise NotFound(f"channel {channel_id!r} does not exist")
        inst = self.channels.get(channel_id)
        if inst is None:
            raise ResyncUnsupported("the channel is disabled or its plugin is not installed")
        if inst.mode != "pull" or not inst.supports("resync"):
            raise ResyncUnsupported(f"channels of type {inst.type_name!r} cannot fetch again")
        try:
            return await inst.resync(ChannelInbox(self.raw, channel_id), since)
        except SendError as exc:
            raise ProviderFailed(exc) from None

    async def stop(self) -> None:
        self._stopped = True
        await cancel_and_wait([task for _, task in self._tasks.values()], "the ingest loops")
        self._tasks.clear()
