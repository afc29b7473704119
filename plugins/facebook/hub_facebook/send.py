"""Outbound: Send API request bodies (``POST /me/messages``) built from ``OutboundMessage``.

Pure functions: a normalized message (with any upload already turned into an attachment id) to
the JSON Meta documents, or a ``SendError`` naming what is wrong. HTTP lives in ``graph.py``.
"""

from __future__ import annotations

from typing import Any

from hub.errors import SendError, SendErrorClass
from hub.models import AttachmentKind, ContactRef, MessageKind, OutboundMessage

from .parse import OUTBOUND_PREFIX

__all__ = [
    "ATTACHMENT_TYPES",
    "MAX_QUICK_REPLIES",
    "build_message_body",
    "build_sender_action",
    "recipient_id",
]

ATTACHMENT_TYPES: dict[AttachmentKind, str] = {
    AttachmentKind.IMAGE: "image",
    AttachmentKind.AUDIO: "audio",
    AttachmentKind.VIDEO: "video",
    AttachmentKind.FILE: "file",
}
MAX_QUICK_REPLIES = 13
_QUICK_REPLY_TITLE = 20  # Meta cuts quick reply titles at 20 characters
_BUTTON_TITLE = 20


def _permanent(message: str) -> SendError:
    return SendError(SendErrorClass.PERMANENT, message)


def recipient_id(contact: ContactRef, prefix: str) -> str:
    """The PSID (``psid:``) or IGSID (``igsid:``) to send to."""
    for value in contact.ids:
        if value.startswith(prefix) and value[len(prefix) :].strip():
            return value[len(prefix) :].strip()
    raise SendError(SendErrorClass.RECIPIENT, f"the contact has no {prefix.rstrip(':')} id on this channel")


def _attachment(message: OutboundMessage, attachment_id: str | None) -> dict[str, Any]:
    if len(message.attachments) != 1:
        raise _permanent("the Send API carries exactly one attachment per message")
    att = message.attachments[0]
    atype = ATTACHMENT_TYPES.get(att.kind)
    if atype is None:
        raise _permanent(f"this channel cannot send {att.kind.value} attachments")
    payload: dict[str, Any]
    if attachment_id or att.media_id:
        payload = {"attachment_id": attachment_id or att.media_id}
    elif att.url:
        payload = {"url": att.url, "is_reusable": True}
    else:
        raise _permanent(f"the {atype} attachment has no media_id, url or uploaded file")
    return {"type": atype, "payload": payload}


def _quick_replies(message: OutboundMessage) -> dict[str, Any]:
    if not message.text:
        raise _permanent("quick replies need a text to go with them")
    if len(message.interactive) > MAX_QUICK_REPLIES:
        raise _permanent(f"at most {MAX_QUICK_REPLIES} quick replies")
    return {
        "text": message.text,
        "quick_replies": [
            {"content_type": "text", "title": c.title[:_QUICK_REPLY_TITLE], "payload": c.id}
            for c in message.interactive
        ],
    }


def _button_template(message: OutboundMessage) -> dict[str, Any]:
    if not message.text:
        raise _permanent("a button template needs a text")
    buttons = [
        {"type": "postback", "title": c.title[:_BUTTON_TITLE], "payload": c.id} for c in message.interactive
    ]
    return {
        "attachment": {
            "type": "template",
            "payload": {"template_type": "button", "text": message.text, "buttons": buttons},
        }
    }


def _template(message: OutboundMessage, templates: frozenset[str]) -> dict[str, Any]:
    """``template.name`` is Meta's ``template_type``: ``generic`` takes ``components`` as its
    elements; ``button`` takes one component with ``text`` and ``buttons``."""
    tpl = message.template
    if tpl is None:
        raise _permanent("a template message needs a template")
    if tpl.name not in templates:
        raise _permanent(f"template must be one of {sorted(templates)}, not {tpl.name!r}")
    payload: dict[str, Any] = {"template_type": tpl.name}
    if tpl.name == "generic":
        if not tpl.components:
            raise _permanent("a generic template needs at least one element in components")
        payload["elements"] = tpl.components
    else:
        first = tpl.components[0] if tpl.components else {}
        if not first.get("text") or not first.get("buttons"):
            raise _permanent("a button template needs components[0] with text and buttons")
        payload.update(text=first["text"], buttons=first["buttons"])
    return {"attachment": {"type": "template", "payload": payload}}


def build_message_body(
    message: OutboundMessage,
    *,
    id_prefix: str,
    window: dict[str, Any],
    attachment_id: str | None = None,
    button_template: bool = True,
    templates: frozenset[str] = frozenset({"generic", "button"}),
    metadata: bool = True,
) -> dict[str, Any]:
    """The JSON body of one send. ``window`` is ``policy.messaging_type``'s answer."""
    kind = message.kind
    content: dict[str, Any]
    if kind is MessageKind.TEXT:
        if not message.text:
            raise _permanent("a text message needs text")
        content = {"text": message.text}
    elif kind in (MessageKind.IMAGE, MessageKind.AUDIO, MessageKind.VIDEO, MessageKind.FILE):
        content = {"attachment": _attachment(message, attachment_id)}
    elif kind is MessageKind.INTERACTIVE:
        if not message.interactive:
            raise _permanent("an interactive message needs at least one choice")
        # Up to 3 choices become postback buttons where allowed; a list menu, or more choices,
        # become quick replies (which disappear once the customer answers).
        as_buttons = button_template and message.interactive_button is None and len(message.interactive) <= 3
        content = _button_template(message) if as_buttons else _quick_replies(message)
    elif kind is MessageKind.TEMPLATE:
        content = _template(message, templates)
    else:
        raise _permanent(f"this channel cannot send a message of kind {kind.value!r}")
    if metadata:
        # Carried back on the echo, so the hub knows its own message even before this call answers.
        content["metadata"] = OUTBOUND_PREFIX + message.id
    body: dict[str, Any] = {"recipient": {"id": recipient_id(message.recipient, id_prefix)}, **window}
    body["message"] = content
    if message.reply_to_external_id:
        body["reply_to"] = {"mid": message.reply_to_external_id}
    return body


def build_sender_action(contact: ContactRef, id_prefix: str, action: str) -> dict[str, Any]:
    """``mark_seen``, ``typing_on`` or ``typing_off`` for one customer."""
    if action not in ("mark_seen", "typing_on", "typing_off"):
        raise _permanent(f"unknown sender action {action!r}")
    return {"recipient": {"id": recipient_id(contact, id_prefix)}, "sender_action": action}
