"""Size limits of everything the API writes, as annotated types.

Each limit lives in the field's type, so the request models enforce it (422 naming the field) and
the OpenAPI document publishes it (``maxLength``, ``maxItems``, ``maxProperties``) from the same
source. Without them one agent request could set ``team`` to a megabyte, and every later event of
that conversation carried the megabyte to every connected app. README.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

__all__ = [
    "ATTRIBUTE_VALUE",
    "EMAIL_PATTERN",
    "JSON_DEPTH",
    "Attributes",
    "Id",
    "Label",
    "Labels",
    "LongText",
    "Name",
    "Settings",
    "ShortText",
    "Text",
    "Url",
    "bounded_json",
    "omit_null",
]

# Ids the hub makes are ~30 characters; a provider's ids (WhatsApp's user_id) up to 256.
Id = Annotated[str, StringConstraints(max_length=256)]
Name = Annotated[str, StringConstraints(max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=1024)]
Url = Annotated[str, StringConstraints(max_length=2048)]
Text = Annotated[str, StringConstraints(max_length=4096)]
# A message body: channels cap it lower (WhatsApp 4,096); email carries long ones.
LongText = Annotated[str, StringConstraints(max_length=65_536)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Labels = Annotated[list[Label], Field(max_length=50)]

# An email address as the hub takes one: something@something, no spaces or controls. The spaces are
# listed, not written \s, because engines disagree on \s (U+0085 is one for Python and Rust, not
# for JavaScript), and a client checking the published pattern would accept what the hub refuses.
_NO_SPACE = r"[^@\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
EMAIL_PATTERN = rf"^{_NO_SPACE}+@{_NO_SPACE}+$"

# Custom attributes: flat scalars only, so an attribute can be shown, filtered and compared.
ATTRIBUTE_VALUE = 1024
AttributeValue = Annotated[str, StringConstraints(max_length=ATTRIBUTE_VALUE)] | int | float | bool | None
Attributes = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], AttributeValue],
    Field(max_length=50),
]

# Nesting the API accepts in any JSON body; deeper is refused before any model sees it.
JSON_DEPTH = 32


def omit_null(*names: str) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` for optional fields that refuse (or ignore) null: their schema says
    "omit it" rather than "null allowed", so the API document is exact."""

    def edit(schema: dict[str, Any]) -> None:
        for name in names:
            prop = schema["properties"][name]
            branches = [b for b in prop.pop("anyOf", [prop]) if b.get("type") != "null"]
            prop.pop("default", None)
            if len(branches) == 1:
                prop.update(branches[0])
            else:
                prop["anyOf"] = branches

    return edit


def bounded_json(limit: int) -> AfterValidator:
    """A validator refusing a free-form JSON value whose compact encoding exceeds ``limit`` bytes."""

    def check(value: Any) -> Any:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON; at most {limit}")
        return value

    return AfterValidator(check)


# A channel's settings: its own model validates the fields; this bounds the whole.
Settings = Annotated[dict[str, Any], Field(max_length=100), bounded_json(64 * 1024)]
