"""Settings and capability manifest of the email channel (IMAP in, SMTP out)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hub.channel import Capabilities, ChannelSettings, ReplyWindowPolicy
from hub.models import AttachmentKind

__all__ = ["CAPABILITIES", "Security", "Settings"]

Security = Literal["ssl", "starttls", "none"]
_MB = 1024 * 1024


class Settings(ChannelSettings):
    """What an admin enters to connect one mailbox."""

    imap_host: str = Field(min_length=1, description="IMAP server host name")
    imap_port: int = Field(default=993, ge=1, le=65535, description="993 for ssl, 143 otherwise")
    imap_security: Security = Field(default="ssl", description="ssl, starttls or none")
    imap_username: str = Field(min_length=1)
    imap_password: SecretStr = Field(description="IMAP password or app password")
    imap_mailbox: str = Field(default="INBOX", min_length=1, description="Mailbox the hub reads")
    imap_sent_mailbox: str | None = Field(
        default=None,
        description="Where sent copies go; empty: the mailbox the server marks \\Sent, if any",
    )
    smtp_host: str = Field(min_length=1, description="SMTP server host name")
    smtp_port: int = Field(default=465, ge=1, le=65535, description="465 for ssl, 587 for starttls")
    smtp_security: Security = Field(default="ssl", description="ssl, starttls or none")
    smtp_username: str | None = Field(default=None, description="Empty: send without logging in")
    smtp_password: SecretStr | None = None
    from_address: str = Field(description="The address customers write to and replies come from")
    from_name: str | None = Field(default=None, description="Display name on replies")
    poll_interval_seconds: float = Field(
        default=60.0, ge=1, le=3600, description="How often to poll when the server offers no IDLE"
    )
    backfill_days: int = Field(
        default=14,
        ge=0,
        le=3650,
        description="On first start, fetch mail this many days back (0: new mail only)",
    )
    idle_seconds: float = Field(
        default=25 * 60, ge=5, le=29 * 60, description="How long one IDLE lasts before it is renewed"
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Network timeout")

    @field_validator("imap_host", "smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if "/" in value or " " in value:
            raise ValueError("a host name only, such as imap.example.com")
        return value

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        local, _, domain = value.rpartition("@")
        if not local or "." not in domain or any(c in value for c in ' <>,;"\r\n'):
            raise ValueError("a bare address such as support@example.com")
        return value


_MEDIA = frozenset({AttachmentKind.IMAGE, AttachmentKind.AUDIO, AttachmentKind.VIDEO, AttachmentKind.FILE})

# 25 MB is what the large providers accept per mail (Gmail, Outlook.com); base64 adds a third.
CAPABILITIES = Capabilities(
    text=True,
    max_text_length=None,
    media=_MEDIA,
    max_attachment_bytes={kind: 18 * _MB for kind in _MEDIA},
    max_attachments=20,
    captions=False,
    replies=True,
    subject=True,
    reply_window=ReplyWindowPolicy(hours=None),
)
