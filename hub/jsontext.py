"""JSON text on the hot paths: orjson where it can, the standard library where it cannot.

Every event is encoded once when logged and decoded by each log consumer (notifications, bots,
rules), and JSON columns go through the same two functions (``Database``'s engine). The standard
library's ``json`` was about a tenth of the hub's CPU under webhook load (profiled); orjson does
the same work several times faster.

The text is what ``json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)``
writes for the data the hub logs: compact, non-ASCII kept, anything JSON has no type for
(datetimes, dataclasses) written as its ``str()``; only a float may be spelt otherwise, with the same
value (``1e-7`` for ``1e-07``). What orjson refuses (integers past 64 bits,
non-string keys, lone surrogates, nesting past its limit) goes to ``json``, as does any text that
orjson will not read (``NaN``, lone surrogate escapes), so nothing either accepted before is
refused now, and what is read is what ``json`` reads (orjson would read an integer past 64 bits
as a float).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "loads", "strict_dumps"]

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# orjson reads an integer past 64 bits as a float, losing digits: text with a run of 19 digits or
# more (one may be such an integer) is read by ``json``, which keeps them. Found by mapping every
# byte to "0" (a digit) or " " and searching: several times faster than a regular expression.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def dumps(data: Any) -> str:
    """Compact JSON text of ``data`` (``str()`` of what JSON has no type for)."""
    try:
        return orjson.dumps(data, default=str, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def strict_dumps(data: Any) -> str:
    """Like ``dumps``, but what JSON has no type for raises ``TypeError`` (JSON columns: a value
    that is not JSON is a bug to hear of, not a string to store)."""
    try:
        return orjson.dumps(data, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text``; raises ``ValueError`` (``json.JSONDecodeError``) when it is not JSON."""
    if isinstance(text, str):
        raw = text.encode("utf-8", "surrogatepass")
    elif isinstance(text, bytes | bytearray):
        raw = text
    else:
        # json's TypeError, which callers rely on: SQLAlchemy's SQLite JSON type hands over a
        # number the column's affinity turned into one, and takes the TypeError as "it is one".
        return json.loads(text)
    if _LONG_RUN not in raw.translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
