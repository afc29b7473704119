"""Text a database cannot hold, repaired before it is stored.

A provider can send what JSON allows and a database refuses: a lone UTF-16 surrogate (``"\\ud83d"``,
half an emoji cut by a buggy client) that no UTF-8 encoder accepts, or a NUL character, which
PostgreSQL text cannot contain. Python's email parser also keeps undecodable bytes as lone
surrogates. Each becomes U+FFFD, the replacement character, in the parsed events only: the raw
delivery is stored byte for byte, so a replay sees what the provider sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["repair_events", "repair_value"]

E = TypeVar("E", bound=BaseModel)
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


def repair_value(value: Any) -> tuple[Any, bool]:
    """``value`` with every string repaired (dicts, lists and tuples walked), and whether any was."""
    if isinstance(value, str):
        fixed = _UNSTORABLE.sub("\ufffd", value)
        return fixed, fixed != value
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for k, v in value.items():
            k2, c1 = repair_value(k)
            v2, c2 = repair_value(v)
            out[k2] = v2
            changed = changed or c1 or c2
        return (out, True) if changed else (value, False)
    if isinstance(value, list | tuple):
        items = [repair_value(v) for v in value]
        if any(c for _, c in items):
            return type(value)(v for v, _ in items), True
        return value, False
    return value, False


def repair_events(events: Sequence[E]) -> list[E]:
    """The events, each rebuilt with repaired text when it held any that cannot be stored."""
    out = []
    for ev in events:
        # Nearly every event needs nothing: pydantic's JSON serializer refuses a lone surrogate and
        # writes NUL as an escape, so one fast call tells (a quarter of the walk's cost, measured).
        try:
            clean = "\\u0000" not in ev.model_dump_json()
        except Exception:  # a surrogate (PydanticSerializationError), or data it cannot write: the
            clean = False  # walk below decides, as it always did
        if clean:
            out.append(ev)
            continue
        fixed, changed = repair_value(ev.model_dump())
        out.append(type(ev).model_validate(fixed) if changed else ev)
    return out
