"""Settings and capability manifest of the email channel (IMAP in, SMTP out)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from hub.channel import Capabilities, ChannelSettings, ReplyWindowPolicy
from hub.models import AttachmentKind

__all__ = ["CAPABILITIES", "Security", "Settings"]

Security = Literal["ssl", "starttls", "none"]
_MB = 1024 * 1024


# Written as patterns rather than validators, so the settings schema the admin API publishes
# refuses exactly what the model refuses. Spaces are listed, not written \s: what \s matches
# differs between regex engines (U+0085 is one for Python and Rust, not for JavaScript), so a
# client checking the published schema would accept what the hub refuses.
_SPACE = r"\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_HOST = rf"^[^/{_SPACE}]+$"
"""A host name only: no scheme, path or spaces."""
_ADDRESS = rf'^[^{_SPACE}<>,;"@]+@[^{_SPACE}<>,;"@]+\.[^{_SPACE}<>,;"@]+$'
"""A bare address, without a display name or a list."""


class Settings(ChannelSettings):
    """What an admin enters to connect one mailbox."""

    imap_host: str = Field(pattern=_HOST, description="IMAP server host name, such as imap.example.com")
    imap_port: int = Field(default=993, ge=1, le=65535, description="993 for ssl, 143 otherwise")
    imap_security: Security = Field(default="ssl", description="ssl, starttls or none")
    imap_username: str = Field(min_length=1, description="The mailbox's IMAP login, often its address")
    imap_password: SecretStr = Field(description="IMAP password or app password")
    imap_mailbox: str = Field(default="INBOX", min_length=1, description="Mailbox the hub reads")
    imap_sent_mailbox: str | None = Field(
        default=None,
        description="Where sent copies go; empty: the mailbox the server marks \\Sent, if any",
    )
    smtp_host: str = Field(pattern=_HOST, description="SMTP server host name, such as smtp.example.com")
    smtp_port: int = Field(default=465, ge=1, le=65535, description="465 for ssl, 587 for starttls")
    smtp_security: Security = Field(default="ssl", description="ssl, starttls or none")
    smtp_username: str | None = Field(default=None, description="Empty: send without logging in")
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password or app password (with smtp_username)"
    )
    from_address: str = Field(
        pattern=_ADDRESS,
        description="The bare address customers write to and replies come from (support@example.com)",
    )
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
