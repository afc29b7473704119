"""Pure parsing of WhatsApp Cloud API webhooks into the hub's normalized events.

Everything here is a function of the raw bytes (and the channel's phone number id): no I/O, no
clock. Every ``entry``, ``change``, ``message`` and ``status`` is visited; an element of a type this
module does not know becomes an ``unsupported`` placeholder, and an element that cannot be
attributed to anyone is skipped with a log line. Only a body that is not a WhatsApp webhook at all
raises ``BadPayload``.

Two webhook fields are read: ``messages`` (what customers send, their edits and revokes, and
receipts) and ``smb_message_echoes`` (what the business sent from the WhatsApp Business app or a
linked device on the same number: outbound messages, never customer messages, with ``from`` the
business and ``to`` the customer; their edits and revokes too).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hub_meta.payload import Obj
from hub_meta.payload import as_list as _list
from hub_meta.payload import as_obj as _obj
from hub_meta.payload import id_text as _str
from pydantic import ValidationError

from hub import jsontext
from hub.errors import BadPayload
from hub.models import (
    Attachment,
    AttachmentKind,
    AttachmentState,
    ContactRef,
    Direction,
    InboundMessage,
    InteractiveChoice,
    MessageDeletion,
    MessageEdit,
    MessageKind,
    MessageStatus,
    ParsedEvent,
    ReactionUpdate,
    StatusUpdate,
)

from .errors import status_error

__all__ = ["OBJECT", "b64_to_hex", "parse_body", "parse_timestamp"]

OBJECT = "whatsapp_business_account"

_MEDIA_KINDS: dict[str, AttachmentKind] = {
    "image": AttachmentKind.IMAGE,
    "audio": AttachmentKind.AUDIO,
    "video": AttachmentKind.VIDEO,
    "document": AttachmentKind.FILE,
    "sticker": AttachmentKind.STICKER,
}
_STATUSES: dict[str, MessageStatus] = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "played": MessageStatus.PLAYED,  # a voice message was played: read, and then some
    "failed": MessageStatus.FAILED,
}
# What an edit may change (WhatsApp lets users edit text and media captions).
_EDIT_FIELDS = ("kind", "text", "attachments", "data")
_HEX = set("0123456789abcdef")


def parse_timestamp(value: Any, fallback: datetime) -> datetime:
    """Meta's timestamps are strings of Unix seconds; anything unreadable gives ``fallback``."""
    try:
        return datetime.fromtimestamp(int(str(value).strip()), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def b64_to_hex(value: Any) -> str | None:
    """The webhook's base64 ``sha256`` as lower-case hex (a hex digest passes through)."""
    text = _str(value)
    if not text:
        return None
    if len(text) == 64 and set(text.lower()) <= _HEX:
        return text.lower()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _size(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        size = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


class _Parser:
    def __init__(self, phone_number_id: str, log: logging.Logger, received_at: datetime) -> None:
        self.phone_number_id = phone_number_id
        self.log = log
        self.received_at = received_at
        self.events: list[ParsedEvent] = []

    # ---- envelope ------------------------------------------------------------------------------

    def run(self, payload: Obj) -> list[ParsedEvent]:
        for entry in _list(payload.get("entry")):
            for change in _list(_obj(entry).get("changes")):
                self.change(_obj(entry), _obj(change))
        return self.events

    def change(self, entry: Obj, change: Obj) -> None:
        field = change.get("field")
        if field not in ("messages", "smb_message_echoes"):
            self.log.info("whatsapp: ignoring webhook field %r of account %s", field, entry.get("id"))
            return
        value = _obj(change.get("value"))
        number = _str(_obj(value.get("metadata")).get("phone_number_id"))
        if number != self.phone_number_id:
            self.log.info(
                "whatsapp: skipping a change for phone number %r (this channel is %r)",
                number,
                self.phone_number_id,
            )
            return
        contacts = [_obj(c) for c in _list(value.get("contacts"))]
        for message in _list(value.get("messages")):
            if isinstance(message, Mapping):
                self.message(message, contacts)
        for echo in _list(value.get("message_echoes")):
            if isinstance(echo, Mapping):
                self.echo(echo, contacts)
        for status in _list(value.get("statuses")):
            if isinstance(status, Mapping):
                self.status(status)
        for error in _list(value.get("errors")):
            self.log.warning("whatsapp: the webhook reports an error: %s", error)

    # ---- people --------------------------------------------------------------------------------

    def contact(self, wa_id: str, user_id: str, contacts: list[Obj]) -> ContactRef | None:
        """The sender, by phone-based wa_id and/or business-scoped user id, with its profile."""
        profile: Obj = {}
        for c in contacts:
            c_wa, c_user = _str(c.get("wa_id")), _str(c.get("user_id"))
            if (wa_id and c_wa == wa_id) or (user_id and c_user == user_id):
                wa_id = wa_id or c_wa
                user_id = user_id or c_user
                profile = _obj(c.get("profile"))
                break
        ids = []
        if wa_id:
            ids.append(f"wa:{wa_id}")
        if user_id:
            ids.append(f"bsuid:{user_id}")
        if not ids:
            return None
        name = _str(profile.get("name")) or None
        return ContactRef(ids=ids, name=name, phone=wa_id or None)

    # ---- messages ------------------------------------------------------------------------------

    def echo(self, msg: Obj, contacts: list[Obj]) -> None:
        """A message the business sent from the WhatsApp Business app: outbound, to ``to``."""
        to = "".join(ch for ch in _str(msg.get("to")) if ch.isdigit())  # "+1 650..." -> wa_id
        contact = self.contact(to, _str(msg.get("to_user_id")), contacts)
        self.message(msg, contacts, contact=contact, direction=Direction.OUTBOUND)

    def message(
        self,
        msg: Obj,
        contacts: list[Obj],
        *,
        contact: ContactRef | None = None,
        direction: Direction = Direction.INBOUND,
    ) -> None:
        msg_id = _str(msg.get("id"))
        if not msg_id:
            self.log.warning("whatsapp: skipping a message without an id: %s", msg)
            return
        if direction is Direction.INBOUND:
            contact = self.contact(_str(msg.get("from")), _str(msg.get("from_user_id")), contacts)
        mtype = _str(msg.get("type"))
        if mtype == "system":
            contact = self.system_contact(msg, contact)
        if contact is None:
            self.log.warning("whatsapp: skipping message %s: no customer id", msg_id)
            return
        timestamp = parse_timestamp(msg.get("timestamp"), self.received_at)
        if mtype in ("edit", "revoke"):
            change = self.change_of(mtype, msg, contact, direction, timestamp)
            if change is not None:
                self.events.append(change)
                return
        if mtype == "reaction":
            reaction = _obj(msg.get("reaction"))
            target = _str(reaction.get("message_id"))
            if target:
                emoji = reaction.get("emoji")
                self.events.append(
                    ReactionUpdate(
                        target_external_id=target,
                        contact=contact,
                        emoji=emoji if isinstance(emoji, str) else None,
                        timestamp=timestamp,
                        external_id=msg_id,
                    )
                )
                return
        fields = self.content(mtype, msg)
        context = _obj(msg.get("context"))
        data = dict(fields.pop("data", {}))
        if "referral" in msg:
            data["referral"] = msg["referral"]
        if context.get("referred_product") is not None:
            data["referred_product"] = context["referred_product"]
        if msg.get("errors") and "errors" not in data:
            data["errors"] = msg["errors"]
        try:
            event = InboundMessage(
                external_id=msg_id,
                contact=contact,
                direction=direction,
                timestamp=timestamp,
                reply_to_external_id=_str(context.get("id")) or None,
                forwarded=bool(context.get("forwarded") or context.get("frequently_forwarded")),
                data=data,
                **fields,
            )
        except ValidationError as exc:  # a shape we misread must not lose the message
            self.log.warning("whatsapp: message %s kept as unsupported: %s", msg_id, exc)
            event = InboundMessage(
                external_id=msg_id,
                contact=contact,
                direction=direction,
                timestamp=timestamp,
                kind=MessageKind.UNSUPPORTED,
                data={"raw": dict(msg)},
            )
        self.events.append(event)

    def change_of(
        self, mtype: str, msg: Obj, contact: ContactRef, direction: Direction, timestamp: datetime
    ) -> MessageEdit | MessageDeletion | None:
        """An ``edit`` or ``revoke`` of an earlier message; None when it names no message (it is
        then kept as an unsupported placeholder)."""
        body = _obj(msg.get(mtype))
        target = _str(body.get("original_message_id"))
        if not target:
            self.log.warning("whatsapp: %s %s names no original message", mtype, msg.get("id"))
            return None
        common = {
            "target_external_id": target,
            "external_id": _str(msg.get("id")),
            "contact": contact,
            "direction": direction,
            "timestamp": timestamp,
        }
        if mtype == "revoke":
            return MessageDeletion(**common)
        edited = _obj(body.get("message"))
        fields = self.content(_str(edited.get("type")), edited)
        try:
            return MessageEdit(**common, **{k: v for k, v in fields.items() if k in _EDIT_FIELDS})
        except ValidationError as exc:
            self.log.warning("whatsapp: edit %s kept as unsupported: %s", msg.get("id"), exc)
            return None

    def system_contact(self, msg: Obj, contact: ContactRef | None) -> ContactRef | None:
        """System messages carry no contacts array; a number change names the new wa_id."""
        system = _obj(msg.get("system"))
        ids = list(contact.ids) if contact else []
        new_wa = _str(system.get("wa_id")) or _str(system.get("new_wa_id"))
        new_user = _str(system.get("user_id")) or _str(system.get("new_user_id"))
        if new_wa:
            ids.append(f"wa:{new_wa}")
        if new_user:
            ids.append(f"bsuid:{new_user}")
        if not ids:
            return None
        return ContactRef(ids=ids, phone=contact.phone if contact else None)

    def content(self, mtype: str, msg: Obj) -> dict[str, Any]:
        """Kind-specific fields of an ``InboundMessage`` (``data`` included)."""
        body = _obj(msg.get(mtype)) if mtype else {}
        if mtype == "text":
            return {"kind": MessageKind.TEXT, "text": body.get("body")}
        if mtype in _MEDIA_KINDS:
            kind = _MEDIA_KINDS[mtype]
            media_id = _str(body.get("id")) or None
            attachment = Attachment(
                kind=kind,
                mime_type=_str(body.get("mime_type")) or None,
                filename=_str(body.get("filename")) or None,
                size=_size(body.get("file_size")),
                caption=body.get("caption") if isinstance(body.get("caption"), str) else None,
                external_id=media_id,
                source_url=_str(body.get("url")) or None,
                sha256=b64_to_hex(body.get("sha256")),
                state=AttachmentState.PENDING,
                voice=bool(body.get("voice")),
                animated=bool(body.get("animated")),
            )
            return {"kind": MessageKind(kind.value), "attachments": [attachment]}
        if mtype == "location":
            keys = ("latitude", "longitude", "name", "address", "url")
            return {
                "kind": MessageKind.LOCATION,
                "data": {"location": {k: body.get(k) for k in keys}},
            }
        if mtype == "contacts":
            return {"kind": MessageKind.CONTACTS, "data": {"contacts": _list(msg.get("contacts"))}}
        if mtype == "interactive":
            return self.interactive(msg, body)
        if mtype == "button":
            choice = InteractiveChoice(id=_str(body.get("payload")), title=_str(body.get("text")))
            return {
                "kind": MessageKind.INTERACTIVE_REPLY,
                "interactive": choice,
                "text": choice.title,
            }
        if mtype == "order":
            return {
                "kind": MessageKind.ORDER,
                "text": body.get("text") if isinstance(body.get("text"), str) else None,
                "data": {"order": dict(body)},
            }
        if mtype == "system":
            return {
                "kind": MessageKind.SYSTEM,
                "text": body.get("body") if isinstance(body.get("body"), str) else None,
                "data": {"system": dict(body)},
            }
        if mtype == "unsupported":
            data: dict[str, Any] = {"raw": dict(msg)}
            if msg.get("errors"):
                data["errors"] = msg["errors"]
            return {"kind": MessageKind.UNSUPPORTED, "data": data}
        self.log.info("whatsapp: message %s has unknown type %r", msg.get("id"), mtype)
        return {"kind": MessageKind.UNSUPPORTED, "data": {"raw": dict(msg)}}

    def interactive(self, msg: Obj, body: Obj) -> dict[str, Any]:
        itype = _str(body.get("type"))
        if itype in ("button_reply", "list_reply"):
            reply = _obj(body.get(itype))
            description = reply.get("description")
            choice = InteractiveChoice(
                id=_str(reply.get("id")),
                title=_str(reply.get("title")),
                description=description if isinstance(description, str) else None,
            )
            return {
                "kind": MessageKind.INTERACTIVE_REPLY,
                "interactive": choice,
                "text": choice.title,
            }
        if itype == "nfm_reply":  # a WhatsApp Flow was submitted
            reply = _obj(body.get("nfm_reply"))
            response: Any = reply.get("response_json")
            if isinstance(response, str):
                try:
                    response = json.loads(response)
                except ValueError:
                    pass
            return {
                "kind": MessageKind.INTERACTIVE_REPLY,
                "text": reply.get("body") if isinstance(reply.get("body"), str) else None,
                "data": {"flow_reply": {"name": reply.get("name"), "response": response}},
            }
        self.log.info("whatsapp: message %s has unknown interactive type %r", msg.get("id"), itype)
        return {"kind": MessageKind.UNSUPPORTED, "data": {"raw": dict(msg)}}

    # ---- statuses ------------------------------------------------------------------------------

    def status(self, st: Obj) -> None:
        msg_id = _str(st.get("id"))
        status = _STATUSES.get(_str(st.get("status")))
        if not msg_id or status is None:
            # e.g. "deleted": no hub status matches.
            self.log.info("whatsapp: ignoring status %r of message %r", st.get("status"), msg_id)
            return
        recipient = self.contact(_str(st.get("recipient_id")), _str(st.get("recipient_user_id")), [])
        data: dict[str, Any] = {}
        for key in ("conversation", "pricing", "biz_opaque_callback_data", "recipient_type"):
            if st.get(key) is not None:
                data[key] = st[key]
        error = None
        if status is MessageStatus.FAILED:
            error = status_error(st.get("errors"))
            if st.get("errors"):
                data["errors"] = st["errors"]
        self.events.append(
            StatusUpdate(
                external_id=msg_id,
                status=status,
                timestamp=parse_timestamp(st.get("timestamp"), self.received_at),
                recipient=recipient,
                error=error,
                client_ref=_str(st.get("biz_opaque_callback_data")) or None,
                data=data,
            )
        )


def parse_body(
    body: bytes, *, phone_number_id: str, log: logging.Logger, received_at: datetime
) -> list[ParsedEvent]:
    """Parse one webhook body; ``BadPayload`` only for a body that is no WhatsApp webhook."""
    try:
        payload = jsontext.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"the body is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(payload, dict):
        raise BadPayload("the body is not a JSON object")
    if payload.get("object") != OBJECT:
        raise BadPayload(f"object must be {OBJECT!r}, got {payload.get('object')!r}")
    return _Parser(phone_number_id, log, received_at).run(payload)
