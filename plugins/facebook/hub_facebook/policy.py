"""Messenger's reply window, which decides each send's ``messaging_type``.

Meta's rules (Send API, "Messaging types" and "Message tags"): a reply within 24 hours of the
customer's last message is a ``RESPONSE``; a human agent may answer up to 7 days after it with
``MESSAGE_TAG`` + ``HUMAN_AGENT``; nothing else may go out (Meta answers code 10 / 2018278). The
same holds on Instagram. A bot or automation gets the 24 hours only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.channel import ReplyWindow
from hub.errors import SendError, SendErrorClass

__all__ = ["HUMAN_AGENT_WINDOW", "RESPONSE_WINDOW", "messaging_type", "reply_window"]

RESPONSE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)


def reply_window(last_inbound_at: datetime | None, now: datetime) -> ReplyWindow:
    """Open for 24 hours; then, up to 7 days, only a human agent's tagged reply; then closed."""
    if last_inbound_at is None:
        return ReplyWindow(open=False, outside="none")
    if now < last_inbound_at + RESPONSE_WINDOW:
        return ReplyWindow(open=True, closes_at=last_inbound_at + RESPONSE_WINDOW, outside="tag")
    human_until = last_inbound_at + HUMAN_AGENT_WINDOW
    if now < human_until:
        return ReplyWindow(open=False, closes_at=human_until, outside="tag")
    return ReplyWindow(open=False, closes_at=human_until, outside="none")


def messaging_type(last_inbound_at: datetime | None, author: str, now: datetime) -> dict[str, Any]:
    """The ``messaging_type`` (and ``tag``) fields of one send, or a ``SendError`` the app shows."""
    if last_inbound_at is None:
        raise _closed("the customer has not written to this account yet, so no message can be sent")
    age = now - last_inbound_at
    if age < RESPONSE_WINDOW:
        return {"messaging_type": "RESPONSE"}
    if age < HUMAN_AGENT_WINDOW:
        if author == "agent":
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        raise _closed(
            "more than 24 hours since the customer's last message: only a human agent may "
            "reply now (HUMAN_AGENT tag, up to 7 days)"
        )
    raise _closed("more than 7 days since the customer's last message: the customer must write first")


def _closed(message: str) -> SendError:
    return SendError(SendErrorClass.NEEDS_TEMPLATE, message, title="Reply window closed")
