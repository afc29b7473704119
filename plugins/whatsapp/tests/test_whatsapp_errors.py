"""The code table and the error shape, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hub_whatsapp.errors import classify_code, error_from_response, retry_after_seconds

from hub.errors import SendErrorClass as C


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (130429, 400, (C.RATE_LIMITED, "channel")),
        (131056, 400, (C.RATE_LIMITED, "recipient")),
        (131047, None, (C.NEEDS_TEMPLATE, "channel")),
        (132015, 400, (C.PERMANENT, "channel")),
        (190, 401, (C.AUTH, "channel")),
        (None, 401, (C.AUTH, "channel")),
        (None, 429, (C.RATE_LIMITED, "channel")),
        (None, 503, (C.RETRYABLE, "channel")),
        (None, 418, (C.PERMANENT, "channel")),
        (None, None, (C.PERMANENT, "channel")),
        (424242, None, (C.PERMANENT, "channel")),  # unknown code in a failed status
    ],
)
def test_classify_code(code: int | None, status: int | None, expected: tuple[C, str]) -> None:
    assert classify_code(code, status) == expected


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"Retry-After": "12"}) == 12.0
    assert retry_after_seconds({"retry-after": later}, now=now) == 30.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "-5"}) == 0.0


def test_error_from_response_minimal_body() -> None:
    error = error_from_response(400, {"error": {"code": "131026"}}, {})
    assert error.error_class is C.RECIPIENT
    assert error.provider_code == "131026"
    assert error.message == "Graph API answered HTTP 400"


def test_error_from_response_redacts() -> None:
    body = {"error": {"message": "bad token abc123", "code": 190, "error_data": {"details": "abc123"}}}
    error = error_from_response(401, body, {}, secrets=["abc123"])
    assert "abc123" not in error.message + str(error.title) + str(error.details)
    assert error.message == "bad token ***"  # details already in the message
