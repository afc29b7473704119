"""Outbound: the MIME message built for a reply, and sends through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from email_support import IMAP_PASSWORD, LOG, OWN, SMTP_PASSWORD, make_settings
from hub_email import EmailChannel
from hub_email.compose import build_mail, message_id, reply_subject
from hub_email.smtp import classify_smtp_error
from smtp_server import SmtpServer, free_port

from hub.errors import SendError, SendErrorClass
from hub.models import ContactRef, MessageKind, OutboundAttachment, OutboundMessage, SendContext
from hub.testing.pytest_plugin import RecordingContext

ANN = ContactRef(ids=["email:ann@customer.example"], name="Ann Lee", email="ann@customer.example")
KIM = ContactRef(ids=["email:kim@customer.example"], name="Kim", email="kim@customer.example")


def outbound(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "id": "msg_01ABC",
        "channel_id": "mail-1",
        "conversation_id": "cv_1",
        "recipient": ANN,
        "kind": MessageKind.TEXT,
        "text": "Hello Ann,\n\nA replacement is on its way.\n\nSupport",
    }
    values.update(overrides)
    return OutboundMessage(**values)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Order 1042", "Re: Order 1042"),
        ("Re: Order 1042", "Re: Order 1042"),
        ("RE: Re: AW: Order 1042", "Re: Order 1042"),
        ("Re[2]: Order 1042", "Re: Order 1042"),
        ("Fwd: Order 1042", "Re: Fwd: Order 1042"),
        (None, "Re:"),
    ],
)
def test_reply_subject_has_one_re(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_reply_keeps_the_thread() -> None:
    refs = ["<root@customer.example>", "<hub-msg_0@example.com>", "<second@customer.example>"]
    mail = build_mail(
        outbound(thread_refs=refs),
        from_address=OWN,
        from_name="Example Support",
        to=ANN,
        cc=[KIM],
        subject="RE: Order 1042 arrived damaged",
        thread_refs=refs,
    )
    assert mail["Message-ID"] == "<hub-msg_01ABC@example.com>"
    assert mail["In-Reply-To"] == "<second@customer.example>"
    assert mail["References"] == " ".join(refs)
    assert mail["Subject"] == "Re: Order 1042 arrived damaged"
    assert mail["From"] == "Example Support <support@example.com>"
    assert mail["To"] == "Ann Lee <ann@customer.example>"
    assert mail["Cc"] == "Kim <kim@customer.example>"
    assert mail["Auto-Submitted"] is None
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().startswith("Hello Ann,")
    assert "<p>Hello Ann,</p>" in html.get_content()


def test_reply_to_a_chosen_message_and_long_references() -> None:
    refs = [f"<m{i}@customer.example>" for i in range(40)]
    mail = build_mail(
        outbound(reply_to_external_id="<m5@customer.example>"),
        from_address=OWN,
        from_name=None,
        to=ANN,
        subject="Hi",
        thread_refs=refs,
    )
    assert mail["In-Reply-To"] == "<m5@customer.example>"
    sent_refs = str(mail["References"]).split()
    assert len(sent_refs) == 20
    assert sent_refs[0] == "<m0@customer.example>"  # the thread's root stays
    assert sent_refs[-1] == "<m39@customer.example>"


def test_new_conversation_has_no_re_and_automation_is_marked() -> None:
    mail = build_mail(
        outbound(subject="Your invoice"),
        from_address=OWN,
        from_name=None,
        to=ANN,
        subject=None,
        automated=True,
    )
    assert mail["Subject"] == "Your invoice"
    assert mail["In-Reply-To"] is None and mail["References"] is None
    assert mail["Auto-Submitted"] == "auto-replied"


def test_message_id_is_stable_per_hub_message() -> None:
    assert message_id("msg_1", OWN) == message_id("msg_1", OWN) == "<hub-msg_1@example.com>"
    assert message_id("msg_2", OWN) != message_id("msg_1", OWN)


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), SendErrorClass.AUTH),
        (aiosmtplib.SMTPResponseException(451, "4.3.0 try later"), SendErrorClass.RETRYABLE),
        (aiosmtplib.SMTPResponseException(554, "5.7.1 rejected as spam"), SendErrorClass.PERMANENT),
        (aiosmtplib.SMTPDataError(552, "5.3.4 too big"), SendErrorClass.PERMANENT),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "x@customer.example")]
            ),
            SendErrorClass.RECIPIENT,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "4.2.0 greylisted", "x@customer.example")]
            ),
            SendErrorClass.RETRYABLE,
        ),
        (aiosmtplib.SMTPServerDisconnected("gone"), SendErrorClass.RETRYABLE),
        (aiosmtplib.SMTPConnectError("refused"), SendErrorClass.RETRYABLE),
        (aiosmtplib.SMTPReadTimeoutError("slow"), SendErrorClass.RETRYABLE),
        (ConnectionResetError("reset"), SendErrorClass.RETRYABLE),
    ],
)
def test_smtp_errors_are_classified(exc: Exception, cls: SendErrorClass) -> None:
    assert classify_smtp_error(exc).error_class is cls


# ---- against a real SMTP server ------------------------------------------------------------------


def channel_for(server: SmtpServer, http: httpx.AsyncClient, **overrides: Any) -> EmailChannel:
    settings = make_settings(smtp_port=server.port, imap_port=free_port(), timeout_seconds=5, **overrides)
    return EmailChannel("mail-1", settings, RecordingContext(http=http, log=LOG))


async def test_send_delivers_to_the_smtp_server(
    smtp: SmtpServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 test")
    channel = channel_for(smtp, http)
    receipt = await channel.send(
        outbound(
            thread_refs=["<root@customer.example>"],
            context=SendContext(subject="RE: Order 1042", cc=[KIM], author="automation"),
            attachments=[
                OutboundAttachment(
                    kind="file", path=str(report), filename="Rapport naïf.pdf", mime_type="application/pdf"
                )
            ],
        )
    )
    assert receipt.external_id == "<hub-msg_01ABC@example.com>"
    assert len(smtp.received) == 1
    got = smtp.received[0]
    assert got.sender == OWN
    assert got.recipients == ["ann@customer.example", "kim@customer.example"]  # reply to all
    mail = got.message
    assert mail["Cc"] == "Kim <kim@customer.example>"
    assert mail["Auto-Submitted"] == "auto-replied"  # an automation wrote it
    assert mail["Message-ID"] == receipt.external_id
    assert mail["In-Reply-To"] == "<root@customer.example>"
    assert mail["Subject"] == "Re: Order 1042"
    files = list(mail.iter_attachments())
    assert [(p.get_filename(), p.get_content()) for p in files] == [("Rapport naïf.pdf", b"%PDF-1.4 test")]


async def test_refused_recipient_is_a_recipient_error(smtp: SmtpServer, http: httpx.AsyncClient) -> None:
    smtp.handler.reply_rcpt = "550 5.1.1 no such user"
    with pytest.raises(SendError) as info:
        await channel_for(smtp, http).send(outbound())
    assert info.value.error_class is SendErrorClass.RECIPIENT
    assert info.value.provider_code == "550"


async def test_deferred_mail_is_retryable(smtp: SmtpServer, http: httpx.AsyncClient) -> None:
    smtp.handler.reply_data = "451 4.3.0 mailbox busy, try later"
    with pytest.raises(SendError) as info:
        await channel_for(smtp, http).send(outbound())
    assert info.value.error_class is SendErrorClass.RETRYABLE


async def test_permanent_refusal_of_the_data(smtp: SmtpServer, http: httpx.AsyncClient) -> None:
    smtp.handler.reply_data = "554 5.7.1 message refused"
    with pytest.raises(SendError) as info:
        await channel_for(smtp, http).send(outbound())
    assert info.value.error_class is SendErrorClass.PERMANENT


async def test_no_server_is_retryable(http: httpx.AsyncClient) -> None:
    settings = make_settings(smtp_port=free_port(), imap_port=free_port(), timeout_seconds=3)
    channel = EmailChannel("mail-1", settings, RecordingContext(http=http, log=LOG))
    with pytest.raises(SendError) as info:
        await channel.send(outbound())
    assert info.value.error_class is SendErrorClass.RETRYABLE


async def test_wrong_password_is_auth_and_no_secret_leaks(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server = SmtpServer(username="support", password="right-password").start()
    try:
        channel = channel_for(server, http, smtp_username="support", smtp_password=SMTP_PASSWORD)
        with pytest.raises(SendError) as info:
            await channel.send(outbound())
        assert info.value.error_class is SendErrorClass.AUTH
        good = channel_for(server, http, smtp_username="support", smtp_password="right-password")
        await good.send(outbound(id="msg_2"))
        assert len(server.received) == 1
    finally:
        server.stop()
    texts = [str(info.value), repr(info.value), *[r.getMessage() for r in caplog.records]]
    for secret in (SMTP_PASSWORD, IMAP_PASSWORD):
        assert not any(secret in t for t in texts)


@pytest.mark.parametrize(
    ("code", "reply", "error_class", "retry_after"),
    [
        (421, "4.7.0 Sending rate limit exceeded, try again in 5 minutes", SendErrorClass.RATE_LIMITED, 300),
        (450, "4.2.1 Too many messages from this sender", SendErrorClass.RATE_LIMITED, 60),
        (451, "4.7.1 Throttled: retry in 30 seconds", SendErrorClass.RATE_LIMITED, 30),
        (451, "4.3.0 Temporary failure, try again later", SendErrorClass.RETRYABLE, None),
        (421, "4.3.2 Service not available, closing channel", SendErrorClass.RETRYABLE, None),
        (550, "5.7.1 Daily quota exceeded", SendErrorClass.RECIPIENT, None),
    ],
)
def test_a_throttling_reply_is_a_rate_limit_with_a_wait(
    code: int, reply: str, error_class: SendErrorClass, retry_after: float | None
) -> None:
    """SMTP has no Retry-After: the wait is what the reply names, else a minute."""
    error = classify_smtp_error(aiosmtplib.SMTPDataError(code, reply))
    assert (error.error_class, error.retry_after) == (error_class, retry_after)
