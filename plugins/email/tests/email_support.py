"""Shared helpers of the email plugin tests: settings, fixtures on disk, parsing one mail."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub_email.parse import parse_mail
from hub_email.settings import Settings

from hub.models import ParsedEvent

FIXTURES = Path(__file__).parent / "fixtures"
OWN = "support@example.com"
IMAP_PASSWORD = "imap-secret-4711"
SMTP_PASSWORD = "smtp-secret-0815"
RECEIVED = datetime(2026, 3, 1, tzinfo=UTC)
LOG = logging.getLogger("hub.channel.email")


def settings_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "imap_host": "127.0.0.1",
        "imap_port": 1143,
        "imap_security": "none",
        "imap_username": "support",
        "imap_password": IMAP_PASSWORD,
        "smtp_host": "127.0.0.1",
        "smtp_port": 1025,
        "smtp_security": "none",
        "smtp_username": None,
        "smtp_password": None,
        "from_address": OWN,
        "from_name": "Example Support",
    }
    base.update(overrides)
    return base


def make_settings(**overrides: Any) -> Settings:
    return Settings.model_validate(settings_dict(**overrides))


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def parse(body: bytes) -> list[ParsedEvent]:
    return parse_mail(body, own_address=OWN, received_at=RECEIVED, log=LOG)


def make_mail(
    msg_id: str,
    subject: str,
    body: str,
    *,
    sender: str = "ann@customer.example",
    name: str = "Ann Lee",
    **headers: str,
) -> bytes:
    """A plain-text mail to the channel's address, dated now; ``In_Reply_To=...`` adds headers."""
    extra = "".join(f"{key.replace('_', '-')}: {value}\r\n" for key, value in headers.items())
    return (
        f"From: {name} <{sender}>\r\nTo: {OWN}\r\nSubject: {subject}\r\n"
        f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: {msg_id}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def make_bounce(message_id: str, status: str = "5.1.1", diagnostic: str = "550 5.1.1 User unknown") -> bytes:
    """A DSN (multipart/report) returning the mail ``message_id`` as undeliverable."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        f"To: {OWN}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-{abs(hash(message_id))}@mx.customer.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; ann@customer.example\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nSubject: x\r\n\r\n"
        "--b--\r\n"
    ).encode()


async def eventually(check: Callable[[], Any], within: float = 30.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within:g} s (last value {result!r})")
        await asyncio.sleep(0.05)
