"""What a condition reads (``Facts``) and how it is judged (``evaluate``).

Every leaf is recorded with the value it saw and its result, so the run log explains each
decision. A group of ``all`` with no members is true; ``any`` with none is false.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.automations.definition import PLUGIN_FIELDS, AllOf, Test
from hub.automations.guard import automatic_reason
from hub.automations.hours import hours_for, hours_of

__all__ = ["Facts", "PluginCondition", "evaluate", "judge"]

K = schema.contacts
C = schema.conversations
M = schema.messages

PluginCondition = Callable[["Facts"], Awaitable[Any]]
"""A plugin's condition field: given the facts of one evaluation, the value the field has."""


@dataclass
class Facts:
    """What one evaluation knows: the event's conversation (app shape), its message (if the
    trigger is one), its channel type, and when it happened. Reads more lazily, on ``conn``."""

    conn: AsyncConnection
    at: datetime
    conversation: dict[str, Any] | None
    message: dict[str, Any] | None = None
    channel_type: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    async def value(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = await self._read(name)
        return self._cache[name]

    async def _read(self, name: str) -> Any:
        conv = self.conversation or {}
        msg = self.message or {}
        if name in PLUGIN_FIELDS:
            return await PLUGIN_FIELDS[name](self)
        if name.startswith("message."):
            key = name.split(".", 1)[1]
            if key == "sender_type":
                return (msg.get("sender") or {}).get("type")
            if key == "automatic":
                return automatic_reason(msg) is not None if msg else False
            return msg.get(key)
        if name == "channel.id":
            return conv.get("channel_id")
        if name == "channel.type":
            return self.channel_type
        if name.startswith("conversation.custom_attributes."):
            return (conv.get("custom_attributes") or {}).get(name.split(".", 2)[2])
        if name.startswith("conversation."):
            return conv.get(name.split(".", 1)[1])
        if name.startswith("contact.custom_attributes."):
            return ((await self._contact()).get("custom_attributes") or {}).get(name.split(".", 2)[2])
        if name == "contact.first_time":
            return await self._first_time()
        if name.startswith("contact."):
            return (conv.get("contact") or {}).get(name.split(".", 1)[1])
        if name == "business_hours.open":
            return await self.business_open()
        return None

    async def _contact(self) -> dict[str, Any]:
        contact_id = ((self.conversation or {}).get("contact") or {}).get("id")
        if not contact_id:
            return {}
        row = (await self.conn.execute(sa.select(K).where(K.c.id == contact_id))).mappings().first()
        return dict(row) if row else {}

    async def _first_time(self) -> bool:
        conv = self.conversation or {}
        contact_id = (conv.get("contact") or {}).get("id")
        if not contact_id:
            return False
        earlier = await self.conn.scalar(
            sa.select(sa.func.count()).where(C.c.contact_id == contact_id, C.c.id != conv.get("id"))
        )
        if earlier:
            return False
        inbound = await self.conn.scalar(
            sa.select(sa.func.count()).where(
                M.c.conversation_id == conv.get("id"), M.c.direction == "inbound", M.c.created_at <= self.at
            )
        )
        return int(inbound or 0) <= 1

    async def business_open(self) -> bool:
        if "__hours" not in self._cache:
            self._cache["__hours"] = await hours_for(self.conn, self.conversation or {})
        row = self._cache["__hours"]
        return True if row is None else hours_of(row).is_open(self.at)


def judge(op: str, seen: Any, want: Any) -> bool:
    """One leaf's test (pure)."""
    if op == "is_set":
        return seen not in (None, "", [], {})
    if op == "is_not_set":
        return seen in (None, "", [], {})
    if op in ("includes", "excludes"):
        items = seen if isinstance(seen, list) else ([] if seen is None else [seen])
        hit = any(_eq(x, want) for x in items)
        return hit if op == "includes" else not hit
    if op in ("in", "not_in"):
        hit = any(_eq(seen, w) for w in want or [])
        return hit if op == "in" else not hit
    if op == "eq":
        return _eq(seen, want)
    if op == "neq":
        return not _eq(seen, want)
    if op in ("contains", "not_contains", "starts_with", "regex"):
        if seen is None:
            return op == "not_contains"
        text = " ".join(map(str, seen)) if isinstance(seen, list) else str(seen)
        if op == "regex":
            return re.search(str(want), text) is not None
        if op == "starts_with":
            return text.casefold().startswith(str(want).casefold())
        hit = str(want).casefold() in text.casefold()
        return hit if op == "contains" else not hit
    # gt, gte, lt, lte: numbers (or texts, such as ISO dates) of one kind; else false.
    try:
        if isinstance(seen, bool) or isinstance(want, bool) or seen is None or want is None:
            return False
        if isinstance(seen, int | float) != isinstance(want, int | float):
            seen, want = float(seen), float(want)
        return {
            "gt": seen > want,
            "gte": seen >= want,
            "lt": seen < want,
            "lte": seen <= want,
        }[op]
    except (TypeError, ValueError, KeyError):
        return False


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


async def evaluate(cond: Any, facts: Facts, log: list[dict[str, Any]], path: str = "") -> bool:
    """Judge ``cond``; every leaf (and group) is appended to ``log`` with what it saw. Groups do
    not short-circuit, so the log shows every condition's value."""
    if isinstance(cond, Test):
        try:
            seen = await facts.value(cond.field)
            result = judge(cond.op, seen, cond.value)  # type: ignore[attr-defined]
            error = None
        except Exception as exc:  # a plugin's field that failed: false, with the reason
            seen, result, error = None, False, f"{type(exc).__name__}: {exc}"
        entry = {
            "path": path or "0",
            "field": cond.field,
            "op": cond.op,  # type: ignore[attr-defined]
            "value": cond.value,  # type: ignore[attr-defined]
            "seen": _jsonable(seen),
            "result": result,
        }
        if error:
            entry["error"] = error
        log.append(entry)
        return result
    kind, items = ("all", cond.all) if isinstance(cond, AllOf) else ("any", cond.any)
    results = [
        await evaluate(item, facts, log, f"{path}.{i}" if path else str(i)) for i, item in enumerate(items)
    ]
    result = all(results) if kind == "all" else any(results)
    log.append({"path": path or "", "group": kind, "result": result})
    return result


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
