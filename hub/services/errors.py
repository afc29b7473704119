"""The errors services raise; the web layer renders each in the one JSON error shape.

"Absent" and "not yours" are the same ``NotFound``, so a read outside the scope tells nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Conflict", "Forbidden", "Invalid", "NotFound", "ServiceError"]


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Invalid(ServiceError):
    """A request that is well-formed but names something that does not fit (a field-level 422)."""

    status = 422
    code = "validation_failed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__("the request is invalid", [{"field": field, "message": message}])
