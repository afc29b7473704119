"""Reading one RFC 5322 message with ``email`` and ``policy.default``, around the charset traps.

``policy.default`` decodes RFC 2047 words (adjacent ones joined without the space between them)
and RFC 2231 parameters (continued, percent-encoded filenames with a charset); the compat policy
leaves encoded words in place. What the policy does not fix is done here:

* bodies labelled ``iso-8859-1`` (or ``us-ascii``) that are really windows-1252 (curly quotes and
  the euro sign in bytes 0x80-0x9F): decoded as windows-1252, the superset senders mean;
* bodies with no charset or an unknown one: UTF-8 when it decodes, windows-1252 otherwise;
* charset names mail clients use for a wider set (``gb2312`` for GB18030, ``ks_c_5601-1987``);
* raw 8-bit header bytes (no encoded words): read as UTF-8, else windows-1252.

Quoted-printable soft line breaks that split a multibyte character are harmless here because the
transfer encoding is undone over the whole body before the charset is applied.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

__all__ = [
    "Address",
    "addresses",
    "decode_bytes",
    "header_text",
    "leaf_parts",
    "message_date",
    "message_id_of",
    "msg_ids",
    "part_text",
    "read_message",
]

Address = tuple[str, str]
"""(display name, address lower-cased)."""

_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "cp819"}
_ASCII_LABELS = {"us-ascii", "ascii", "ansi_x3.4-1968"}
_WIDER = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-8-i": "iso-8859-8",
    "utf8": "utf-8",
    "windows-874": "cp874",
    "tis-620": "cp874",
}
_MSG_ID = re.compile(r"<[^<>\s]+>")


def read_message(body: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(body)
    assert isinstance(message, EmailMessage)
    return message


def _windows_1252(data: bytes) -> str:
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined: keep them as latin-1
        return data.decode("latin-1")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text from ``data`` labelled ``charset``, following what senders mean rather than the label."""
    label = (charset or "").strip().strip('"').lower()
    if not label or label in _ASCII_LABELS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return _windows_1252(data)
    if label in _LATIN1_LABELS:
        return _windows_1252(data)
    label = _WIDER.get(label, label)
    try:
        codecs.lookup(label)
    except LookupError:
        return decode_bytes(data, None)
    return data.decode(label, errors="replace")


def header_text(message: Message, name: str) -> str:
    """A header's decoded value ("" when absent); raw 8-bit bytes read as UTF-8 or windows-1252."""
    values = message.get_all(name) or []
    if not values:
        return ""
    try:
        value = str(values[0])
    except Exception:  # a header the policy cannot parse: fall back to its raw text
        value = str(message.get_all(name, [""])[0])
    if any("\udc80" <= c <= "\udcff" for c in value):
        raw = value.encode("utf-8", "surrogateescape")
        value = decode_bytes(raw, None)
    return " ".join(value.split())


def addresses(message: Message, *names: str) -> list[Address]:
    """Every address in the named headers, in order, without duplicates."""
    found: dict[str, str] = {}
    for name in names:
        for header in message.get_all(name) or []:
            text = header_text_raw(header)
            for display, addr in getaddresses([text]):
                addr = addr.strip().lower()
                if "@" in addr and addr not in found:
                    found[addr] = display.strip()
    return [(display, addr) for addr, display in found.items()]


def header_text_raw(value: object) -> str:
    text = str(value)
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    return text


def msg_ids(value: str) -> list[str]:
    """The ``<id>`` tokens of a Message-ID, In-Reply-To or References header, in order."""
    return list(dict.fromkeys(_MSG_ID.findall(value or "")))


def message_id_of(message: Message, body: bytes) -> str:
    """The message's Message-ID, or a stable one derived from its bytes when it has none.

    The same bytes fetched again (after an outage, or a UIDVALIDITY change) give the same id, so a
    mail without a Message-ID is still stored once.
    """
    ids = msg_ids(header_text(message, "message-id"))
    if ids:
        return ids[0]
    return f"<no-message-id.{hashlib.sha256(body).hexdigest()[:40]}@hub.invalid>"


def message_date(message: Message, fallback: datetime) -> datetime:
    """The Date header as an aware datetime (UTC when it gives no zone), else ``fallback``."""
    value = header_text(message, "date")
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback if fallback.tzinfo else fallback.replace(tzinfo=UTC)


def part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return decode_bytes(data, part.get_content_charset())


def leaf_parts(message: Message) -> Iterator[Message]:
    """Every leaf part in order; an attached message (``message/rfc822``) counts as one leaf."""
    if message.get_content_maintype() == "multipart":
        payload = message.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                yield from leaf_parts(sub)
    else:
        yield message
