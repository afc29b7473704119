"""When the built-in bot may answer: a minimal guard of its own, until the automations' guard
(``hub.automations.guard``) is shared by every automatic sender.

* It answers customers only: never a message whose sender is a bot, an automation or the hub
  (two bots would otherwise talk to each other for ever), nor an outbound one.
* It sends at most ``RATE_LIMIT`` messages per conversation in any ``RATE_WINDOW`` seconds; a
  customer (or a script) that makes it say more is handed to a person instead.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RATE_LIMIT", "RATE_WINDOW", "answerable", "within_rate"]

RATE_LIMIT = 6
RATE_WINDOW = 60.0


def answerable(message: dict[str, Any]) -> bool:
    """Is ``message`` (as the app sees it) a customer's, which the bot may answer?"""
    sender = message.get("sender") or {}
    return message.get("direction") == "inbound" and sender.get("type") in (None, "contact")


def within_rate(sent: list[float], now: float, adding: int) -> tuple[bool, list[float]]:
    """May ``adding`` more messages go out, given the send times in ``sent``? Returns the answer
    and the times to keep (those still inside the window, plus the new ones when allowed)."""
    recent = [t for t in sent if now - t < RATE_WINDOW]
    if len(recent) + adding > RATE_LIMIT:
        return False, recent
    return True, recent + [now] * adding
