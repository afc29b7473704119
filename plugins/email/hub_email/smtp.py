"""SMTP out with aiosmtplib, and every failure turned into a classified ``SendError``.

RFC 5321 reply codes carry the class: 4xx is transient (retry), 5xx permanent. Authentication
failures (535, 534, 530 and aiosmtplib's ``SMTPAuthenticationError``) are ``auth``, which pauses
sending on the channel until an admin fixes the credentials. A refused recipient with a 5xx code
is ``recipient``; the network failing or timing out is ``retryable``. A transient reply that says
the sender is over a rate (``421 4.7.0 ... rate limit``, ``450 ... too many messages``, ``451 4.7.1
... throttled``) is ``rate_limited``: SMTP has no Retry-After, so the wait is the one the reply
names ("try again in 5 minutes"), else ``RATE_LIMIT_WAIT`` seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from hub.errors import SendError, SendErrorClass

from .settings import Settings

__all__ = ["RATE_LIMIT_WAIT", "classify_smtp_error", "send_mail"]

_AUTH_CODES = {530, 534, 535, 538}
_RATE = re.compile(r"\brate\b|rate[- ]limit|too many|throttl|limit exceeded|quota", re.IGNORECASE)
_WAIT = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour)s?\b", re.IGNORECASE)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_LIMIT_WAIT = 60.0
"""Seconds to wait out an SMTP rate limit whose reply names no time."""


def _rate_wait(message: str) -> float:
    match = _WAIT.search(message)
    if match is None:
        return RATE_LIMIT_WAIT
    return max(1.0, float(match.group(1)) * _UNIT[match.group(2)[0].lower()])


def _by_code(code: int, message: str, *, recipient: bool = False) -> SendError:
    if code in _AUTH_CODES:
        return SendError(
            SendErrorClass.AUTH, f"the SMTP server refused the login: {message}", provider_code=code
        )
    if 400 <= code < 500:
        if _RATE.search(message):
            return SendError(
                SendErrorClass.RATE_LIMITED,
                f"the SMTP server is throttling this sender: {message}",
                provider_code=code,
                retry_after=_rate_wait(message),
            )
        return SendError(
            SendErrorClass.RETRYABLE, f"the SMTP server deferred the mail: {message}", provider_code=code
        )
    if recipient or code in (550, 551, 553):
        return SendError(
            SendErrorClass.RECIPIENT, f"the SMTP server refused the recipient: {message}", provider_code=code
        )
    return SendError(
        SendErrorClass.PERMANENT, f"the SMTP server refused the mail: {message}", provider_code=code
    )


def classify_smtp_error(exc: BaseException) -> SendError:
    """The ``SendError`` for an exception raised while sending over SMTP."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendError(
            SendErrorClass.AUTH, f"the SMTP server refused the login: {exc.message}", provider_code=exc.code
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        errors = [_by_code(r.code, f"{r.recipient}: {r.message}", recipient=True) for r in exc.recipients]
        # All refused: retry if any of them was only deferred, else the recipient is unreachable.
        retry = next((e for e in errors if e.error_class is SendErrorClass.RETRYABLE), None)
        return retry or (errors[0] if errors else SendError(SendErrorClass.RECIPIENT, "recipients refused"))
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _by_code(exc.code, f"{exc.recipient}: {exc.message}", recipient=True)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return SendError(SendErrorClass.RETRYABLE, "the SMTP server did not answer in time")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return _by_code(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return SendError(SendErrorClass.PERMANENT, f"the SMTP server lacks a needed extension: {exc}")
    return SendError(
        SendErrorClass.RETRYABLE, f"could not talk to the SMTP server: {type(exc).__name__}: {exc}"
    )


async def send_mail(settings: Settings, mail: EmailMessage, recipients: Sequence[str]) -> dict[str, str]:
    """Send ``mail``; the recipients the server refused while accepting others (address: reason)."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_security == "ssl",
        start_tls=True if settings.smtp_security == "starttls" else False,
        username=settings.smtp_username or None,
        password=password if settings.smtp_username else None,
        timeout=settings.timeout_seconds,
    )
    try:
        async with client:
            refused, _ = await client.send_message(
                mail, sender=settings.from_address, recipients=list(recipients)
            )
    except Exception as exc:
        raise classify_smtp_error(exc) from None
    return {addr: f"{resp.code} {resp.message}" for addr, resp in refused.items()}
