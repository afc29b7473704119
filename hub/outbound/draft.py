"""What an author asks the hub to send, before it is stored: the content of one outbound message.

Transport-agnostic on purpose: the app API's request body (``hub.web.sends.SendRequest``) is one of
these, and an automation or bot enqueues the same shape without going through HTTP.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.models import AttachmentKind, InteractiveChoice, MessageKind, Template

__all__ = ["AttachmentIn", "Draft", "InteractiveIn", "ReactionIn"]


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AttachmentKind
    url: str | None = None
    upload_id: str | None = None
    media_id: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    size: int | None = Field(default=None, ge=0)
    caption: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentIn:
        if sum(x is not None for x in (self.url, self.upload_id, self.media_id)) != 1:
            raise ValueError("give exactly one of url, upload_id, media_id")
        return self


class ReactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str
    emoji: str = Field(description="empty string removes the reaction")


class InteractiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1)
    header: str | None = None
    button: str | None = Field(default=None, description="list menu label; omit for reply buttons")
    choices: list[InteractiveChoice] = Field(min_length=1)


class Draft(BaseModel):
    """One message to send: text, attachments, a template, interactive choices or a reaction."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    subject: str | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list)
    template: Template | None = None
    interactive: InteractiveIn | None = None
    reaction: ReactionIn | None = None
    reply_to_message_id: str | None = None
    preview_url: bool = False

    def kind(self) -> MessageKind:
        if self.reaction is not None:
            return MessageKind.REACTION
        if self.template is not None:
            return MessageKind.TEMPLATE
        if self.interactive is not None:
            return MessageKind.INTERACTIVE
        if self.attachments:
            return MessageKind(self.attachments[0].kind.value)
        return MessageKind.TEXT

    def fingerprint(self) -> str:
        """A hash of the content, so a reused ``Idempotency-Key`` with other content is caught."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
