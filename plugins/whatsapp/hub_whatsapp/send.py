"""Outbound: request bodies for ``POST /{phone-number-id}/messages`` built from ``OutboundMessage``.

Pure functions: ``build_message_body`` turns one normalized message (with the media already
resolved to an id or link) into the JSON Meta documents, or raises a ``SendError`` naming what is
missing. The HTTP side lives in ``graph.py``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from hub.errors import SendError, SendErrorClass
from hub.models import AttachmentKind, ContactRef, MessageKind, OutboundAttachment, OutboundMessage

__all__ = [
    "MEDIA_TYPES",
    "build_message_body",
    "build_read_body",
    "media_object",
    "recipient_fields",
    "recipient_key",
]

# Attachment kind -> WhatsApp message type.
MEDIA_TYPES: dict[AttachmentKind, str] = {
    AttachmentKind.IMAGE: "image",
    AttachmentKind.AUDIO: "audio",
    AttachmentKind.VIDEO: "video",
    AttachmentKind.FILE: "document",
    AttachmentKind.STICKER: "sticker",
}
# Meta accepts a caption on these media types only.
_CAPTIONED = {"image", "video", "document"}
DEFAULT_LIST_BUTTON = "Choose"


def _permanent(message: str) -> SendError:
    return SendError(SendErrorClass.PERMANENT, message)


def _id(contact: ContactRef, prefix: str) -> str | None:
    for value in contact.ids:
        if value.startswith(prefix) and value[len(prefix) :].strip():
            return value[len(prefix) :].strip()
    return None


def recipient_fields(contact: ContactRef) -> dict[str, str]:
    """``{"to": wa_id}``, or ``{"recipient": bsuid}`` for a user known only by a business-scoped id.

    Meta documents ``recipient`` for business-scoped user ids (usernames, 2026); when both are
    known the phone-based ``to`` is used, as Meta gives ``to`` precedence anyway.
    """
    wa_id = _id(contact, "wa:")
    if wa_id is None and contact.phone:
        digits = "".join(ch for ch in contact.phone if ch.isdigit())
        wa_id = digits or None
    if wa_id:
        return {"to": wa_id}
    bsuid = _id(contact, "bsuid:")
    if bsuid:
        return {"recipient": bsuid}
    raise SendError(
        SendErrorClass.RECIPIENT,
        "the contact has no WhatsApp id (wa:...) or business-scoped user id (bsuid:...)",
    )


def recipient_key(contact: ContactRef) -> str | None:
    """The id the pair rate limit is keyed on (wa_id, else the bsuid), or None."""
    try:
        fields = recipient_fields(contact)
    except SendError:
        return None
    return fields.get("to") or fields.get("recipient")


def media_object(attachment: OutboundAttachment, media_id: str | None, wa_type: str) -> dict[str, Any]:
    """The ``image``/``document``/... object: by uploaded id or public link, caption, filename."""
    obj: dict[str, Any] = {}
    if media_id or attachment.media_id:
        obj["id"] = media_id or attachment.media_id
    elif attachment.url:
        obj["link"] = attachment.url
    else:
        raise _permanent(f"the {wa_type} attachment has no media_id, url or path")
    if attachment.caption and wa_type in _CAPTIONED:
        obj["caption"] = attachment.caption
    filename = attachment.filename or (PurePath(attachment.path).name if attachment.path else None)
    if wa_type == "document" and filename:
        obj["filename"] = filename
    return obj


def _interactive(message: OutboundMessage) -> dict[str, Any]:
    choices = message.interactive
    if not choices:
        raise _permanent("an interactive message needs at least one button or row")
    if not message.text:
        raise _permanent("an interactive message needs a body text")
    interactive: dict[str, Any] = {"body": {"text": message.text}}
    use_list = message.interactive_button is not None or len(choices) > 3
    if message.interactive_header:
        interactive["header"] = {"type": "text", "text": message.interactive_header}
    if footer := message.data.get("footer"):
        interactive["footer"] = {"text": str(footer)}
    if not use_list:
        interactive["type"] = "button"
        interactive["action"] = {
            "buttons": [{"type": "reply", "reply": {"id": c.id, "title": c.title}} for c in choices]
        }
        return interactive
    if len(choices) > 10:
        raise _permanent("a WhatsApp list message carries at most 10 rows")
    rows = []
    for c in choices:
        row = {"id": c.id, "title": c.title}
        if c.description:
            row["description"] = c.description
        rows.append(row)
    section: dict[str, Any] = {"rows": rows}
    if title := message.data.get("section_title"):
        section["title"] = str(title)
    interactive["type"] = "list"
    interactive["action"] = {
        "button": message.interactive_button or DEFAULT_LIST_BUTTON,
        "sections": [section],
    }
    return interactive


def build_message_body(message: OutboundMessage, media_id: str | None = None) -> dict[str, Any]:
    """The JSON body for one send. ``media_id`` is the id an upload of a local file returned."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    body.update(recipient_fields(message.recipient))
    kind = message.kind
    if kind is not MessageKind.REACTION:
        # Meta echoes it in every status of the message, so a status can name the hub's message
        # even when the send's answer was lost (a crash mid-send): the capability client_reference.
        body["biz_opaque_callback_data"] = message.id
    if message.reply_to_external_id and kind is not MessageKind.REACTION:
        body["context"] = {"message_id": message.reply_to_external_id}

    if kind is MessageKind.TEXT:
        if not message.text:
            raise _permanent("a text message needs text")
        body["type"] = "text"
        body["text"] = {"body": message.text, "preview_url": message.preview_url}
    elif kind in (
        MessageKind.IMAGE,
        MessageKind.AUDIO,
        MessageKind.VIDEO,
        MessageKind.FILE,
        MessageKind.STICKER,
    ):
        if len(message.attachments) != 1:
            raise _permanent(f"a {kind.value} message carries exactly one attachment")
        attachment = message.attachments[0]
        wa_type = MEDIA_TYPES[attachment.kind]
        if attachment.caption is None and message.text and wa_type in _CAPTIONED:
            attachment = attachment.model_copy(update={"caption": message.text})
        body["type"] = wa_type
        body[wa_type] = media_object(attachment, media_id, wa_type)
    elif kind is MessageKind.TEMPLATE:
        if message.template is None:
            raise _permanent("a template message needs a template")
        template: dict[str, Any] = {
            "name": message.template.name,
            "language": {"code": message.template.language},
        }
        if message.template.components:
            template["components"] = message.template.components
        body["type"] = "template"
        body["template"] = template
    elif kind is MessageKind.REACTION:
        if not message.reply_to_external_id:
            raise _permanent("a reaction needs the id of the message it reacts to")
        body["type"] = "reaction"
        body["reaction"] = {
            "message_id": message.reply_to_external_id,
            "emoji": message.reaction_emoji or "",  # "" removes an earlier reaction
        }
    elif kind is MessageKind.INTERACTIVE:
        body["type"] = "interactive"
        body["interactive"] = _interactive(message)
    elif kind is MessageKind.LOCATION:
        loc = message.data.get("location")
        if not isinstance(loc, dict) or loc.get("latitude") is None or loc.get("longitude") is None:
            raise _permanent("a location message needs data.location with latitude and longitude")
        location = {k: loc[k] for k in ("latitude", "longitude", "name", "address") if loc.get(k)}
        location["latitude"], location["longitude"] = loc["latitude"], loc["longitude"]
        body["type"] = "location"
        body["location"] = location
    else:
        raise _permanent(f"WhatsApp cannot send a message of kind {kind.value!r}")
    return body


def build_read_body(external_id: str) -> dict[str, Any]:
    """Mark an inbound message (and the ones before it) as read."""
    return {"messaging_product": "whatsapp", "status": "read", "message_id": external_id}
