"""The send API's request body and how the outbound pipeline's refusals are answered over HTTP."""

from __future__ import annotations

from hub.outbound import Draft
from hub.outbound.refused import Reason

__all__ = ["REFUSED_STATUS", "SendRequest"]

REFUSED_STATUS: dict[Reason, int] = {"not_found": 404, "conflict": 409, "invalid": 422}
"""The HTTP status of each ``SendRefused.reason``."""


class SendRequest(Draft):
    """``POST /api/v1/conversations/{id}/messages``: what an agent sends."""
