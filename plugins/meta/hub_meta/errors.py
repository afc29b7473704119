"""Graph API errors to the hub's ``SendErrorClass``, through a code table each channel supplies.

Meta reports a failed call as ``{"error": {"message", "type", "code", "error_subcode",
"error_data": {"details"}, "error_user_title", "error_user_msg", "fbtrace_id"}}``. The code (or,
for Messenger, often the subcode: code 10 subcode 2018278 is the closed window) decides the class;
where the table does not know it, the HTTP status does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from hub.errors import SendError, SendErrorClass

__all__ = [
    "CodeTable",
    "classify_code",
    "error_from_response",
    "int_or_none",
    "redact",
    "redact_any",
    "retry_after_seconds",
]

C = SendErrorClass
Entry = tuple[SendErrorClass, str]
"""A class and a scope: ``"channel"`` (the whole sender waits) or ``"recipient"`` (only this user)."""


@dataclass(frozen=True)
class CodeTable:
    """Which class each Meta error code means for one channel type.

    ``codes`` maps an error code or subcode to (class, scope); subcodes are looked up first, since
    they are the more precise. ``ranges`` classify whole blocks (WhatsApp's 132xxx template errors).
    """

    codes: Mapping[int, Entry]
    ranges: tuple[tuple[int, int, Entry], ...] = field(default=())

    def classify(self, code: int | None, http_status: int | None = None, subcode: int | None = None) -> Entry:
        for value in (subcode, code):
            if value is None:
                continue
            if value in self.codes:
                return self.codes[value]
            for low, high, entry in self.ranges:
                if low <= value <= high:
                    return entry
        return _by_http_status(http_status)


def _by_http_status(http_status: int | None) -> Entry:
    if http_status is None:
        return C.PERMANENT, "channel"
    if http_status == 401:
        return C.AUTH, "channel"
    if http_status == 429:
        return C.RATE_LIMITED, "channel"
    if http_status >= 500 or http_status in (408, 425):
        return C.RETRYABLE, "channel"
    return C.PERMANENT, "channel"


def classify_code(
    table: CodeTable, code: int | None, http_status: int | None = None, subcode: int | None = None
) -> Entry:
    """The class and scope for a Meta error (``table.classify`` as a function)."""
    return table.classify(code, http_status, subcode)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` (a provider may echo what it was sent)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_any(value: Any, secrets: Iterable[str]) -> Any:
    """``redact`` through nested dicts and lists."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {k: redact_any(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_any(v, secrets) for v in value]
    return value


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = None
    for name, v in headers.items():
        if name.lower() == "retry-after":
            value = v.strip()
            break
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    table: CodeTable,
    secrets: Iterable[str] = (),
) -> SendError:
    """Build a classified ``SendError`` from a failed Graph API response.

    ``body`` is the decoded JSON (or the text when it was not JSON). No secret value from
    ``secrets`` survives into the message, title or details.
    """
    secrets = list(secrets)
    err: Mapping[str, Any] = {}
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
    code = int_or_none(err.get("code"))
    subcode = int_or_none(err.get("error_subcode"))
    error_class, scope = table.classify(code, status, subcode)
    error_data = err.get("error_data") if isinstance(err.get("error_data"), Mapping) else {}
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    provider_message = str(err.get("message") or "").strip()
    if not provider_message:
        provider_message = f"Graph API answered HTTP {status}"
    message = provider_message
    if details and str(details) not in message:
        message = f"{message}: {details}"
    title = err.get("error_user_title") or err.get("title") or provider_message
    info: dict[str, Any] = {"http_status": status}
    for key in ("type", "error_subcode", "fbtrace_id", "error_user_msg"):
        if err.get(key) is not None:
            info[key] = err[key]
    if details is not None:
        info["details"] = details
    if not err and body not in (None, "", {}):
        info["body"] = str(body)[:500]
    return SendError(
        error_class,
        redact(message, secrets),
        provider_code=code,
        title=redact(str(title), secrets),
        retry_after=retry_after_seconds(headers),
        scope=scope,
        details=redact_any(info, secrets),
    )
