"""What an author asks the hub to send, before it is stored: the content of one outbound message.

Transport-agnostic on purpose: the app API's request body (``hub.web.sends.SendRequest``) is one of
these, and an automation or bot enqueues the same shape without going through HTTP.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from hub.limits import Id, LongText, Name, ShortText, Text, Url, bounded_json, omit_null
from hub.models import AttachmentKind, InteractiveChoice, MessageKind, Template

__all__ = ["AttachmentIn", "Draft", "InteractiveIn", "ReactionIn"]


def _one_source_schema(schema: dict[str, Any]) -> None:
    omit_null("url", "upload_id", "media_id")(schema)
    schema["oneOf"] = [{"required": [k]} for k in ("url", "upload_id", "media_id")]


class AttachmentIn(BaseModel):
    # Exactly one source; null is taken as absent, and left out of the schema so that oneOf holds.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_source_schema)

    kind: AttachmentKind
    url: Annotated[Url, StringConstraints(min_length=1)] | None = None
    upload_id: Annotated[Id, StringConstraints(min_length=1)] | None = Field(
        default=None, description="an upload_id from POST /api/v1/uploads"
    )
    media_id: Annotated[Id, StringConstraints(min_length=1)] | None = Field(
        default=None, description="a media id the provider already holds"
    )
    filename: Annotated[str, StringConstraints(max_length=255)] | None = None
    mime_type: Name | None = None
    size: StrictInt | None = Field(default=None, ge=0, le=2**53)
    caption: Text | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentIn:
        if sum(x is not None for x in (self.url, self.upload_id, self.media_id)) != 1:
            raise ValueError("give exactly one of url, upload_id, media_id")
        return self


class ReactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: Id
    emoji: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="empty string removes the reaction"
    )


class ChoiceIn(InteractiveChoice):
    """An offered button or list row, bounded (providers cap them far lower: WhatsApp 20-72)."""

    id: Id
    title: Name
    description: ShortText | None = None


class TemplateIn(Template):
    """A template to send; ``components`` is the provider's free-form shape, bounded as a whole."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    language: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    components: Annotated[list[dict[str, Any]], Field(max_length=20), bounded_json(32 * 1024)] = Field(
        default_factory=list
    )


class InteractiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    header: ShortText | None = None
    button: Name | None = Field(default=None, description="list menu label; omit for reply buttons")
    choices: list[ChoiceIn] = Field(min_length=1, max_length=100)


class Draft(BaseModel):
    """One message to send: text, attachments, a template, interactive choices or a reaction.

    Every field is bounded (``hub.limits``; README.md lists the limits)."""

    model_config = ConfigDict(extra="forbid")

    text: LongText | None = None
    subject: Text | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    template: TemplateIn | None = None
    interactive: InteractiveIn | None = None
    reaction: ReactionIn | None = None
    reply_to_message_id: Id | None = None
    preview_url: StrictBool = False

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
