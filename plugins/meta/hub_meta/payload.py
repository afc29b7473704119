"""Reading Meta's webhook JSON defensively: a wrong shape gives an empty value, never an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Obj", "as_list", "as_obj", "id_text"]

Obj = Mapping[str, Any]


def as_obj(value: Any) -> Obj:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one (Meta batches: iterate, never ``[0]``)."""
    return value if isinstance(value, list) else []


def id_text(value: Any) -> str:
    """An id as a stripped string, or ``""``. Meta sends ids as strings; numbers are tolerated."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""
