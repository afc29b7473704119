"""The send API's request body and how the outbound pipeline's refusals are answered over HTTP."""

from __future__ import annotations

import hashlib
import json

from pydantic import ConfigDict, model_validator

from hub.limits import Id
from hub.outbound import Draft
from hub.outbound.refused import Reason

__all__ = ["REFUSED_STATUS", "SendRequest"]

REFUSED_STATUS: dict[Reason, int] = {"not_found": 404, "conflict": 409, "invalid": 422}
"""The HTTP status of each ``SendRefused.reason``."""


class SendRequest(Draft):
    """``POST /api/v1/conversations/{id}/messages``: what an agent sends."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"not": {"required": ["text", "quick_reply_id"]}}
    )

    quick_reply_id: Id | None = None
    """A quick reply to send instead of ``text``: the hub renders its placeholders."""

    @model_validator(mode="after")
    def _text_or_quick_reply(self) -> SendRequest:
        if {"text", "quick_reply_id"} <= self.model_fields_set:
            raise ValueError("give text or quick_reply_id, not both")
        return self

    def fingerprint(self) -> str:
        # A quick reply's rendering may differ between two tries of one request (the contact was
        # renamed meanwhile): the request is the quick reply, not the text it gave.
        if self.quick_reply_id is None:
            return super().fingerprint()
        canonical = json.dumps(self.model_dump(mode="json", exclude={"text"}), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
