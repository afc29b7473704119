"""What a channel cannot carry: a draft checked against the channel type's capability manifest."""

from __future__ import annotations

from typing import Any

from hub.channel import Channel
from hub.models import MessageKind
from hub.outbound.draft import Draft

__all__ = ["check_capabilities"]


def check_capabilities(channel_cls: type[Channel], req: Draft) -> list[dict[str, Any]]:
    """What in ``req`` the channel cannot send, as field errors (empty when all is fine)."""
    caps = channel_cls.capabilities
    errs: list[dict[str, Any]] = []
    kind = req.kind()
    parts = [req.text, req.attachments, req.template, req.interactive, req.reaction]
    if not any(p for p in parts):
        return [
            {
                "field": "text",
                "message": "a message needs text, attachments, a template, interactive choices or a reaction",
            }
        ]
    if req.reaction is not None and any(p for p in parts[:4]):
        errs.append({"field": "reaction", "message": "a reaction is sent on its own"})
    if req.template is not None and (req.text or req.attachments or req.interactive):
        errs.append(
            {
                "field": "template",
                "message": "a template carries its own content; put parameters in template.components",
            }
        )
    if kind not in caps.sendable_kinds() and not (kind is MessageKind.TEXT and caps.subject):
        errs.append(
            {
                "field": _kind_field(kind),
                "message": f"channel type {channel_cls.type_name!r} cannot send {kind.value} messages",
            }
        )
    if req.text is not None:
        if not req.text.strip() and not req.attachments:
            errs.append({"field": "text", "message": "text is empty"})
        if caps.max_text_length and len(req.text) > caps.max_text_length:
            errs.append(
                {
                    "field": "text",
                    "message": f"text is {len(req.text)} characters; this channel "
                    f"allows {caps.max_text_length}",
                }
            )
    if len(req.attachments) > caps.max_attachments:
        errs.append({"field": "attachments", "message": f"at most {caps.max_attachments} attachment(s)"})
    for i, att in enumerate(req.attachments):
        if att.kind not in caps.media:
            errs.append(
                {
                    "field": f"attachments.{i}.kind",
                    "message": f"this channel cannot send {att.kind.value} attachments",
                }
            )
        limit = caps.max_attachment_bytes.get(att.kind)
        if limit and att.size and att.size > limit:
            errs.append(
                {
                    "field": f"attachments.{i}.size",
                    "message": f"{att.size} bytes is over this channel's {att.kind.value} limit of "
                    f"{limit} bytes",
                }
            )
        if att.caption and not caps.captions:
            errs.append({"field": f"attachments.{i}.caption", "message": "this channel has no captions"})
    if req.interactive is not None:
        n = len(req.interactive.choices)
        cap = caps.max_interactive_rows if req.interactive.button else caps.max_interactive_buttons
        if n > cap:
            errs.append({"field": "interactive.choices", "message": f"{n} choices; at most {cap}"})
    if req.reply_to_message_id and not caps.replies:
        errs.append({"field": "reply_to_message_id", "message": "this channel cannot quote a message"})
    if req.subject and not caps.subject:
        errs.append({"field": "subject", "message": "this channel has no subject line"})
    return errs


def _kind_field(kind: MessageKind) -> str:
    return {
        MessageKind.TEMPLATE: "template",
        MessageKind.INTERACTIVE: "interactive",
        MessageKind.REACTION: "reaction",
        MessageKind.TEXT: "text",
    }.get(kind, "attachments")
