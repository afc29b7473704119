"""Meta error codes to the hub's ``SendErrorClass`` for WhatsApp: one table for send errors and
failed statuses.

A synchronous failure (``{"error": {...}}``) goes through ``hub_meta.error_from_response``; an
element of ``statuses[].errors[]`` (``code``, ``title``, ``message``, ``error_data.details``) that
arrives later goes through ``status_error``. Both use ``CODE_TABLE``, so an agent sees the same
class either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub_meta.errors import CodeTable, int_or_none, redact, retry_after_seconds
from hub_meta.errors import error_from_response as _meta_error

from hub.errors import SendError, SendErrorClass

__all__ = [
    "CODE_TABLE",
    "classify_code",
    "error_from_response",
    "redact",
    "retry_after_seconds",
    "status_error",
]

C = SendErrorClass

# code -> (class, scope). Scope narrows a rate limit to one recipient (pair rate limit).
_CODES: dict[int, tuple[SendErrorClass, str]] = {
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
# Template errors (missing, paused, wrong parameters): retrying cannot help.
CODE_TABLE = CodeTable(_CODES, ranges=((132000, 132999, (C.PERMANENT, "channel")),))


def classify_code(code: int | None, http_status: int | None = None) -> tuple[SendErrorClass, str]:
    """The class and scope for a WhatsApp error ``code`` (and the HTTP status when there was one)."""
    return CODE_TABLE.classify(code, http_status)


def error_from_response(
    status: int, body: Any, headers: Mapping[str, str], *, secrets: Iterable[str] = ()
) -> SendError:
    """A classified ``SendError`` from a failed Graph API response, with no secret in it."""
    return _meta_error(status, body, headers, table=CODE_TABLE, secrets=secrets)


def status_error(errors: Any) -> dict[str, Any]:
    """The ``error`` dict of a failed ``StatusUpdate``: class, provider_code, title, message."""
    first: Mapping[str, Any] = {}
    if isinstance(errors, list):
        first = next((e for e in errors if isinstance(e, Mapping)), {})
    code = int_or_none(first.get("code"))
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
