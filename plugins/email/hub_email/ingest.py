"""The IMAP ingest loop: every mail in the mailbox handed to the hub's durable inbox exactly once.

The position is the mailbox's UIDVALIDITY and the last UID stored, kept in the hub's storage as the
cursor ``imap:{mailbox}`` = ``"{uidvalidity}:{uid}"`` and saved in the same transaction as each
mail (``Inbox.put(..., cursor=...)``), so a crash between two mails neither skips nor repeats one.

* First start: mail from the last ``backfill_days`` days is fetched (0: only mail arriving from
  now on), and that start date is kept as the cursor ``imap-since:{mailbox}``.
* UIDVALIDITY changed (the server renumbered the mailbox): everything since that start date is
  fetched again. Each mail is stored under the key ``mail:{Message-ID}`` (a mail without one gets
  an id derived from its bytes), so what was stored before is recognised and nothing is doubled.
* Waiting: IDLE where the server offers it, polling every ``poll_interval_seconds`` otherwise.
* Failures: reconnect with jittered exponential backoff (tenacity), reporting ``unreachable`` or
  ``auth_failed`` in the shared health vocabulary, and ``ok`` once connected again. The loop never
  gives up and never disables the channel; a wrong password is retried at most every few minutes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from hub.channel import ChannelContext, HealthState, Inbox

from .imap import ImapAuthError, ImapSession, Selected, imap_date, imap_session
from .mime import message_id_of
from .settings import Settings

__all__ = ["Ingestor", "delivery_key"]

_CHUNK = 25


def delivery_key(data: bytes) -> str:
    """The inbox key of one mail: its Message-ID (the same mail fetched twice has one key)."""
    headers = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
    return f"mail:{message_id_of(headers, data)}"


def _raise_if_cancelled() -> None:
    """Raise the cancellation a library swallowed.

    On Python 3.11, ``asyncio.wait_for`` (which aioimaplib wraps around every call) returns or raises
    the inner result when the task is cancelled just as that result arrives: cancelling the loop
    while the server refuses connections often surfaces as one more ``ConnectionRefusedError``, and
    the retry loop would go on for ever. The task still counts the request (``Task.cancelling()``).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Ingestor:
    """Runs the ingest loop of one channel (see the module docstring)."""

    backoff_multiplier = 1.0
    backoff_max = 300.0

    def __init__(self, settings: Settings, context: ChannelContext) -> None:
        self.settings = settings
        self.context = context
        self.log: logging.Logger = context.log
        self.mailbox = settings.imap_mailbox
        self.cursor_name = f"imap:{self.mailbox}"
        self.since_name = f"imap-since:{self.mailbox}"
        self.connected = asyncio.Event()

    # ---- the loop -----------------------------------------------------------------------------

    def _report(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        health = HealthState.AUTH_FAILED if isinstance(exc, ImapAuthError) else HealthState.UNREACHABLE
        self.connected.clear()
        self.context.set_health(health, f"IMAP: {exc}"[:300] if exc else "IMAP connection failed")

    async def run(self, inbox: Inbox) -> None:
        """Until cancelled: connect, catch up, wait for news, catch up; reconnect on failure."""
        self.context.set_health(HealthState.CONNECTING)
        while True:
            retrying = AsyncRetrying(
                wait=wait_random_exponential(multiplier=self.backoff_multiplier, max=self.backoff_max),
                retry=retry_if_exception_type(Exception),
                before_sleep=self._report,
            )
            async for attempt in retrying:
                with attempt:
                    _raise_if_cancelled()
                    await self._connect_and_watch(inbox)
            # A session that worked and then dropped: start over with a fresh backoff.
            _raise_if_cancelled()
            await asyncio.sleep(min(self.backoff_multiplier, 1.0))

    async def _connect_and_watch(self, inbox: Inbox) -> None:
        async with imap_session(self.settings) as session:
            selected = await session.select(self.mailbox)
            await self.catch_up(session, selected, inbox)
            self.context.set_health(HealthState.OK)
            self.connected.set()
            try:
                while True:
                    await session.wait_for_news(
                        self.settings.idle_seconds
                        if "IDLE" in session.capabilities
                        else self.settings.poll_interval_seconds
                    )
                    await self.catch_up(session, selected, inbox)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Connected before: reconnect at once (the caller), report only if that fails.
                self.log.warning("IMAP session on %s ended: %s", self.settings.imap_host, exc)
                self.connected.clear()

    # ---- catching up ----------------------------------------------------------------------------

    async def catch_up(self, session: ImapSession, selected: Selected, inbox: Inbox) -> int:
        """Store every mail after the cursor; returns how many were new to the hub."""
        stored = await inbox.get_cursor(self.cursor_name)
        validity, last = _split(stored)
        if validity is None:
            uids = await self._first_run(session, selected, inbox)
        elif validity != selected.uidvalidity:
            self.log.warning(
                "mailbox %s has a new UIDVALIDITY (%s, was %s): fetching again since the start date; "
                "mail already stored is recognised by its Message-ID",
                self.mailbox,
                selected.uidvalidity,
                validity,
            )
            since = await self._since(inbox)
            uids = await session.uids("SINCE", imap_date(since))
        else:
            uids = [u for u in await session.uids("UID", f"{last + 1}:*") if u > last]
        if not uids and validity != selected.uidvalidity:
            start = (selected.uidnext or 1) - 1 if validity is None else 0
            await inbox.set_cursor(self.cursor_name, f"{selected.uidvalidity}:{start}")
        return await self._store(session, selected, uids, inbox)

    async def _first_run(self, session: ImapSession, selected: Selected, inbox: Inbox) -> list[int]:
        since = await self._since(inbox)
        if self.settings.backfill_days == 0:
            return []
        return await session.uids("SINCE", imap_date(since))

    async def _since(self, inbox: Inbox) -> date:
        saved = await inbox.get_cursor(self.since_name)
        if saved:
            return date.fromisoformat(saved)
        since = datetime.now(UTC).date() - timedelta(days=self.settings.backfill_days)
        await inbox.set_cursor(self.since_name, since.isoformat())
        return since

    async def _store(self, session: ImapSession, selected: Selected, uids: list[int], inbox: Inbox) -> int:
        new = 0
        for start in range(0, len(uids), _CHUNK):
            for uid, data in await session.fetch(uids[start : start + _CHUNK]):
                stored = await inbox.put(
                    data,
                    headers={
                        "x-imap-mailbox": self.mailbox,
                        "x-imap-uid": str(uid),
                        "x-imap-uidvalidity": str(selected.uidvalidity),
                    },
                    key=delivery_key(data),
                    cursor=(self.cursor_name, f"{selected.uidvalidity}:{uid}"),
                )
                new += int(stored)
        return new

    # ---- the admin's resync -----------------------------------------------------------------------

    async def resync(self, inbox: Inbox, since: date) -> dict[str, int]:
        """Fetch every mail since ``since`` again; mail already stored is skipped by its key."""
        async with imap_session(self.settings) as session:
            selected = await session.select(self.mailbox)
            uids = await session.uids("SINCE", imap_date(since))
            new = 0
            for start in range(0, len(uids), _CHUNK):
                for _uid, data in await session.fetch(uids[start : start + _CHUNK]):
                    new += int(
                        await inbox.put(
                            data, headers={"x-imap-mailbox": selected.mailbox}, key=delivery_key(data)
                        )
                    )
        return {"found": len(uids), "new": new}


def _split(value: str | None) -> tuple[int | None, int]:
    if not value or ":" not in value:
        return None, 0
    validity, _, uid = value.partition(":")
    try:
        return int(validity), int(uid)
    except ValueError:
        return None, 0
