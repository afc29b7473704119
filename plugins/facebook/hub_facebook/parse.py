"""Pure parsing of Messenger and Instagram Direct webhooks into the hub's normalized events.

Both arrive on the Messenger Platform: ``{"object": "page" | "instagram", "entry": [{"id",
"time", "messaging": [...]}]}``, each messaging event carrying ``sender.id``, ``recipient.id``, a
millisecond ``timestamp`` and one of ``message``, ``postback``, ``delivery``, ``read``,
``reaction``, ``referral`` or ``message_edit``. Every entry and event is visited (``standby``
events of the handover protocol too); an event this module does not know is skipped with a log
line, a message it cannot read becomes an ``unsupported`` placeholder. No I/O, no clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hub_meta.payload import Obj
from hub_meta.payload import as_list as _list
from hub_meta.payload import as_obj as _obj
from hub_meta.payload import id_text as _str
from pydantic import ValidationError

from hub.errors import BadPayload
from hub.models import (
    Attachment,
    AttachmentKind,
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
    WatermarkUpdate,
)

__all__ = ["OUTBOUND_PREFIX", "ms_timestamp", "parse_body"]

OUTBOUND_PREFIX = "hub:"
"""The hub sends ``metadata: "hub:<message id>"``; the echo carries it back (see ``send.py``)."""

_MEDIA: dict[str, AttachmentKind] = {
    "image": AttachmentKind.IMAGE,
    "audio": AttachmentKind.AUDIO,
    "video": AttachmentKind.VIDEO,
    "file": AttachmentKind.FILE,
    "sticker": AttachmentKind.STICKER,
}
_EVENT_KEYS = ("message", "postback", "delivery", "read", "reaction", "referral", "message_edit")


def ms_timestamp(value: Any, fallback: datetime) -> datetime:
    """Meta's Messenger timestamps are numbers of Unix milliseconds (exact, no float rounding)."""
    try:
        ms = int(str(value).strip())
        return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


class _Parser:
    def __init__(self, *, platform: str, account_id: str, log: logging.Logger, received_at: datetime):
        self.platform = platform  # "messenger" or "instagram"
        self.account_id = account_id
        self.id_prefix = "igsid:" if platform == "instagram" else "psid:"
        self.log = log
        self.received_at = received_at
        self.events: list[ParsedEvent] = []

    def run(self, payload: Obj) -> list[ParsedEvent]:
        for entry in map(_obj, _list(payload.get("entry"))):
            entry_id = _str(entry.get("id"))
            if entry_id and entry_id != self.account_id:
                self.log.info(
                    "%s: skipping an entry for account %r (this channel is %r)",
                    self.platform,
                    entry_id,
                    self.account_id,
                )
                continue
            for key in ("messaging", "standby"):
                for event in _list(entry.get(key)):
                    if isinstance(event, Mapping):
                        self.event(event)
            for change in map(_obj, _list(entry.get("changes"))):
                # Instagram comments and mentions on posts: not direct messages.
                self.log.info("%s: ignoring webhook field %r", self.platform, change.get("field"))
        return self.events

    # ---- one messaging event ---------------------------------------------------------------

    def event(self, ev: Obj) -> None:
        sender = _str(_obj(ev.get("sender")).get("id"))
        recipient = _str(_obj(ev.get("recipient")).get("id"))
        # The customer is whoever is not the business: the sender of what they send, the
        # recipient of the business's own messages (echoes).
        from_business = sender == self.account_id
        customer = recipient if from_business else sender
        if not customer:
            self.log.warning("%s: skipping an event without a customer id: %s", self.platform, dict(ev))
            return
        contact = ContactRef(ids=[self.id_prefix + customer])
        timestamp = ms_timestamp(ev.get("timestamp"), self.received_at)
        kind = next((k for k in _EVENT_KEYS if isinstance(ev.get(k), Mapping)), None)
        if kind == "message":
            self.message(_obj(ev["message"]), contact, timestamp, from_business)
        elif kind == "postback":
            self.postback(ev, contact, timestamp, customer)
        elif kind == "delivery":
            self.watermark(_obj(ev["delivery"]), contact, timestamp, MessageStatus.DELIVERED)
        elif kind == "read":
            self.watermark(_obj(ev["read"]), contact, timestamp, MessageStatus.READ)
        elif kind == "reaction":
            self.reaction(_obj(ev["reaction"]), contact, timestamp, from_business)
        elif kind == "referral":
            self.referral(_obj(ev["referral"]), contact, timestamp, customer)
        elif kind == "message_edit":
            self.edit(_obj(ev["message_edit"]), contact, timestamp, from_business)
        else:
            known = sorted(k for k in ev if k not in ("sender", "recipient", "timestamp"))
            self.log.info("%s: ignoring a messaging event of kind %s", self.platform, known)

    def message(self, msg: Obj, contact: ContactRef, timestamp: datetime, from_business: bool) -> None:
        mid = _str(msg.get("mid"))
        if not mid:
            self.log.warning("%s: skipping a message without a mid", self.platform)
            return
        echo = bool(msg.get("is_echo")) or from_business
        direction = Direction.OUTBOUND if echo else Direction.INBOUND
        if msg.get("is_deleted"):  # Instagram: the customer unsent it
            self.events.append(
                MessageDeletion(
                    target_external_id=mid, contact=contact, direction=direction, timestamp=timestamp
                )
            )
            return
        try:
            fields = self.content(msg)
            event = InboundMessage(
                external_id=mid,
                contact=contact,
                direction=direction,
                timestamp=timestamp,
                reply_to_external_id=_str(_obj(msg.get("reply_to")).get("mid")) or None,
                **fields,
            )
        except ValidationError as exc:  # a shape we misread must not lose the message
            self.log.warning("%s: message %s kept as unsupported: %s", self.platform, mid, exc)
            event = InboundMessage(
                external_id=mid,
                contact=contact,
                direction=direction,
                timestamp=timestamp,
                kind=MessageKind.UNSUPPORTED,
                data={"raw": dict(msg)},
            )
        self.events.append(event)

    def content(self, msg: Obj) -> dict[str, Any]:
        """Kind, text, attachments, interactive choice and ``data`` of one message."""
        text = msg.get("text") if isinstance(msg.get("text"), str) else None
        data: dict[str, Any] = {}
        for key in ("referral", "metadata", "app_id", "commands"):
            if msg.get(key) is not None:
                data[key] = msg[key]
        story = _obj(_obj(msg.get("reply_to")).get("story"))
        if story:  # Instagram: a reply to the business's story
            data["story_reply"] = {"id": _str(story.get("id")) or None, "url": story.get("url")}
        metadata = _str(msg.get("metadata"))
        fields: dict[str, Any] = {"text": text, "data": data}
        if metadata.startswith(OUTBOUND_PREFIX):
            fields["outbound_id"] = metadata[len(OUTBOUND_PREFIX) :] or None
        quick = _obj(msg.get("quick_reply"))
        if quick:
            payload = _str(quick.get("payload"))
            fields["kind"] = MessageKind.INTERACTIVE_REPLY
            fields["interactive"] = InteractiveChoice(id=payload, title=text or payload)
            return fields
        attachments, shares, location, template = self.attachments(_list(msg.get("attachments")))
        if shares:
            data["shares"] = shares
        if template is not None:
            data["template"] = template
        if location is not None:
            data["location"] = location
            fields["kind"] = MessageKind.LOCATION
            return fields
        if attachments:
            fields["attachments"] = attachments
            fields["kind"] = MessageKind(attachments[0].kind.value)
            return fields
        if template is not None:
            fields["kind"] = MessageKind.TEMPLATE
            fields["text"] = text or _str(template.get("text")) or None
            return fields
        if text is None and shares:
            # A shared link, post or reel with nothing else: its address is the message.
            fields["text"] = next((s["url"] for s in shares if s.get("url")), None)
        if fields["text"] is None and not shares:
            fields["kind"] = MessageKind.UNSUPPORTED
            data["raw"] = dict(msg)
            return fields
        fields["kind"] = MessageKind.TEXT
        return fields

    def attachments(
        self, items: list[Any]
    ) -> tuple[list[Attachment], list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
        """Media attachments, shared links/posts, a location and an echoed template, in order."""
        media: list[tuple[Attachment, str]] = []
        shares: list[dict[str, Any]] = []
        location: dict[str, Any] | None = None
        template: dict[str, Any] | None = None
        for item in map(_obj, items):
            atype = _str(item.get("type"))
            payload = _obj(item.get("payload"))
            url = _str(payload.get("url")) or _str(item.get("url")) or None
            sticker_id = _str(payload.get("sticker_id"))
            if atype in _MEDIA:
                kind = _MEDIA[atype]
                if kind is AttachmentKind.IMAGE and sticker_id:
                    kind = AttachmentKind.STICKER  # the old way: an image carrying a sticker_id
                media.append((Attachment(kind=kind, source_url=url), sticker_id))
            elif atype == "location":
                coords = _obj(payload.get("coordinates"))
                location = {
                    "latitude": coords.get("lat"),
                    "longitude": coords.get("long"),
                    "name": item.get("title") or None,
                    "url": url,
                }
            elif atype == "template":
                template = dict(payload)
            else:  # fallback (shared link), share, reel, ig_reel, post, story_mention, ...
                share = {"type": atype or "fallback", "url": url, "title": item.get("title") or None}
                if payload.get("title") and not share["title"]:
                    share["title"] = payload["title"]
                shares.append(share)
        return _one_sticker(media), shares, location, template

    def postback(self, ev: Obj, contact: ContactRef, timestamp: datetime, customer: str) -> None:
        pb = _obj(ev["postback"])
        payload = _str(pb.get("payload"))
        title = _str(pb.get("title")) or payload
        # Postbacks carry a mid since 2020; without one, the sender and millisecond make it unique.
        mid = _str(pb.get("mid")) or f"postback:{customer}:{_str(ev.get('timestamp'))}"
        data: dict[str, Any] = {"postback": {"title": pb.get("title"), "payload": pb.get("payload")}}
        if pb.get("referral") is not None:
            data["referral"] = pb["referral"]
        self.events.append(
            InboundMessage(
                external_id=mid,
                contact=contact,
                kind=MessageKind.INTERACTIVE_REPLY,
                text=title or None,
                interactive=InteractiveChoice(id=payload, title=title),
                timestamp=timestamp,
                data=data,
            )
        )

    def watermark(self, body: Obj, contact: ContactRef, timestamp: datetime, status: MessageStatus) -> None:
        # Messenger: a watermark (everything sent up to it), deliveries maybe with mids.
        # Instagram (messaging_seen): the mid of the last message seen, at the event's time.
        mids = [m for m in (_str(x) for x in _list(body.get("mids"))) if m]
        if _str(body.get("mid")):
            mids.append(_str(body.get("mid")))
        mark = ms_timestamp(body["watermark"], timestamp) if body.get("watermark") is not None else timestamp
        self.events.append(WatermarkUpdate(contact=contact, status=status, watermark=mark, external_ids=mids))

    def reaction(self, body: Obj, contact: ContactRef, timestamp: datetime, from_business: bool) -> None:
        target = _str(body.get("mid"))
        if not target or from_business:
            self.log.info("%s: ignoring a reaction without a target or by the business", self.platform)
            return
        emoji = body.get("emoji") if isinstance(body.get("emoji"), str) else None
        if emoji is None and body.get("reaction") and body.get("action") != "unreact":
            emoji = str(body["reaction"])  # Instagram once sent only the name ("love")
        self.events.append(
            ReactionUpdate(
                target_external_id=target,
                contact=contact,
                emoji=None if body.get("action") == "unreact" else emoji,
                timestamp=timestamp,
            )
        )

    def referral(self, body: Obj, contact: ContactRef, timestamp: datetime, customer: str) -> None:
        """An ad click or ``m.me`` link in a thread that already exists: a system note in it."""
        source = _str(body.get("source")) or "referral"
        ref = _str(body.get("ref"))
        self.events.append(
            InboundMessage(
                external_id=f"referral:{customer}:{int(timestamp.timestamp() * 1000)}",
                contact=contact,
                kind=MessageKind.SYSTEM,
                text=f"Came from {source}" + (f" (ref {ref})" if ref else ""),
                timestamp=timestamp,
                data={"referral": dict(body)},
            )
        )

    def edit(self, body: Obj, contact: ContactRef, timestamp: datetime, from_business: bool) -> None:
        target = _str(body.get("mid"))
        if not target:
            self.log.warning("%s: skipping an edit without a mid", self.platform)
            return
        num = body.get("num_edit")
        self.events.append(
            MessageEdit(
                target_external_id=target,
                # Each edit of a message has its own number, so a redelivery has one effect.
                external_id=f"{target}:edit:{num}" if num is not None else None,
                contact=contact,
                direction=Direction.OUTBOUND if from_business else Direction.INBOUND,
                text=body.get("text") if isinstance(body.get("text"), str) else None,
                timestamp=timestamp,
                data={"num_edit": num} if num is not None else {},
            )
        )


def _one_sticker(media: list[tuple[Attachment, str]]) -> list[Attachment]:
    """Meta's 2026 sticker transition sends one sticker as a ``sticker`` and an ``image``
    attachment; keep the sticker alone. An image is the same sticker when it names the same
    ``sticker_id`` or URL, or when a lone image rides beside a lone sticker."""
    stickers = [(a, sid) for a, sid in media if a.kind is AttachmentKind.STICKER]
    if not stickers:
        return [a for a, _ in media]
    ids = {sid for _, sid in stickers if sid}
    urls = {a.source_url for a, _ in stickers if a.source_url}
    images = [(a, sid) for a, sid in media if a.kind is AttachmentKind.IMAGE]
    lone_pair = len(stickers) == 1 and len(images) == 1
    kept: list[Attachment] = []
    seen_sticker: set[str] = set()
    for a, sid in media:
        if a.kind is AttachmentKind.IMAGE and (lone_pair or (sid and sid in ids) or a.source_url in urls):
            continue
        if a.kind is AttachmentKind.STICKER and sid:
            if sid in seen_sticker:  # the old image-with-sticker_id beside the new sticker
                continue
            seen_sticker.add(sid)
        kept.append(a)
    return kept


def parse_body(
    body: bytes, *, platform: str, account_id: str, log: logging.Logger, received_at: datetime
) -> list[ParsedEvent]:
    """Parse one webhook body; ``BadPayload`` only for a body that is no Messenger Platform webhook."""
    expected = "instagram" if platform == "instagram" else "page"
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"the body is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(payload, dict):
        raise BadPayload("the body is not a JSON object")
    if payload.get("object") != expected:
        raise BadPayload(f"object must be {expected!r}, got {payload.get('object')!r}")
    parser = _Parser(platform=platform, account_id=account_id, log=log, received_at=received_at)
    return parser.run(payload)
