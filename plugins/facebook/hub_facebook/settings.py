"""Settings and capability manifests of the Messenger and Instagram Direct channels."""

from __future__ import annotations

from hub_meta.settings import DEFAULT_API_BASE_URL, check_base_url
from pydantic import Field, SecretStr, field_validator

from hub.channel import Capabilities, ChannelSettings, ReplyWindowPolicy
from hub.models import AttachmentKind

__all__ = [
    "DEFAULT_API_BASE_URL",
    "INSTAGRAM_CAPABILITIES",
    "MESSENGER_CAPABILITIES",
    "InstagramSettings",
    "MessengerSettings",
]


_MB = 1024 * 1024
# What the Graph client can put in a URL or a header, so the admin API refuses the rest with a 422
# and its OpenAPI document says exactly what it takes. Meta's ids are digits.
_ID = r"^[A-Za-z0-9_.-]+$"


class MessengerSettings(ChannelSettings):
    """What an admin enters to connect one Facebook Page."""

    page_id: str = Field(min_length=1, pattern=_ID, description="The Facebook Page's id")
    page_access_token: SecretStr = Field(description="Page access token (pages_messaging)")
    app_secret: SecretStr = Field(description="App secret: verifies X-Hub-Signature-256 on webhooks")
    verify_token: str = Field(min_length=1, description="Any string; paste it into the webhook setup")
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        pattern=r"^[ \t\n\r]*https?://[!-~]+[ \t\n\r]*$",  # ASCII spaces: \s differs between engines
        description="Graph API base URL including the version",
    )
    messages_per_second: float = Field(
        default=40.0, gt=0, le=1000, description="Sends per second this Page is allowed (all recipients)"
    )
    request_timeout: float = Field(
        default=15.0, gt=0, le=300, description="Seconds before a Graph API call counts as failed"
    )
    user_agent: str = Field(
        default="hub-facebook/0.1",
        min_length=1,
        pattern=r"^[ -~]+$",
        description="User-Agent header on Graph API calls and media downloads (printable ASCII)",
    )

    _base_url = field_validator("api_base_url")(check_base_url)

    @property
    def account_id(self) -> str:
        """The id Meta names in ``entry[].id`` and as sender of the business's own messages."""
        return self.page_id


class InstagramSettings(MessengerSettings):
    """An Instagram professional account, messaged through the Facebook Page it is linked to."""

    instagram_account_id: str = Field(
        min_length=1, pattern=_ID, description="The Instagram professional account id"
    )
    messages_per_second: float = Field(
        default=100.0, gt=0, le=1000, description="Sends per second for this account (Meta: 100 for text)"
    )

    @property
    def account_id(self) -> str:
        return self.instagram_account_id


# One attachment per Send API call; 25 MB for any attachment (Meta's Send API reference). Messenger
# shows at most 2,000 characters of text, Instagram 1,000. The window: 24 hours of free replies
# after the customer's last message, then a human agent's reply with the HUMAN_AGENT tag up to 7
# days ("tag"): the channel refuses anything later itself (see ``policy.py``).
_WINDOW = ReplyWindowPolicy(hours=24, outside="tag")

MESSENGER_CAPABILITIES = Capabilities(
    text=True,
    max_text_length=2000,
    media=frozenset({AttachmentKind.IMAGE, AttachmentKind.AUDIO, AttachmentKind.VIDEO, AttachmentKind.FILE}),
    max_attachment_bytes={
        AttachmentKind.IMAGE: 25 * _MB,
        AttachmentKind.AUDIO: 25 * _MB,
        AttachmentKind.VIDEO: 25 * _MB,
        AttachmentKind.FILE: 25 * _MB,
    },
    max_attachments=1,
    captions=False,
    reactions=False,
    templates=True,
    interactive=True,
    max_interactive_buttons=3,
    max_interactive_rows=13,
    replies=True,
    read_receipts=True,
    location=False,
    subject=False,
    reply_window=_WINDOW,
)

INSTAGRAM_CAPABILITIES = MESSENGER_CAPABILITIES.model_copy(
    update={
        "max_text_length": 1000,
        "media": frozenset({AttachmentKind.IMAGE, AttachmentKind.AUDIO, AttachmentKind.VIDEO}),
        "max_attachment_bytes": {
            AttachmentKind.IMAGE: 8 * _MB,
            AttachmentKind.AUDIO: 25 * _MB,
            AttachmentKind.VIDEO: 25 * _MB,
        },
    }
)
