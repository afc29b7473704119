"""Custom attributes: admin-defined fields of contacts and of conversations, and the validation of
their values on every write.

A definition has a ``key`` (the name values are stored under), a display ``name``, a ``type``
(``text``, ``number``, ``date``, ``list``, ``checkbox``, ``link``) and optional constraints:
``required``, ``options`` (list), ``pattern`` (text, link), ``min``/``max`` (number: the value;
date: ISO dates; text: the length).

A write names only the attributes it changes (``null`` removes one); each is checked against its
definition and a misfit is a 422 naming ``custom_attributes.<key>``. A write that touches the
attributes must also leave every required one set. Changing or deleting a definition never rewrites
stored values: a value that no longer fits is kept, and reads show it in ``attribute_problems``
(``[{"key", "message"}]``) until someone corrects it.
"""

from __future__ import annotations

import re
import warnings
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.db import new_id
from hub.events import Store
from hub.models import utcnow
from hub.services.config import ConfigRegistry
from hub.services.errors import Conflict, Invalid, NotFound

__all__ = ["APPLIES_TO", "TYPES", "AttributeService", "check_values", "load_definitions", "value_problem"]

A = schema.attribute_definitions
APPLIES_TO = ("contact", "conversation")
TYPES = ("text", "number", "date", "list", "checkbox", "link")
KEY = r"^[a-z][a-z0-9_]{0,63}$"
FIELD = "custom_attributes"


def definition_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "applies_to": row["applies_to"],
        "key": row["key"],
        "name": row["name"],
        "type": row["type"],
        "required": row["required"],
        "options": row["options"],
        "pattern": row["pattern"],
        "min": row["min"],
        "max": row["max"],
        "description": row["description"],
        "position": row["position"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def _definitions(conn: AsyncConnection, applies_to: str | None = None) -> list[dict[str, Any]]:
    stmt = sa.select(A).order_by(A.c.applies_to, A.c.position, A.c.key)
    if applies_to is not None:
        stmt = stmt.where(A.c.applies_to == applies_to)
    return [definition_dict(r) for r in (await conn.execute(stmt)).mappings()]


async def load_definitions(conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
    """The ``custom_attributes`` configuration resource: the definitions of each kind."""
    defs = await _definitions(conn)
    return {kind: [d for d in defs if d["applies_to"] == kind] for kind in APPLIES_TO}


def value_problem(d: dict[str, Any], value: Any) -> str | None:
    """Why ``value`` does not fit definition ``d``; None when it does (None itself always fits)."""
    if value is None:
        return None
    kind = d["type"]
    lo, hi = d.get("min"), d.get("max")
    if kind in ("text", "link"):
        if not isinstance(value, str):
            return "must be a string"
        if kind == "link":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return "must be an http or https URL"
        if lo is not None and len(value) < lo:
            return f"must be at least {lo} characters"
        if hi is not None and len(value) > hi:
            return f"must be at most {hi} characters"
        if d.get("pattern") and re.fullmatch(d["pattern"], value) is None:
            return f"must match the pattern {d['pattern']}"
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if lo is not None and value < lo:
            return f"must be at least {lo}"
        if hi is not None and value > hi:
            return f"must be at most {hi}"
        return None
    if kind == "date":
        try:
            day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            day = None
        if day is None:
            return "must be a date (YYYY-MM-DD)"
        if lo is not None and day < date.fromisoformat(lo):
            return f"must be on or after {lo}"
        if hi is not None and day > date.fromisoformat(hi):
            return f"must be on or before {hi}"
        return None
    if kind == "list":
        if value not in (d.get("options") or []):
            return f"must be one of: {', '.join(d.get('options') or [])}"
        return None
    if kind == "checkbox":
        return None if isinstance(value, bool) else "must be true or false"
    return f"has an unknown type {kind!r}"


def _problems(defs: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    by_key = {d["key"]: d for d in defs}
    out = []
    for key, value in values.items():
        d = by_key.get(key)
        message = "no attribute of this key is defined (any more)" if d is None else value_problem(d, value)
        if message is not None:
            out.append({"key": key, "message": message})
    for d in defs:
        if d["required"] and values.get(d["key"]) is None:
            out.append({"key": d["key"], "message": "is required"})
    return out


async def check_values(
    conn: AsyncConnection, applies_to: str, current: dict[str, Any], patch: dict[str, Any]
) -> dict[str, Any]:
    """``current`` with ``patch`` applied, every value it names checked against its definition
    (a 422 naming ``custom_attributes.KEY``); the API, macros and rules all write through it."""
    defs = {d["key"]: d for d in await _definitions(conn, applies_to)}
    errors = []
    for key, value in patch.items():
        d = defs.get(key)
        if d is None:
            known = ", ".join(sorted(defs)) or "none"
            errors.append(
                {
                    "field": f"{FIELD}.{key}",
                    "message": f"no {applies_to} attribute {key!r} is defined (defined: {known})",
                }
            )
            continue
        message = value_problem(d, value)
        if message is not None:
            errors.append({"field": f"{FIELD}.{key}", "message": f"{d['name']} {message}"})
    merged = {k: v for k, v in {**current, **patch}.items() if v is not None}
    for d in defs.values():
        if (
            d["required"]
            and merged.get(d["key"]) is None
            and not any(e["field"] == f"{FIELD}.{d['key']}" for e in errors)
        ):
            errors.append({"field": f"{FIELD}.{d['key']}", "message": f"{d['name']} is required"})
    if errors:
        raise AttributesInvalid(errors)
    return merged


class AttributeService:
    def __init__(self, store: Store, config: ConfigRegistry) -> None:
        self.store = store
        self.config = config
        config.register("custom_attributes", load_definitions, description="custom attribute definitions")

    # ---- values ---------------------------------------------------------------------------------

    async def checked(
        self, conn: AsyncConnection, applies_to: str, current: dict[str, Any], patch: dict[str, Any]
    ) -> dict[str, Any]:
        return await check_values(conn, applies_to, current, patch)

    async def problems(
        self, conn: AsyncConnection, applies_to: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """What of ``values`` does not fit today's definitions (kept, never rewritten)."""
        return _problems(await _definitions(conn, applies_to), values)

    async def problems_of_many(
        self, conn: AsyncConnection, applies_to: str, many: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        defs = await _definitions(conn, applies_to)
        return [_problems(defs, values) for values in many]

    # ---- definitions ----------------------------------------------------------------------------

    async def list(self, actor: Actor) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            return await load_definitions(conn, actor)

    async def create(self, actor: Actor, spec: dict[str, Any]) -> dict[str, Any]:
        actor.require("attributes.manage")
        _check_spec(spec)
        now = utcnow()
        values = {
            "id": new_id("attr_"),
            "applies_to": spec["applies_to"],
            "key": spec["key"],
            "name": spec["name"],
            "type": spec["type"],
            "required": bool(spec.get("required")),
            "options": spec.get("options"),
            "pattern": spec.get("pattern"),
            "min": spec.get("min"),
            "max": spec.get("max"),
            "description": spec.get("description"),
            "position": spec.get("position") or 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.store.tx() as tx:
                taken = await tx.conn.scalar(
                    sa.select(A.c.id).where(A.c.applies_to == values["applies_to"], A.c.key == values["key"])
                )
                if taken is not None:
                    raise Conflict(f"a {values['applies_to']} attribute {values['key']!r} already exists")
                await tx.conn.execute(A.insert().values(**values))
                await self.config.changed(tx, "custom_attributes", by=actor.ref)
        except IntegrityError:
            raise Conflict(f"a {values['applies_to']} attribute {values['key']!r} already exists") from None
        return definition_dict(values)

    async def update(self, actor: Actor, definition_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a definition (not its key or what it applies to). Stored values stay as they are."""
        actor.require("attributes.manage")
        async with self.store.tx() as tx:
            row = await _row(tx.conn, definition_id)
            spec = {**row, **changes}
            _check_spec(spec)
            values = {k: v for k, v in changes.items() if row.get(k) != v}
            if not values:
                return definition_dict(row)
            values["updated_at"] = utcnow()
            await tx.conn.execute(A.update().where(A.c.id == definition_id).values(**values))
            await self.config.changed(tx, "custom_attributes", by=actor.ref)
            return definition_dict({**row, **values})

    async def delete(self, actor: Actor, definition_id: str) -> None:
        """Remove a definition; values stored under its key are kept (and flagged)."""
        actor.require("attributes.manage")
        async with self.store.tx() as tx:
            await _row(tx.conn, definition_id)
            await tx.conn.execute(A.delete().where(A.c.id == definition_id))
            await self.config.changed(tx, "custom_attributes", by=actor.ref)


class AttributesInvalid(Invalid):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["field"], errors[0]["message"])
        self.details = errors


# Escapes that mean the same in Python and in ECMAScript (what the app and the API document use).
_ESCAPES = set("dDsSwWbBnrtfv0123456789")
_QUANTITY = re.compile(r"\{[0-9]+(,[0-9]*)?\}")
_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is no regular expression that Python and ECMAScript (the app, the API
    document's ``format: regex``) both read the same way; None when it is one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # "possible nested set": read differently
            re.compile(pattern)
    except (re.error, FutureWarning, OverflowError, RecursionError) as exc:
        return f"not a regular expression: {exc}"
    i, in_class = 0, False
    quantified = lazy = False  # the token before was a quantifier (made lazy by a ?)
    while i < len(pattern):
        ch = pattern[i]
        if not in_class and ch in "*+?" and quantified:
            if ch != "?" or lazy:
                return "possessive or doubled quantifiers are not portable"
            lazy = True
            i += 1
            continue
        quantified = lazy = False
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt.isalnum() and nxt not in _ESCAPES:
                return f"the escape \\{nxt} is not portable"
            if nxt.isdigit() and (in_class or pattern[i + 2 : i + 3].isdigit()):
                return "octal escapes (and backreferences past 9) are not portable"
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                return "an empty character class [] is not portable"
        elif ch == "]" or ch == "}":
            return f"a lone {ch} is not portable; escape it"
        elif ch == "{":
            match = _QUANTITY.match(pattern, i)
            if match is None:
                return "a lone { is not portable; escape it"
            i = match.end()
            quantified = True
            continue
        elif ch in "*+?":
            quantified = True
        elif ch == "(" and pattern[i + 1 : i + 2] == "?" and not pattern.startswith(_GROUPS, i):
            return "only (?:...), lookahead and lookbehind groups are portable"
        i += 1
    return None


def _check_spec(spec: dict[str, Any]) -> None:
    """A definition that makes sense: constraints of its type only, each well-formed."""
    kind = spec["type"]
    if spec.get("applies_to") not in APPLIES_TO:
        raise Invalid("applies_to", f"one of {', '.join(APPLIES_TO)}")
    if kind not in TYPES:
        raise Invalid("type", f"one of {', '.join(TYPES)}")
    if not re.fullmatch(KEY, spec.get("key") or ""):
        raise Invalid("key", "lower-case letters, digits and _, starting with a letter (at most 64)")
    options = spec.get("options")
    if kind == "list":
        if not options:
            raise Invalid("options", "a list attribute needs its options")
        if len(set(options)) != len(options):
            raise Invalid("options", "options must differ")
    elif options is not None:
        raise Invalid("options", "only a list attribute has options")
    if spec.get("pattern") is not None:
        if kind not in ("text", "link"):
            raise Invalid("pattern", "only text and link attributes have a pattern")
        problem = pattern_problem(spec["pattern"])
        if problem is not None:
            raise Invalid("pattern", problem)
    lo, hi = spec.get("min"), spec.get("max")
    for name, bound in (("min", lo), ("max", hi)):
        if bound is None:
            continue
        if kind == "number" and (isinstance(bound, bool) or not isinstance(bound, int | float)):
            raise Invalid(name, "a number")
        elif kind in ("text", "link") and (
            isinstance(bound, bool) or not isinstance(bound, int) or bound < 0
        ):
            raise Invalid(name, "a length (a whole number, 0 or more)")
        elif kind == "date":
            try:
                if not isinstance(bound, str) or len(bound) != 10:
                    raise ValueError(bound)
                date.fromisoformat(bound)
            except ValueError:
                raise Invalid(name, "a date (YYYY-MM-DD)") from None
        elif kind in ("list", "checkbox"):
            raise Invalid(name, f"a {kind} attribute has no {name}")


async def _row(conn: AsyncConnection, definition_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(A).where(A.c.id == definition_id))).mappings().first()
    if row is None:
        raise NotFound(f"attribute definition {definition_id} does not exist")
    return dict(row)
