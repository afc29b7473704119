"""One fetched mail (its RFC 5322 bytes) to normalized events. Pure: no I/O, no clock.

* A customer's mail becomes one ``InboundMessage`` (kind ``email``): the sender (or the Reply-To
  of a web-form relay), subject, date, the new text with the quoted text split off, the full body
  and a sanitised HTML copy in ``data``, attachments and inline images once each, the other
  recipients in ``cc``, and ``thread_refs`` (In-Reply-To first, then References newest first).
* Mail sent from the channel's own address (a colleague's reply, a copy found in the mailbox) is
  recorded as ``outbound``, never as customer text.
* A bounce (DSN, ``multipart/report; report-type=delivery-status``) becomes a ``StatusUpdate``
  (failed, with the reason) on the Message-ID of the mail it returns; never a message.
* An auto-reply (RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, ``Precedence: auto_reply / bulk /
  junk``) is never a message either: when it answers one of the hub's own mails it counts as proof
  of delivery (``delivered``), otherwise it is dropped with a log line. The raw mail stays stored.
* A reaction to a mail (an emoji, RFC 9078 ``Content-Disposition: reaction``, or Gmail's
  ``text/vnd.google.email-reaction+json`` part) becomes a ``ReactionUpdate`` on the mail its
  ``In-Reply-To`` names, not a message: its text part is only a fallback for clients without
  reactions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from email.message import Message
from typing import Any

from hub.models import (
    Attachment,
    AttachmentKind,
    ContactRef,
    Direction,
    InboundMessage,
    MessageKind,
    MessageStatus,
    ParsedEvent,
    ReactionUpdate,
    StatusUpdate,
)

from .html import html_to_text, sanitize_html
from .mime import (
    Address,
    addresses,
    header_text,
    leaf_parts,
    message_date,
    message_id_of,
    msg_ids,
    part_text,
    read_message,
)
from .quotes import split_quoted

__all__ = ["auto_reply_reason", "is_own_message_id", "parse_mail", "reaction_emoji"]

_AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponse")


def is_own_message_id(message_id: str, own_address: str) -> bool:
    """True for a Message-ID the channel made for one of its sends (see ``compose.message_id``)."""
    domain = own_address.rpartition("@")[2].lower()
    return message_id.startswith("<hub-") and message_id.lower().endswith(f"@{domain}>")


def auto_reply_reason(message: Message) -> str | None:
    """Why ``message`` is an automatic reply (RFC 3834 and the common vendor headers), or None."""
    auto = header_text(message, "auto-submitted").lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    for name in _AUTO_HEADERS:
        if message.get(name) is not None:
            return f"{name} header"
    precedence = header_text(message, "precedence").lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    return None


def _is_dsn(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type") or "").lower() == "delivery-status"
    )


_GMAIL_REACTION = "text/vnd.google.email-reaction+json"


def reaction_emoji(message: Message) -> str | None:
    """The emoji of a reaction mail (RFC 9078, or Gmail's JSON part), or None for any other mail."""
    for part in leaf_parts(message):
        disposition = str(part.get("content-disposition") or "").split(";", 1)[0].strip().lower()
        if disposition == "reaction" and part.get_content_type() == "text/plain":
            # RFC 9078: one or more emoji, separated by white space.
            return " ".join(part_text(part).split()) or None
        if part.get_content_type() == _GMAIL_REACTION:
            try:
                emoji = json.loads(part_text(part)).get("emoji")
            except (ValueError, AttributeError):
                return None
            return emoji if isinstance(emoji, str) and emoji else None
    return None


def _contact(addr: Address, **extra: Any) -> ContactRef:
    name, address = addr
    return ContactRef(ids=[f"email:{address}"], name=name or None, email=address, **extra)


def _kind_of(mime: str) -> AttachmentKind:
    major = mime.split("/", 1)[0]
    return {
        "image": AttachmentKind.IMAGE,
        "audio": AttachmentKind.AUDIO,
        "video": AttachmentKind.VIDEO,
    }.get(major, AttachmentKind.FILE)


def _part_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes()
        return b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _bodies(message: Message) -> tuple[Message | None, Message | None]:
    """The text/plain and text/html body parts (``get_body`` skips attachments)."""
    get_body = getattr(message, "get_body", None)
    if get_body is None:
        return None, None
    plain = get_body(preferencelist=("plain",))
    html = get_body(preferencelist=("html",))
    return plain, html


def _attachments(message: Message, message_id: str, bodies: set[int]) -> list[Attachment]:
    found: list[Attachment] = []
    seen: set[tuple[str, str | None]] = set()
    for index, part in enumerate(leaf_parts(message)):
        if id(part) in bodies:
            continue
        mime = part.get_content_type()
        data = _part_bytes(part)
        filename = part.get_filename()
        if filename is None and mime == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            subject = header_text(first, "subject") if isinstance(first, Message) else ""
            filename = f"{subject or 'message'}.eml"
        cids = msg_ids(header_text(part, "content-id"))
        content_id = cids[0] if cids else None
        if mime.startswith("text/") and filename is None and content_id is None:
            continue  # a stray text part (a signature block, a split body): part of the text
        digest = hashlib.sha256(data).hexdigest()
        # The same image attached and inlined (or a client attaching it twice) is shown once.
        key = (digest, filename)
        if key in seen or (content_id and any(a.content_id == content_id for a in found)):
            continue
        seen.add(key)
        found.append(
            Attachment(
                kind=_kind_of(mime),
                mime_type=mime,
                filename=filename,
                size=len(data),
                external_id=f"{message_id}#{index}",
                sha256=digest,
                content_id=content_id.strip("<>") if content_id else None,
            )
        )
    return found


def _bounce(
    message: Message, message_id: str, received_at: datetime, own: str, log: logging.Logger
) -> list[ParsedEvent]:
    """A DSN: a failed (or delivered) status on the returned mail's Message-ID.

    Only for mail the hub sent (its own Message-IDs): a receipt for anything else would wait
    forever for a message that never comes.
    """
    original: str | None = None
    recipients: list[dict[str, str]] = []
    for part in leaf_parts(message):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            if ctype == "message/rfc822":
                inner = part.get_payload()
                headers = inner[0] if isinstance(inner, list) and inner else None
            else:
                headers = read_message(_part_bytes(part))
            if isinstance(headers, Message):
                ids = msg_ids(header_text(headers, "message-id"))
                original = ids[0] if ids else None
        elif ctype == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            for block in blocks[1:]:  # the first block is per-message, the rest per recipient
                if isinstance(block, Message):
                    recipients.append(
                        {
                            "recipient": header_text(block, "final-recipient").rpartition(";")[2].strip(),
                            "action": header_text(block, "action").lower(),
                            "status": header_text(block, "status"),
                            "diagnostic": header_text(block, "diagnostic-code").rpartition(";")[2].strip(),
                        }
                    )
    if original is None:
        original = next(iter(msg_ids(header_text(message, "in-reply-to"))), None)
    if original is None or not is_own_message_id(original, own):
        log.info("mail %s is a delivery report for mail the hub did not send: ignored", message_id)
        return []
    failed = [r for r in recipients if r["action"] == "failed"]
    delivered = [r for r in recipients if r["action"] in ("delivered", "relayed", "expanded")]
    when = message_date(message, received_at)
    if failed or not recipients:
        first = failed[0] if failed else {"status": "", "diagnostic": "", "recipient": ""}
        reason = first["diagnostic"] or header_text(message, "subject") or "the mail was returned"
        return [
            StatusUpdate(
                external_id=original,
                status=MessageStatus.FAILED,
                timestamp=when,
                error={
                    "class": "recipient",
                    "provider_code": first["status"] or None,
                    "title": "Mail returned as undeliverable",
                    "message": reason,
                },
                data={"bounce_message_id": message_id, "recipients": failed},
            )
        ]
    if delivered:
        return [
            StatusUpdate(
                external_id=original,
                status=MessageStatus.DELIVERED,
                timestamp=when,
                data={"dsn_message_id": message_id, "recipients": delivered},
            )
        ]
    return []  # "delayed": the server keeps trying; nothing to record yet


def parse_mail(
    body: bytes,
    *,
    own_address: str,
    received_at: datetime,
    log: logging.Logger | None = None,
) -> list[ParsedEvent]:
    """Normalized events for one mail (see the module docstring)."""
    log = log or logging.getLogger("hub_email")
    message = read_message(body)
    message_id = message_id_of(message, body)
    own = own_address.lower()
    if _is_dsn(message):
        return _bounce(message, message_id, received_at, own, log)
    in_reply_to = msg_ids(header_text(message, "in-reply-to"))
    references = msg_ids(header_text(message, "references"))
    reason = auto_reply_reason(message)
    if reason is not None:
        ours = [m for m in in_reply_to if is_own_message_id(m, own)]
        if ours:
            return [
                StatusUpdate(
                    external_id=ours[0],
                    status=MessageStatus.DELIVERED,
                    timestamp=message_date(message, received_at),
                    data={"auto_reply": reason, "auto_reply_message_id": message_id},
                )
            ]
        log.info("mail %s is an automatic reply (%s): not a customer message", message_id, reason)
        return []

    sender = (addresses(message, "from") or addresses(message, "sender") or [("", "")])[0]
    emoji = reaction_emoji(message)
    if emoji is not None and in_reply_to and sender[1] and sender[1] != own:
        return [
            ReactionUpdate(
                target_external_id=in_reply_to[0],
                contact=_contact(sender),
                emoji=emoji,
                timestamp=message_date(message, received_at),
                external_id=message_id,
            )
        ]
    reply_to = addresses(message, "reply-to")
    recipients = addresses(message, "to", "cc")
    direction = Direction.OUTBOUND if sender[1] == own else Direction.INBOUND
    data: dict[str, Any] = {"message_id": message_id, "from": {"name": sender[0], "address": sender[1]}}
    if direction is Direction.OUTBOUND:
        # Our own mail (sent from another client): the customer is its first other recipient.
        others = [r for r in recipients if r[1] != own]
        customer = others[0] if others else sender
        cc = others[1:]
    else:
        customer = sender
        relay = [r for r in reply_to if r[1] not in (own, sender[1])]
        if relay:
            # A web-form relay (or a shared noreply sender): the customer is in Reply-To.
            customer = relay[0]
            data["via"] = {"name": sender[0], "address": sender[1]}
        cc = [r for r in recipients if r[1] not in (own, customer[1])]
    if not customer[1]:
        customer = ("", "unknown-sender@invalid")
    if recipients:
        data["to"] = [{"name": n, "address": a} for n, a in addresses(message, "to")]
    if cc:
        data["cc"] = [{"name": n, "address": a} for n, a in cc]

    plain, html = _bodies(message)
    html_text = part_text(html) if html is not None else None
    if plain is not None:
        full = part_text(plain)
    elif html_text is not None:
        full = html_to_text(html_text)
    else:
        full = ""
    full = full.replace("\r\n", "\n").strip()
    new, quoted = split_quoted(full)
    data["full_text"] = full
    if quoted:
        data["quoted_text"] = quoted
    if html_text is not None:
        data["html"] = sanitize_html(html_text)
    bodies = {id(p) for p in (plain, html) if p is not None}
    thread_refs = list(dict.fromkeys([*in_reply_to, *reversed(references)]))
    thread_refs = [ref for ref in thread_refs if ref != message_id]
    return [
        InboundMessage(
            external_id=message_id,
            contact=_contact(customer),
            direction=direction,
            kind=MessageKind.EMAIL,
            text=new or None,
            subject=header_text(message, "subject") or None,
            attachments=_attachments(message, message_id, bodies),
            reply_to_external_id=in_reply_to[0] if in_reply_to else None,
            thread_refs=thread_refs,
            timestamp=message_date(message, received_at),
            cc=[_contact(addr) for addr in cc],
            data=data,
        )
    ]
