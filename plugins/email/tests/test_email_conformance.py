"""The hub's reusable conformance suite (``hub.testing.conformance``) run against the email channel.

Email is a pull channel: no webhook signature and no handshake apply, so those checks skip, and
the plugin's manifest exempts them with the reason (as it does batches, unknown element types and
unreadable bodies, which mail cannot have). Parse cases, purity, delivery keys, duplicates through
the hub's inbox, settings and secrets, the send checks (against a real aiosmtpd server scripted to
refuse), the health checks and the ingest loop (against a real Dovecot, when installed) run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import httpx
import pytest
from dovecot import Dovecot, dovecot_binary
from email_support import IMAP_PASSWORD, LOG, SMTP_PASSWORD, load, settings_dict
from hub_email import EmailChannel
from pydantic import SecretStr
from smtp_server import SmtpServer, free_port

from hub.errors import SendErrorClass
from hub.models import (
    Attachment,
    AttachmentKind,
    ContactRef,
    InboundMessage,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    ReactionUpdate,
    StatusUpdate,
)
from hub.testing.conformance import ChannelConformance, IngestHarness, ParseCase, RecordingInbox, SendHarness
from hub.testing.pytest_plugin import RecordingContext

HANA = ContactRef(ids=["email:hana@customer.example"], name="Hana", email="hana@customer.example")
GUS = ContactRef(ids=["email:gus@customer.example"], name="Gus", email="gus@customer.example")


@pytest.fixture(scope="module")
def imap_server() -> Iterator[Dovecot | None]:
    """One Dovecot for the module's health and ingest checks; None (they skip) when not installed."""
    if dovecot_binary() is None:
        yield None
        return
    server = Dovecot().start()
    yield server
    server.close()


def _settings(channel: EmailChannel) -> Any:
    settings = channel.settings
    assert isinstance(settings, EmailChannel.Settings)
    return settings


class TestEmailConformance(ChannelConformance):
    channel_cls = EmailChannel
    settings = settings_dict(smtp_username="support", smtp_password=SMTP_PASSWORD)
    # RFC 5322 reads any bytes as a message (headers up to the first blank line, then a body), and
    # the bytes come from the mailbox, not from a stranger's POST: there is no unreadable mail.
    garbage_body = None
    cases = [
        ParseCase(
            "plain",
            load("no_message_id").replace(b"Date:", b"Message-ID: <plain-1@customer.example>\nDate:"),
            [
                InboundMessage(
                    external_id="<plain-1@customer.example>",
                    contact=HANA,
                    kind=MessageKind.EMAIL,
                    text="When do you open on Sunday?",
                    subject="Opening hours",
                    timestamp=datetime(2026, 3, 10, 7, 0, tzinfo=UTC),
                    data={
                        "message_id": "<plain-1@customer.example>",
                        "from": {"name": "Hana", "address": "hana@customer.example"},
                        "to": [{"name": "", "address": "support@example.com"}],
                        "full_text": "When do you open on Sunday?",
                    },
                )
            ],
        ),
        ParseCase(
            "bounce",
            load("bounce_dsn"),
            [
                StatusUpdate(
                    external_id="<hub-msg_out5@example.com>",
                    status=MessageStatus.FAILED,
                    timestamp=datetime(2026, 3, 10, 12, 0, tzinfo=UTC),
                    error={
                        "class": "recipient",
                        "provider_code": "5.1.1",
                        "title": "Mail returned as undeliverable",
                        "message": "550 5.1.1 <nobody@customer.example>: Recipient address rejected: "
                        "User unknown",
                    },
                    data={
                        "bounce_message_id": "<bounce-1@mx.example.com>",
                        "recipients": [
                            {
                                "recipient": "nobody@customer.example",
                                "action": "failed",
                                "status": "5.1.1",
                                "diagnostic": "550 5.1.1 <nobody@customer.example>: Recipient address "
                                "rejected: User unknown",
                            }
                        ],
                    },
                )
            ],
        ),
        ParseCase("auto_reply", load("autoreply_x_autoreply"), []),
        ParseCase(
            "attachments",
            load("attachments"),
            [
                InboundMessage(
                    external_id="<attach-1@customer.example>",
                    contact=GUS,
                    kind=MessageKind.EMAIL,
                    text="See the photo below and the report attached.",
                    subject="Photos of the damage",
                    attachments=[
                        Attachment(
                            kind=AttachmentKind.IMAGE,
                            mime_type="image/png",
                            filename="photo.png",
                            size=70,
                            external_id="<attach-1@customer.example>#2",
                            sha256="6b7fa434f92a8b80aab02d9bf1a12e49ffcae424e4013a1c4f68b67e3d2bbcd0",
                            content_id="photo1@customer.example",
                        ),
                        Attachment(
                            kind=AttachmentKind.FILE,
                            mime_type="application/pdf",
                            filename="Rapport naïf.pdf",
                            size=54,
                            external_id="<attach-1@customer.example>#3",
                            sha256="aa51f2911220ee9557237ff4c24a074131a52d334fbc6e3d2068942a112ae955",
                        ),
                    ],
                    timestamp=datetime(2026, 3, 9, 9, 0, tzinfo=UTC),
                    data={
                        "message_id": "<attach-1@customer.example>",
                        "from": {"name": "Gus", "address": "gus@customer.example"},
                        "to": [{"name": "", "address": "support@example.com"}],
                        "full_text": "See the photo below and the report attached.",
                        "html": '<p>See the photo below <img src="cid:photo1@customer.example"> and the '
                        "report attached.</p>",
                    },
                )
            ],
        ),
        ParseCase(
            "reaction",
            load("reaction_gmail"),
            [
                ReactionUpdate(
                    target_external_id="<hub-msg_out7@example.com>",
                    contact=HANA,
                    emoji="\U0001f44d",
                    timestamp=datetime(2026, 3, 10, 8, 15, tzinfo=UTC),
                    external_id="<CAreact-1@mail.gmail.com>",
                )
            ],
        ),
    ]

    @pytest.fixture
    async def send_harness(self, imap_server: Dovecot | None) -> AsyncIterator[SendHarness]:
        server = SmtpServer(username="support", password=SMTP_PASSWORD).start()
        wrong = SmtpServer(username="support", password="another-password").start()
        async with httpx.AsyncClient() as http:
            imap_port = imap_server.port if imap_server else free_port()
            values: dict[str, Any] = {**self.settings, "smtp_port": server.port, "imap_port": imap_port}
            channel = EmailChannel(
                "conf", EmailChannel.Settings.model_validate(values), RecordingContext(http, LOG)
            )
            message = OutboundMessage(
                id="msg_conf",
                channel_id="conf",
                conversation_id="cv_1",
                recipient=HANA,
                kind=MessageKind.TEXT,
                text="We open at 10.",
            )

            def reply_data(code: str) -> Any:
                def script() -> None:
                    server.handler.reply_data = code

                return script

            def reply_rcpt(code: str) -> Any:
                def script() -> None:
                    server.handler.reply_rcpt = code

                return script

            def wrong_password() -> None:
                object.__setattr__(_settings(channel), "smtp_port", wrong.port)

            def imap_password_revoked() -> None:
                # The mailbox's password was changed: Dovecot refuses the channel's login.
                object.__setattr__(_settings(channel), "imap_password", SecretStr("revoked-password-0"))

            def unreachable() -> None:
                # Nothing listens where the channel connects, for IMAP or SMTP.
                object.__setattr__(_settings(channel), "imap_port", free_port())
                object.__setattr__(_settings(channel), "smtp_port", free_port())

            async def silent_server() -> None:
                # A server that accepts the connection and never greets: the send times out.
                started = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
                silent.append(started)
                settings = channel.settings
                assert isinstance(settings, EmailChannel.Settings)
                object.__setattr__(settings, "smtp_port", started.sockets[0].getsockname()[1])
                object.__setattr__(settings, "timeout_seconds", 1.0)

            def transport_error(exc: BaseException) -> Any:
                # SMTP does not go through the lent HTTP client: the next connect raises ``exc``.
                def script() -> None:
                    original = aiosmtplib.SMTP.connect

                    async def failing(self: aiosmtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
                        aiosmtplib.SMTP.connect = original  # type: ignore[method-assign]
                        raise exc

                    aiosmtplib.SMTP.connect = failing  # type: ignore[method-assign]

                return script

            silent: list[asyncio.Server] = []
            yield SendHarness(
                channel=channel,
                message=message,
                errors={
                    SendErrorClass.RETRYABLE: reply_data("451 4.3.0 try again later"),
                    SendErrorClass.PERMANENT: reply_data("554 5.6.0 message refused"),
                    SendErrorClass.RECIPIENT: reply_rcpt("550 5.1.1 unknown user"),
                    SendErrorClass.AUTH: wrong_password,
                    SendErrorClass.RATE_LIMITED: reply_data(
                        "421 4.7.0 Too many messages, sending rate limit exceeded: try again later"
                    ),
                },
                timeout=silent_server,
                transport_error=transport_error,
                bad_credentials=imap_password_revoked if imap_server else None,
                unreachable=unreachable,
            )
            for srv in silent:
                srv.close()
        server.stop()
        wrong.stop()

    @pytest.fixture
    async def ingest_harness(self, imap_server: Dovecot | None) -> AsyncIterator[IngestHarness]:
        # Against Dovecot when installed (the loop logs in, fetches, then waits in IDLE), else
        # against nothing at all (the loop keeps reconnecting with backoff): either way it must
        # run until cancelled and then stop at once.
        port = imap_server.port if imap_server else free_port()
        async with httpx.AsyncClient() as http:
            values = {**self.settings, "imap_port": port, "smtp_port": free_port()}
            channel = EmailChannel(
                "conf", EmailChannel.Settings.model_validate(values), RecordingContext(http, LOG)
            )
            yield IngestHarness(channel=channel, inbox=RecordingInbox())

    def test_secret_values_are_the_passwords(self) -> None:
        values = self.make_channel().secret_values()
        assert sorted(values) == sorted([IMAP_PASSWORD, SMTP_PASSWORD])
