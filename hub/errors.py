"""The hub's typed errors: what a channel raises, and what the core turns into an HTTP answer.

Channel plugins raise these; the core decides what each means for the provider (status code of the
webhook answer) and for the outbox (retry, wait, pause, fail). Messages are meant for humans and must
never contain a secret's value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "BadPayload",
    "BadSignature",
    "ChannelError",
    "ConfigError",
    "HubError",
    "PluginLoadError",
    "SendError",
    "SendErrorClass",
]


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    code = "hub_error"


class ConfigError(HubError):
    """The configuration is unusable; the message names the setting or variable to fix."""

    code = "config_error"


class PluginLoadError(HubError):
    """A plugin could not be loaded or registered (strict mode, duplicate type name, bad hook)."""

    code = "plugin_error"


class ChannelError(HubError):
    """Base of the errors a channel plugin raises while handling provider traffic."""

    code = "channel_error"


class BadSignature(ChannelError):
    """The request is not authentic: signature missing, malformed or wrong. Answered 401, nothing stored."""

    code = "bad_signature"


class BadPayload(ChannelError):
    """The body cannot be understood at all (not JSON, wrong envelope). Answered 400, nothing stored.

    Only for bodies that are garbage as a whole. A well-formed body with an element of an unknown type
    must not raise: the channel returns a placeholder for that element instead.
    """

    code = "bad_payload"


class SendErrorClass(StrEnum):
    """What the outbox does with a failed send."""

    RETRYABLE = "retryable"
    """Transient (network, timeout, provider 5xx): retried with jittered backoff up to a maximum age."""
    RATE_LIMITED = "rate_limited"
    """The provider throttled us: wait `retry_after` (or a backoff) and try again; not counted as failure."""
    NEEDS_TEMPLATE = "needs_template"
    """The reply window is closed: free-form content is refused; the agent must send a template."""
    AUTH = "auth"
    """Credentials revoked or expired: sending on this channel pauses until an admin fixes them."""
    RECIPIENT = "recipient"
    """The recipient cannot be reached (blocked, not on the network, left): fail this message."""
    PERMANENT = "permanent"
    """The request itself is wrong (bad parameter, unknown template): fail, retrying cannot help."""


class SendError(ChannelError):
    """A send failed; `error_class` tells the outbox what to do about it.

    `provider_code` and `title` are the provider's own code and short title, shown to the app beside
    the hub's class so an agent sees why. `retry_after` is in seconds. `scope` narrows a rate limit:
    ``"recipient"`` when only this recipient must wait (WhatsApp pair rate limit), ``"channel"`` when
    the whole sender must.
    """

    code = "send_failed"

    def __init__(
        self,
        error_class: SendErrorClass | str,
        message: str,
        *,
        provider_code: str | int | None = None,
        title: str | None = None,
        retry_after: float | None = None,
        scope: str = "channel",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = SendErrorClass(error_class)
        self.message = message
        self.provider_code = None if provider_code is None else str(provider_code)
        self.title = title
        self.retry_after = retry_after
        self.scope = scope
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """The error as stored on the message and shown to the app."""
        return {
            "class": self.error_class.value,
            "message": self.message,
            "provider_code": self.provider_code,
            "title": self.title,
        }

    def __repr__(self) -> str:
        return (
            f"SendError({self.error_class.value!r}, {self.message!r}, provider_code={self.provider_code!r})"
        )
