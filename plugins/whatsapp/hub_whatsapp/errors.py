"""Meta error codes to the hub's ``SendErrorClass``: one table for send errors and failed statuses.

Meta reports an error as ``{"error": {"message", "type", "code", "error_subcode",
"error_data": {"details"}, "fbtrace_id"}}`` on a synchronous failure, and as an element of
``statuses[].errors[]`` (``code``, ``title``, ``message``, ``error_data.details``) when a message
fails later. Both go through ``classify_code`` so an agent sees the same class either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from hub.errors import SendError, SendErrorClass

__all__ = [
    "classify_code",
    "error_from_response",
    "redact",
    "retry_after_seconds",
    "status_error",
]

C = SendErrorClass

# code -> (class, scope). Scope narrows a rate limit to one recipient (pair rate limit).
CODE_TABLE: dict[int, tuple[SendErrorClass, str]] = {
    # Throughput and API rate limits: the whole number waits.
    130429: (C.RATE_LIMITED, "channel"),  # throughput reached
    80007: (C.RATE_LIMITED, "channel"),  # WABA rate limit
    4: (C.RATE_LIMITED, "channel"),  # application request limit
    131048: (C.RATE_LIMITED, "channel"),  # spam rate limit
    # Pair rate limit: only this recipient waits, the rest of the queue moves on.
    131056: (C.RATE_LIMITED, "recipient"),
    # Transient: bounded retry.
    1: (C.RETRYABLE, "channel"),  # unknown API error
    2: (C.RETRYABLE, "channel"),  # temporary service outage
    131000: (C.RETRYABLE, "channel"),  # something went wrong
    131016: (C.RETRYABLE, "channel"),  # service overloaded
    # The 24-hour customer service window closed: only a template may go out.
    131047: (C.NEEDS_TEMPLATE, "channel"),
    # Undeliverable to this user.
    131026: (C.RECIPIENT, "channel"),
    # Access token expired or revoked: pause sending until an admin fixes it.
    190: (C.AUTH, "channel"),
    # Account restricted or locked (policy violation). There is no "account" class in the hub;
    # AUTH is the one that pauses the channel and alerts the admin instead of retrying, and
    # retrying would only add violations while the restriction lasts.
    368: (C.AUTH, "channel"),
    131031: (C.AUTH, "channel"),
    # Request or template bugs: retrying cannot help.
    100: (C.PERMANENT, "channel"),  # invalid parameter
    131008: (C.PERMANENT, "channel"),  # required parameter missing
    131009: (C.PERMANENT, "channel"),  # parameter value invalid
    131051: (C.PERMANENT, "channel"),  # unsupported message type
}


def classify_code(code: int | None, http_status: int | None = None) -> tuple[SendErrorClass, str]:
    """The class and scope for a Meta error ``code`` (and the HTTP status when there was one)."""
    if code is not None:
        if code in CODE_TABLE:
            return CODE_TABLE[code]
        if 132000 <= code <= 132999:  # template errors (missing, paused, wrong parameters)
            return C.PERMANENT, "channel"
    if http_status is None:
        return C.PERMANENT, "channel"
    if http_status == 401:
        return C.AUTH, "channel"
    if http_status == 429:
        return C.RATE_LIMITED, "channel"
    if http_status >= 500 or http_status in (408, 425):
        return C.RETRYABLE, "channel"
    return C.PERMANENT, "channel"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` (a provider may echo what it was sent)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _redact_any(value: Any, secrets: Iterable[str]) -> Any:
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {k: _redact_any(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_any(v, secrets) for v in value]
    return value


def _int_or_none(value: Any) -> int | None:
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
    code = _int_or_none(err.get("code"))
    error_class, scope = classify_code(code, status)
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
        details=_redact_any(info, secrets),
    )


def status_error(errors: Any) -> dict[str, Any]:
    """The ``error`` dict of a failed ``StatusUpdate``: class, provider_code, title, message."""
    first: Mapping[str, Any] = {}
    if isinstance(errors, list):
        first = next((e for e in errors if isinstance(e, Mapping)), {})
    code = _int_or_none(first.get("code"))
    error_class, scope = classify_code(code)
    error_data = first.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    title = first.get("title") or first.get("message")
    message = details or first.get("message") or title or "the provider reported a failure"
    out: dict[str, Any] = {
        "class": error_class.value,
        "provider_code": None if code is None else str(code),
        "title": title,
        "message": message,
    }
    if scope != "channel":
        out["scope"] = scope
    return out
