"""Why the outbound pipeline refuses a request. The web layer maps ``reason`` to an HTTP status
(``hub.web.sends``); the pipeline itself knows nothing of HTTP."""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["Reason", "SendRefused"]

Reason = Literal["not_found", "conflict", "invalid"]


class SendRefused(Exception):
    """A send, retry or cancel the hub refuses. ``errors`` carry field paths (``attachments.0.kind``)."""

    def __init__(
        self, reason: Reason, code: str, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.code = code
        self.message = message
        self.errors = errors or []
