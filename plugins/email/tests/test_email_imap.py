"""The ingest loop, resync, Sent copies, media and health against a real Dovecot (and aiosmtpd).

Each test starts its own Dovecot on a free port with a throwaway maildir (``dovecot.py``); where
Dovecot is not installed they skip and say how to install it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from dovecot import PASSWORD, USER, Dovecot
from email_support import IMAP_PASSWORD, LOG, eventually, load, make_mail, make_settings
from hub_email import EmailChannel
from hub_email.ingest import delivery_key
from smtp_server import SmtpServer, free_port

from hub.channel import HealthState
from hub.errors import SendError, SendErrorClass
from hub.models import ContactRef, MessageKind, OutboundMessage
from hub.testing.pytest_plugin import RecordingContext

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class MemoryInbox:
    """The ``hub.channel.Inbox`` contract in memory: keys dedupe, cursors saved with each item."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.cursors: dict[str, str] = {}
        self.puts = 0

    async def put(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> bool:
        self.puts += 1
        k = key or hashlib.sha256(body).hexdigest()
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        if k in self.items:
            return False
        self.items[k] = body
        return True

    async def get_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def set_cursor(self, name: str, value: str) -> None:
        self.cursors[name] = value


def mail(n: int) -> bytes:
    return make_mail(
        f"<m{n}@customer.example>", f"Question {n}", f"Body of mail {n}.", sender=f"c{n}@customer.example"
    )


Factory = Callable[..., EmailChannel]


@pytest.fixture
def make_channel(http: httpx.AsyncClient, dovecot: Dovecot) -> Factory:
    def factory(**overrides: Any) -> EmailChannel:
        values: dict[str, Any] = {
            "imap_port": dovecot.port,
            "imap_username": USER,
            "imap_password": PASSWORD,
            "smtp_port": free_port(),
            "timeout_seconds": 10,
            "poll_interval_seconds": 1,
        }
        values.update(overrides)
        channel = EmailChannel("mail-1", make_settings(**values), RecordingContext(http=http, log=LOG))
        channel.ingestor.backoff_multiplier = 0.1
        channel.ingestor.backoff_max = 0.5
        return channel

    return factory


async def run_loop(channel: EmailChannel, inbox: MemoryInbox) -> asyncio.Task[None]:
    task = asyncio.create_task(channel.ingest(inbox))
    await asyncio.wait_for(channel.ingestor.connected.wait(), 30)
    return task


async def stop_loop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def health(channel: EmailChannel) -> list[HealthState]:
    context = channel.context
    assert isinstance(context, RecordingContext)
    return [state for state, _ in context.health]


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
async def test_loop_ingests_existing_and_new_mail_once(http: httpx.AsyncClient, idle: bool) -> None:
    server = Dovecot(idle=idle).start()
    try:
        server.deliver(mail(1))
        settings = make_settings(
            imap_port=server.port, imap_password=PASSWORD, timeout_seconds=10, poll_interval_seconds=1
        )
        channel = EmailChannel("mail-1", settings, RecordingContext(http=http, log=LOG))
        inbox = MemoryInbox()
        task = await run_loop(channel, inbox)
        assert list(inbox.items) == ["mail:<m1@customer.example>"]
        server.deliver(mail(2))
        await eventually(lambda: len(inbox.items) == 2)
        assert inbox.puts == 2, "a mail was handed over twice"
        validity = server.uidvalidity()
        assert inbox.cursors["imap:INBOX"] == f"{validity}:2"
        assert health(channel)[0] is HealthState.CONNECTING
        assert HealthState.OK in health(channel)
        await stop_loop(task)
    finally:
        server.close()


async def test_mail_delivered_while_stopped_arrives_once(dovecot: Dovecot, make_channel: Factory) -> None:
    inbox = MemoryInbox()
    dovecot.deliver(mail(1))
    task = await run_loop(make_channel(), inbox)
    await stop_loop(task)
    dovecot.deliver(mail(2))
    dovecot.deliver(mail(3))
    task = await run_loop(make_channel(), inbox)
    assert sorted(inbox.items) == [f"mail:<m{n}@customer.example>" for n in (1, 2, 3)]
    assert inbox.puts == 3
    await stop_loop(task)


async def test_backfill_zero_takes_only_new_mail(dovecot: Dovecot, make_channel: Factory) -> None:
    dovecot.deliver(mail(1))
    inbox = MemoryInbox()
    task = await run_loop(make_channel(backfill_days=0), inbox)
    assert inbox.items == {}
    dovecot.deliver(mail(2))
    await eventually(lambda: len(inbox.items) == 1)
    assert list(inbox.items) == ["mail:<m2@customer.example>"]
    await stop_loop(task)


async def test_uidvalidity_change_resyncs_without_duplicates(dovecot: Dovecot, make_channel: Factory) -> None:
    inbox = MemoryInbox()
    dovecot.deliver(mail(1))
    dovecot.deliver(load("no_message_id"))
    task = await run_loop(make_channel(), inbox)
    await stop_loop(task)
    old = dovecot.uidvalidity()
    dovecot.stop()
    dovecot.renumber()
    dovecot.start()
    dovecot.deliver(mail(3))
    new = dovecot.uidvalidity()
    assert new != old
    task = await run_loop(make_channel(), inbox)
    # Everything was fetched again, and only the new mail was new: no duplicate, including the
    # mail without a Message-ID.
    assert len(inbox.items) == 3
    assert inbox.puts == 5
    assert inbox.cursors["imap:INBOX"].startswith(f"{new}:")
    await stop_loop(task)


async def test_unreachable_server_is_retried_and_reported(http: httpx.AsyncClient) -> None:
    server = Dovecot()
    settings = make_settings(imap_port=server.port, imap_password=PASSWORD, timeout_seconds=5)
    channel = EmailChannel("mail-1", settings, RecordingContext(http=http, log=LOG))
    channel.ingestor.backoff_multiplier = 0.1
    channel.ingestor.backoff_max = 0.5
    inbox = MemoryInbox()
    task = asyncio.create_task(channel.ingest(inbox))
    try:
        await eventually(lambda: HealthState.UNREACHABLE in health(channel))
        assert not task.done(), "the loop gave up"
        server.start()
        server.deliver(mail(1))
        await eventually(lambda: len(inbox.items) == 1)
        assert health(channel)[-1] is HealthState.OK
        # The server goes away mid-session and comes back: the loop reconnects by itself.
        server.stop()
        await eventually(lambda: not channel.ingestor.connected.is_set())
        server.start()
        server.deliver(mail(2))
        await eventually(lambda: len(inbox.items) == 2)
    finally:
        server.close()
        await stop_loop(task)


async def test_wrong_password_is_auth_failed_and_never_logged(
    make_channel: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    channel = make_channel(imap_password=IMAP_PASSWORD + "-wrong")
    task = asyncio.create_task(channel.ingest(MemoryInbox()))
    try:
        await eventually(lambda: HealthState.AUTH_FAILED in health(channel))
        assert not task.done()
    finally:
        await stop_loop(task)
    context = channel.context
    assert isinstance(context, RecordingContext)
    texts = [r.getMessage() for r in caplog.records] + [str(e) for _, e in context.health]
    assert not any(IMAP_PASSWORD in t for t in texts)
    assert (await channel.health_check()).state is HealthState.AUTH_FAILED


async def test_resync_since_a_date(dovecot: Dovecot, make_channel: Factory) -> None:
    channel = make_channel(backfill_days=0)
    inbox = MemoryInbox()
    dovecot.deliver(mail(1))
    dovecot.deliver(mail(2))
    task = await run_loop(channel, inbox)
    assert inbox.items == {}
    await stop_loop(task)
    since = (datetime.now(UTC) - timedelta(days=1)).date()
    assert await channel.resync(inbox, since) == {"found": 2, "new": 2}
    assert await channel.resync(inbox, since) == {"found": 2, "new": 0}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert await channel.resync(inbox, tomorrow) == {"found": 0, "new": 0}


async def test_resync_on_a_dead_server_is_a_clear_error(make_channel: Factory) -> None:
    channel = make_channel(imap_port=free_port())
    with pytest.raises(SendError) as info:
        await channel.resync(MemoryInbox(), datetime.now(UTC).date())
    assert info.value.error_class is SendErrorClass.RETRYABLE


async def test_sent_copy_lands_in_the_sent_folder(dovecot: Dovecot, make_channel: Factory) -> None:
    smtp = SmtpServer().start()
    try:
        channel = make_channel(smtp_port=smtp.port)
        out = OutboundMessage(
            id="msg_sent1",
            channel_id="mail-1",
            conversation_id="cv_1",
            recipient=ContactRef(ids=["email:ann@customer.example"], email="ann@customer.example"),
            kind=MessageKind.TEXT,
            text="Your parcel left today.",
            subject="Shipping",
        )
        receipt = await channel.send(out)
    finally:
        smtp.stop()
    assert len(smtp.received) == 1
    copies = dovecot.mailbox("Sent")
    assert len(copies) == 1
    assert receipt.external_id.encode() in copies[0]
    assert delivery_key(copies[0]) == f"mail:{receipt.external_id}"
    assert (await channel.health_check()).state is HealthState.UNREACHABLE  # SMTP server now gone


async def test_fetch_media_returns_the_attachment(dovecot: Dovecot, make_channel: Factory) -> None:
    dovecot.deliver(load("attachments"))
    channel = make_channel()
    content = await channel.fetch_media("<attach-1@customer.example>#3", None)
    assert content.data.startswith(b"%PDF-1.4")
    assert content.mime_type == "application/pdf"
    assert content.filename == "Rapport naïf.pdf"
    with pytest.raises(SendError) as info:
        await channel.fetch_media("<gone@customer.example>#1", None)
    assert info.value.error_class is SendErrorClass.PERMANENT


async def test_health_check_ok(dovecot: Dovecot, make_channel: Factory) -> None:
    smtp = SmtpServer().start()
    try:
        assert (await make_channel(smtp_port=smtp.port).health_check()).state is HealthState.OK
    finally:
        smtp.stop()


async def test_cancelling_the_loop_while_the_server_refuses_always_stops_it(http: httpx.AsyncClient) -> None:
    """aioimaplib's calls sit in ``asyncio.wait_for``, which on Python 3.11 can turn a cancel that
    meets a refused connection into one more ``ConnectionRefusedError``. The retry loop must see the
    cancel anyway: a loop that survives it hangs the hub's shutdown (and did, in CI)."""
    settings = make_settings(imap_port=free_port(), imap_password=PASSWORD, timeout_seconds=5)
    channel = EmailChannel("mail-1", settings, RecordingContext(http=http, log=LOG))
    channel.ingestor.backoff_multiplier = 0.0005
    channel.ingestor.backoff_max = 0.001
    hung = 0
    for attempt in range(40):
        task = asyncio.create_task(channel.ingest(MemoryInbox()))
        await asyncio.sleep(0.02 + attempt * 0.0037)  # cancel at many points of the connect/retry cycle
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            hung += 1
            task.cancel()  # the next cancel is seen: do not leave it running
            await asyncio.wait({task}, timeout=2)
    assert hung == 0, f"{hung} of 40 cancelled ingest loops went on running"
