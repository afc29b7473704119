"""The hub's reusable conformance suite (``hub.testing.conformance``) run against the email channel.

Email is a pull channel: no webhook signature and no handshake apply, so those checks skip. Parse
cases, purity, delivery keys, settings and secrets, and the send checks (against a real aiosmtpd
server scripted to refuse) run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import httpx
import pytest
from email_support import IMAP_PASSWORD, LOG, SMTP_PASSWORD, load, settings_dict
from hub_email import EmailChannel
from smtp_server import SmtpServer, free_port

from hub.errors import SendErrorClass
from hub.models import ContactRef, InboundMessage, MessageKind, MessageStatus, OutboundMessage, StatusUpdate
from hub.testing.conformance import ChannelConformance, ParseCase, SendHarness
from hub.testing.pytest_plugin import RecordingContext

HANA = ContactRef(ids=["email:hana@customer.example"], name="Hana", email="hana@customer.example")


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
    ]

    @pytest.fixture
    async def send_harness(self) -> AsyncIterator[SendHarness]:
        server = SmtpServer(username="support", password=SMTP_PASSWORD).start()
        wrong = SmtpServer(username="support", password="another-password").start()
        async with httpx.AsyncClient() as http:
            values: dict[str, Any] = {**self.settings, "smtp_port": server.port, "imap_port": free_port()}
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
                settings = channel.settings
                assert isinstance(settings, EmailChannel.Settings)
                object.__setattr__(settings, "smtp_port", wrong.port)

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
                },
                timeout=silent_server,
                transport_error=transport_error,
            )
            for srv in silent:
                srv.close()
        server.stop()
        wrong.stop()

    def test_secret_values_are_the_passwords(self) -> None:
        values = self.make_channel().secret_values()
        assert sorted(values) == sorted([IMAP_PASSWORD, SMTP_PASSWORD])
