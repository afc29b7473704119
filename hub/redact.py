"""Channel secrets never reach a log line.

Plugins call providers through the HTTP client the hub lends them, and that client (httpx, aiohttp
beneath it) logs each request's URL; some providers put a credential in the URL (Telegram's bot
token is part of the path). Scrubbing in one handler or one logger would miss the next library or
handler someone adds, so the redaction sits at the one point every record passes through before
any handler sees it: the log record factory. A record is only built for a level that is enabled, so
a disabled DEBUG line costs nothing here.

``SecretRedactor`` holds the secret values by owner (a channel id); ``ChannelService`` keeps them
current as channels are added, changed and removed.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MASK", "SecretRedactor"]

MASK = "[redacted]"
# Shorter values would redact ordinary words and digits; no real credential is this short.
MIN_SECRET_LENGTH = 4
MAX_RETIRED = 256


def _pattern_of(secret: str) -> str:
    """A regex for the value as any encoder may have written it into a URL or a form: each
    character raw or percent-encoded (encoders differ in which ones they leave alone), a space
    also as ``+``."""
    parts = []
    for char in secret:
        if char.isalnum() and char.isascii():
            parts.append(char)
            continue
        encoded = "".join(f"%{b:02X}" for b in char.encode())
        forms = [re.escape(char), "(?i:" + re.escape(encoded) + ")"]
        if char == " ":
            forms.append(r"\+")
        parts.append("(?:" + "|".join(forms) + ")")
    return "".join(parts)


class SecretRedactor:
    """Replaces every known secret value in the log records this process creates."""

    def __init__(self) -> None:
        self._owners: dict[str, frozenset[str]] = {}
        # Values replaced or removed lately: a request started with the old token may still log.
        self._retired: dict[str, None] = {}
        self._pattern: re.Pattern[str] | None = None

    def set(self, owner: str, secrets: Iterable[str]) -> None:
        """The secret values of ``owner`` from now on (replacing what it had)."""
        values = frozenset(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
        old = self._owners.get(owner, frozenset())
        if old == values:
            return
        if values:
            self._owners[owner] = values
        else:
            self._owners.pop(owner, None)
        self._retire(old - values)

    def discard(self, owner: str) -> None:
        self._retire(self._owners.pop(owner, frozenset()))

    def clear(self) -> None:
        self._owners.clear()
        self._retired.clear()
        self._pattern = None

    def _retire(self, values: Iterable[str]) -> None:
        for value in values:
            self._retired[value] = None
        while len(self._retired) > MAX_RETIRED:
            del self._retired[next(iter(self._retired))]
        self._compile()

    def _compile(self) -> None:
        values = {s for owned in self._owners.values() for s in owned} | set(self._retired)
        # Longest first, so a secret that contains another is masked whole.
        alternatives = [_pattern_of(s) for s in sorted(values, key=len, reverse=True)]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)

    def scrub(self, record: logging.LogRecord) -> None:
        """Mask secrets in the record's message, exception and stack text, in place."""
        if self._pattern is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when a handler formats it
            return
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            redacted = self.redact(text)
            if redacted != text:
                # Formatters use exc_text when it is set instead of formatting exc_info again.
                record.exc_text = redacted
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)

    def install(self) -> Callable[[], None]:
        """Scrub every record created from now on; the returned function stops it."""
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.scrub(record)
            return record

        logging.setLogRecordFactory(factory)

        def uninstall() -> None:
            if logging.getLogRecordFactory() is factory:
                logging.setLogRecordFactory(previous)
            else:  # another factory was installed over ours: ours stays in the chain, inert
                self.clear()

        return uninstall
