"""The loop guard: may an automatic message (a rule's, the out-of-office reply, a bot's) go out?

Three checks, each with the reason it refuses:

* the message being answered came from a machine: an auto-reply or bounce (RFC 3834
  ``Auto-Submitted`` and its relatives, which channel plugins put in the message's ``data``; or
  the usual subject/text prefixes for channels that carry no headers), or another bot or rule;
* the conversation already had ``limit`` automatic messages in the last ``window``.

``automatic_reason(message)`` is pure; ``may_send_automatic(conn, conversation_id, answering=...)``
adds the rate limit and returns a ``Verdict``. Whoever sends automatically calls it inside the
transaction that enqueues the message::

    verdict = await may_send_automatic(tx.conn, conversation_id, answering=trigger_message)
    if not verdict.allowed:
        log(verdict.reason)  # and send nothing
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.models import utcnow

__all__ = [
    "AUTOMATIC_SENDERS",
    "RATE_LIMIT",
    "RATE_WINDOW",
    "Verdict",
    "automatic_reason",
    "automatic_sent",
    "may_send_automatic",
]

M = schema.messages
# Sender types of messages a machine wrote (hub.outbound: the sender a rule or a bot sends as).
AUTOMATIC_SENDERS = frozenset({"bot", "rule", "automation", "system"})
RATE_LIMIT = 3
RATE_WINDOW = timedelta(hours=1)

# Marks a channel plugin may put in an inbound message's ``data`` (email: the RFC 3834 headers).
_AUTO_SUBMITTED_KEYS = ("auto_submitted", "Auto-Submitted", "auto-submitted")
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
# What auto-replies begin with on channels that carry no headers (or where a gateway dropped them).
_AUTO_TEXT = re.compile(
    r"^\s*(\[?(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheitsnotiz|"
    r"r[ée]ponse automatique|undeliverable|delivery status notification|mail delivery failed)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str | None = None


def automatic_reason(message: Mapping[str, Any] | None) -> str | None:
    """Why ``message`` (a message in the app's shape) was written by a machine; None: by a person."""
    if not message:
        return None
    sender = message.get("sender") or {}
    if sender.get("type") in AUTOMATIC_SENDERS:
        return f"the message answered was sent by a {sender.get('type')} ({sender.get('id')})"
    data = message.get("data") or {}
    for key in _AUTO_SUBMITTED_KEYS:
        value = data.get(key)
        if value and str(value).lower() != "no":
            return f"the message answered is an auto-reply (Auto-Submitted: {value})"
    if data.get("auto_reply") or data.get("bounce") or data.get("bot"):
        which = next(k for k in ("auto_reply", "bounce", "bot") if data.get(k))
        return f"the message answered is marked {which} by its channel"
    precedence = str(data.get("precedence") or "").lower()
    if precedence in _BULK_PRECEDENCE:
        return f"the message answered is an auto-reply (Precedence: {precedence})"
    for text in (message.get("subject"), message.get("text")):
        if text and _AUTO_TEXT.match(text):
            return "the message answered reads as an auto-reply or bounce"
    return None


def _automatic_outbound() -> Any:
    return sa.and_(
        M.c.direction == "outbound",
        M.c.sender["type"].as_string().in_(sorted(AUTOMATIC_SENDERS)),
    )


async def automatic_sent(conn: AsyncConnection, conversation_id: str, since: datetime) -> int:
    """How many automatic messages the conversation had since ``since``."""
    q = sa.select(sa.func.count()).where(
        M.c.conversation_id == conversation_id, M.c.created_at >= since, _automatic_outbound()
    )
    return int(await conn.scalar(q) or 0)


async def may_send_automatic(
    conn: AsyncConnection,
    conversation_id: str,
    *,
    answering: Mapping[str, Any] | None = None,
    limit: int = RATE_LIMIT,
    window: timedelta = RATE_WINDOW,
    now: datetime | None = None,
) -> Verdict:
    """Whether an automatic message may go to ``conversation_id`` now, answering ``answering``
    (the message that triggered it, if any)."""
    reason = automatic_reason(answering)
    if reason is not None:
        return Verdict(False, f"loop guard: {reason}")
    sent = await automatic_sent(conn, conversation_id, (now or utcnow()) - window)
    if sent >= limit:
        return Verdict(
            False,
            f"loop guard: {sent} automatic messages in this conversation within "
            f"{int(window.total_seconds() // 60)} minutes (the limit is {limit})",
        )
    return Verdict(True)
