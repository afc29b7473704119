"""Build the MIME message for one outbound send: headers that keep the thread, text and HTML.

* ``Message-ID`` is derived from the hub's message id (``<hub-{id}@{domain}>``), so a send retried
  after a crash carries the same id, the receiver's client shows one mail, and a bounce or
  auto-reply to it is recognised as answering the hub's own mail.
* ``In-Reply-To`` is the message the agent replies to (or the conversation's latest mail), and
  ``References`` the conversation's earlier Message-IDs, oldest first (RFC 5322 section 3.6.4).
* The subject is the conversation's, with one ``Re:`` in front however many the thread collected.
* Mail written by an automation (a rule or a bot) says so (``Auto-Submitted: auto-replied``,
  RFC 3834), so well-behaved autoresponders on the other side do not answer it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from hub.models import ContactRef, OutboundMessage, utcnow

__all__ = ["OutboundFile", "build_mail", "message_id", "recipient_address", "reply_subject"]

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|antw|ref|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_MAX_REFERENCES = 20

OutboundFile = tuple[str, str, bytes]
"""(filename, mime type, bytes) of one attachment."""


def message_id(hub_message_id: str, own_address: str) -> str:
    domain = own_address.rpartition("@")[2] or "hub.invalid"
    safe = re.sub(r"[^A-Za-z0-9._-]", "", hub_message_id) or make_msgid().strip("<>").split("@")[0]
    return f"<hub-{safe}@{domain}>"


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>`` with exactly one reply prefix (``Re: RE: AW: x`` -> ``Re: x``)."""
    base = _REPLY_PREFIX.sub("", subject or "").strip()
    return f"Re: {base}" if base else "Re:"


def recipient_address(contact: ContactRef) -> str | None:
    """The contact's mail address: its ``email`` field, else an ``email:`` identity."""
    if contact.email and "@" in contact.email:
        return contact.email
    for identity in contact.ids:
        if identity.startswith("email:") and "@" in identity:
            return identity.split(":", 1)[1]
    return None


def _address(name: str | None, addr: str) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def _html_body(text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    rendered = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f'<!DOCTYPE html><html><body><div dir="auto">{rendered}</div></body></html>'


def build_mail(
    out: OutboundMessage,
    *,
    from_address: str,
    from_name: str | None,
    to: ContactRef,
    cc: Sequence[ContactRef] = (),
    subject: str | None,
    thread_refs: Sequence[str] = (),
    automated: bool = False,
    files: Sequence[OutboundFile] = (),
) -> EmailMessage:
    """The message to hand to SMTP. ``thread_refs`` are earlier Message-IDs, oldest first."""
    to_addr = recipient_address(to)
    if to_addr is None:
        raise ValueError("the recipient has no email address")
    mail = EmailMessage()
    mail["From"] = _address(from_name, from_address)
    mail["To"] = _address(to.name, to_addr)
    cc_addrs = [(c.name, a) for c in cc if (a := recipient_address(c)) and a.lower() != to_addr.lower()]
    if cc_addrs:
        mail["Cc"] = [_address(n, a) for n, a in cc_addrs]
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = message_id(out.id, from_address)
    refs = list(dict.fromkeys(r for r in thread_refs if r.startswith("<") and r.endswith(">")))
    parent = out.reply_to_external_id or (refs[-1] if refs else None)
    if parent:
        mail["In-Reply-To"] = parent
        if parent not in refs:
            refs.append(parent)
        # Keep the first (the thread's root) and the most recent ones: some servers refuse
        # header lines of thousands of characters.
        if len(refs) > _MAX_REFERENCES:
            refs = [refs[0], *refs[-(_MAX_REFERENCES - 1) :]]
        mail["References"] = " ".join(refs)
        mail["Subject"] = reply_subject(out.subject or subject)
    else:
        mail["Subject"] = (out.subject or subject or "").strip() or "(no subject)"
    if automated:
        mail["Auto-Submitted"] = "auto-replied"
    text = out.text or ""
    mail.set_content(text or " ")
    if text:
        mail.add_alternative(_html_body(text), subtype="html")
    for filename, mime, data in files:
        maintype, _, subtype = mime.partition("/")
        mail.add_attachment(
            data, maintype=maintype or "application", subtype=subtype or "octet-stream", filename=filename
        )
    return mail
