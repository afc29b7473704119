"""The two notifiers the hub ships: a signed webhook (``webhook``, medium push) and email over SMTP
(``email``). Each retries a few times within one delivery attempt (tenacity, jittered); the
delivery worker retries across attempts and restarts from the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, ClassVar, Literal

import aiosmtplib
import httpx
from pydantic import Field, SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from hub.limits import EMAIL_PATTERN
from hub.notify.notifier import Notification, Notifier, NotifierSettings, NotifyError

__all__ = ["EmailNotifier", "EmailSettings", "WebhookNotifier", "WebhookSettings", "webhook_signature"]

SIGNATURE_HEADER = "X-Hub-Signature-256"


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp.body`` keyed by the secret: the timestamp is
    signed too, so a receiver can refuse an old delivery replayed at it."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, NotifyError) and exc.retryable


class WebhookSettings(NotifierSettings):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    """Where each notification is POSTed (your push relay)."""
    secret: SecretStr = Field(min_length=16)
    """The HMAC key the body is signed with (``X-Hub-Signature-256``); at least 16 characters."""
    timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds one POST may take."""
    tries: int = Field(default=3, ge=1, le=10)
    """POSTs within one delivery attempt before the attempt counts as failed."""


class WebhookNotifier(Notifier):
    """POSTs each notification as JSON, signed: ``X-Hub-Signature-256: sha256=<hex>`` over
    ``<X-Hub-Timestamp>.<body>``, ``X-Hub-Delivery`` the delivery id (the same on a retry).
    A 2xx answer is delivered; 408, 429, 5xx and network errors are retried; other 4xx are not."""

    name: ClassVar[str] = "webhook"
    medium: ClassVar[Literal["push", "email"]] = "push"
    Settings: ClassVar[type[NotifierSettings]] = WebhookSettings
    settings: WebhookSettings

    async def deliver(self, notification: Notification) -> None:
        body = json.dumps(notification.model_dump(mode="json"), separators=(",", ":")).encode()
        secret = self.settings.secret.get_secret_value().encode()
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.settings.tries),
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                await self._post(body, secret, notification.delivery_id)

    async def _post(self, body: bytes, secret: bytes, delivery_id: str) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhook_signature(secret, timestamp, body),
            "X-Hub-Timestamp": timestamp,
            "X-Hub-Delivery": delivery_id,
        }
        try:
            resp = await self.context.http.post(
                self.settings.url, content=body, headers=headers, timeout=self.settings.timeout
            )
        except httpx.HTTPError as exc:
            raise NotifyError(f"webhook unreachable: {type(exc).__name__}") from None
        if resp.is_success:
            return
        status = resp.status_code
        raise NotifyError(f"webhook answered {status}", retryable=status in (408, 429) or status >= 500)


class EmailSettings(NotifierSettings):
    host: str = Field(min_length=1, max_length=255)
    """The SMTP server."""
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    """``ssl`` (implicit TLS, port 465), ``starttls`` or ``none`` (a local relay)."""
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(pattern=EMAIL_PATTERN)
    from_name: str = "Channel hub"
    timeout: float = Field(default=30.0, gt=0, le=300)
    tries: int = Field(default=2, ge=1, le=10)


class EmailNotifier(Notifier):
    """Writes each notification to the user's email address over SMTP (aiosmtplib)."""

    name: ClassVar[str] = "email"
    medium: ClassVar[Literal["push", "email"]] = "email"
    Settings: ClassVar[type[NotifierSettings]] = EmailSettings
    settings: EmailSettings

    def message(self, notification: Notification) -> EmailMessage:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = formataddr((s.from_name, s.from_address))
        msg["To"] = formataddr((notification.user.name or "", notification.user.email))
        msg["Subject"] = notification.title
        msg["Message-ID"] = make_msgid(domain=s.from_address.rpartition("@")[2] or None)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: never answered automatically
        lines = [notification.body or notification.title]
        if notification.url:
            lines += ["", notification.url]
        msg.set_content("\n".join(lines))
        return msg

    async def deliver(self, notification: Notification) -> None:
        msg = self.message(notification)
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.settings.tries),
            wait=wait_exponential(multiplier=0.5, max=5.0) + wait_random(0, 0.5),
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                await self._send(msg)

    async def _send(self, msg: EmailMessage) -> None:
        s = self.settings
        kwargs: dict[str, Any] = {
            "hostname": s.host,
            "port": s.port,
            "timeout": s.timeout,
            "use_tls": s.security == "ssl",
            "start_tls": s.security == "starttls",
        }
        if s.username:
            kwargs["username"] = s.username
            kwargs["password"] = s.password.get_secret_value() if s.password else ""
        try:
            await aiosmtplib.send(msg, **kwargs)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(f"the SMTP server refused the recipient: {exc}", retryable=False) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"the SMTP server refused the login: {exc.code}", retryable=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"SMTP failed: {type(exc).__name__}: {exc}") from None
