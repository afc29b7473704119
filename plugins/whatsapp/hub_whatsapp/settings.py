"""Settings and capability manifest of the WhatsApp Cloud API channel."""

from __future__ import annotations

from hub_meta.settings import DEFAULT_API_BASE_URL, check_base_url
from pydantic import Field, SecretStr, field_validator

from hub.channel import Capabilities, ChannelSettings, ReplyWindowPolicy
from hub.models import AttachmentKind

__all__ = ["CAPABILITIES", "DEFAULT_API_BASE_URL", "Settings"]


_MB = 1024 * 1024
# Meta's ids are digits; letters, "_", "." and "-" keep fakes and tests possible. Anything else
# could not go into a Graph API URL.
_ID = r"^[A-Za-z0-9_.-]+$"


class Settings(ChannelSettings):
    """What an admin enters to connect one WhatsApp Business phone number."""

    phone_number_id: str = Field(
        min_length=1, pattern=_ID, description="Phone number ID from WhatsApp Manager"
    )
    access_token: SecretStr = Field(description="System user access token (whatsapp_business_messaging)")
    app_secret: SecretStr = Field(description="App secret: verifies X-Hub-Signature-256 on webhooks")
    verify_token: str = Field(min_length=1, description="Any string; paste it into the webhook setup")
    business_account_id: str | None = Field(
        default=None, pattern=_ID, description="WhatsApp Business Account ID"
    )
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        pattern=r"^[ \t\n\r]*https?://[!-~]+[ \t\n\r]*$",  # ASCII spaces: \s differs between engines
        description="Graph API base URL including the version",
    )
    messages_per_second: int = Field(
        default=80,
        ge=1,
        le=1000,
        description="Throughput of this number (80 by default, up to 1000)",
    )
    pair_interval_seconds: float = Field(
        default=6.0,
        gt=0,
        le=3600,
        description="Meta's pair rate limit: about one message to one user every 6 seconds",
    )
    pair_burst: int = Field(
        default=45,
        ge=1,
        le=1000,
        description="Messages to one user allowed in a burst before the pair limit applies",
    )
    request_timeout: float = Field(
        default=15.0, gt=0, le=300, description="Seconds before a Graph API call counts as failed"
    )
    user_agent: str = Field(default="hub-whatsapp/0.1", min_length=1, pattern=r"^[ -~]+$")
    """The User-Agent of media downloads (Meta's CDN refuses requests without one)."""

    _base_url = field_validator("api_base_url")(check_base_url)


# Size limits from Meta's "supported media types" table. Stickers: 100 KB static, 500 KB animated;
# the manifest carries the larger figure and Meta refuses an oversized static sticker itself.
CAPABILITIES = Capabilities(
    text=True,
    max_text_length=4096,
    media=frozenset(AttachmentKind),
    max_attachment_bytes={
        AttachmentKind.IMAGE: 5 * _MB,
        AttachmentKind.AUDIO: 16 * _MB,
        AttachmentKind.VIDEO: 16 * _MB,
        AttachmentKind.FILE: 100 * _MB,
        AttachmentKind.STICKER: 500 * 1024,
    },
    max_attachments=1,
    captions=True,
    reactions=True,
    templates=True,
    interactive=True,
    max_interactive_buttons=3,
    max_interactive_rows=10,
    replies=True,
    read_receipts=True,
    location=True,
    subject=False,
    client_reference=True,
    reply_window=ReplyWindowPolicy(hours=24, outside="template"),
)
