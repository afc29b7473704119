"""A rule's shape: a trigger, conditions in nested all/any groups, actions and options.

Every bound is in the shape itself (so ``/openapi.json`` describes it exactly): groups nest at most
``MAX_NESTING`` deep (one model per level, no recursion), each group holds at most 100 members, a
test's ``value`` fits its ``op`` (a list for ``in``, a pattern for ``regex``, none for
``is_set``), and ``field`` is a built-in field, a custom attribute, or a plugin's field.

Condition fields (``field``):

* ``message.text``, ``message.direction``, ``message.sender_type``, ``message.automatic`` (the
  loop guard's judgement: an auto-reply, a bounce, a bot);
* ``channel.id``, ``channel.type``;
* ``conversation.status``, ``.priority``, ``.labels``, ``.team``, ``.assignee_id``,
  ``conversation.custom_attributes.KEY``;
* ``contact.name``, ``.email``, ``.phone``, ``contact.custom_attributes.KEY``,
  ``contact.first_time`` (this is the contact's first conversation, and its first message);
* ``business_hours.open`` (the conversation's business hours; true when it has none);
* any field a plugin registers (``hub_register_automation_conditions``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from hub.actions import ActionSpec
from hub.automations.registry import BUILTIN_FIELDS, PLUGIN_FIELDS, PREFIX_FIELDS

__all__ = [
    "BUILTIN_FIELDS",
    "PLUGIN_FIELDS",
    "PREFIX_FIELDS",
    "AllOf",
    "AnyOf",
    "Conditions",
    "Leaf",
    "RuleDefinition",
    "Test",
    "Trigger",
    "field_known",
]

MAX_MEMBERS = 100
MAX_NESTING = 6
"""Groups and tests nest this deep at most: the outer group is level 1, so tests sit at levels 2-6."""


def field_known(name: str) -> bool:
    if name in BUILTIN_FIELDS or name in PLUGIN_FIELDS:
        return True
    return any(name.startswith(p) and len(name) > len(p) for p in PREFIX_FIELDS)


def _known_field(name: str) -> str:
    if not field_known(name):
        raise ValueError(
            f"unknown condition field {name!r}; use one of {', '.join(sorted(BUILTIN_FIELDS))}, "
            "conversation.custom_attributes.KEY, contact.custom_attributes.KEY or a plugin's field"
        )
    return name


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"the regex does not compile: {exc}") from None
    return pattern


_FIELD_SCHEMA = {
    "description": "a built-in field, conversation.custom_attributes.KEY, contact.custom_attributes.KEY "
    "or a field a plugin registered",
    "anyOf": [
        {"type": "string", "enum": sorted(BUILTIN_FIELDS)},
        {"type": "string", "pattern": r"^(conversation|contact)\.custom_attributes\.[^\u0000]{1,64}$"},
    ],
}
FieldName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_known_field),
    WithJsonSchema(_FIELD_SCHEMA),
]
Text = Annotated[str, StringConstraints(max_length=1024)]
Scalar = Text | StrictInt | StrictFloat | StrictBool | None


class Test(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    field: FieldName


class Compare(Test):
    """``field`` ``op`` ``value``: texts ignore case; ``includes``/``excludes`` look in a list
    (labels); ``gt``..``lte`` compare numbers (or texts of one kind, such as ISO dates)."""

    op: Literal[
        "eq",
        "neq",
        "contains",
        "not_contains",
        "starts_with",
        "includes",
        "excludes",
        "gt",
        "gte",
        "lt",
        "lte",
    ]
    value: Scalar = None


class OneOf(Test):
    """``field`` is (``in``) or is not (``not_in``) one of ``value``."""

    op: Literal["in", "not_in"]
    value: list[Scalar] = Field(max_length=100)


class Matches(Test):
    """``field`` matches the regular expression ``value`` (a search, not a full match)."""

    op: Literal["regex"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_compiles)] = (
        Field(json_schema_extra={"format": "regex"})
    )


class Presence(Test):
    """``field`` has a value (``is_set``: not null, empty text or empty list) or not."""

    op: Literal["is_set", "is_not_set"]
    value: None = None


Leaf = Annotated[Compare | OneOf | Matches | Presence, Field(discriminator="op")]


class AllOf(BaseModel):
    """A group true when every member is (an empty one is true)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    all: list[Any]


class AnyOf(BaseModel):
    """A group true when one member is (an empty one is false)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    any: list[Any]


def _levels() -> tuple[type[AllOf], type[AnyOf]]:
    """One pair of group models per level, innermost (tests only) first: a bounded, non-recursive
    shape, which is what the API document shows."""
    member: Any = Leaf
    all_model: Any = None
    any_model: Any = None
    for level in range(MAX_NESTING - 1, 0, -1):
        items = Annotated[list[member], Field(max_length=MAX_MEMBERS)]
        all_model = create_model(f"AllOf{level}", __base__=AllOf, all=(items, ...))
        any_model = create_model(f"AnyOf{level}", __base__=AnyOf, any=(items, ...))
        member = Annotated[Leaf | all_model | any_model, Field(union_mode="left_to_right")]
    return all_model, any_model


_ALL1, _ANY1 = _levels()
Conditions = _ALL1 | _ANY1


TRIGGER_TYPES = (
    "conversation_created",
    "message_created",
    "conversation_updated",
    "no_reply",
    "snooze_ended",
)
CHANGES = ("status", "assignee_id", "team", "labels", "priority")


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OnConversationCreated(_Trigger):
    type: Literal["conversation_created"]


class OnSnoozeEnded(_Trigger):
    type: Literal["snooze_ended"]


class OnMessage(_Trigger):
    type: Literal["message_created"]
    direction: Literal["inbound", "outbound", "any"] = Field(default="inbound", description="which messages")


class OnConversationUpdated(_Trigger):
    type: Literal["conversation_updated"]
    changed: list[Literal["status", "assignee_id", "team", "labels", "priority"]] = Field(
        default_factory=list, max_length=5, description="fires when one of these changed (empty: any change)"
    )


class OnNoReply(_Trigger):
    type: Literal["no_reply"]
    minutes: float = Field(
        ge=0.05, le=525_600, description="how long without an agent's reply to the customer"
    )


Trigger = Annotated[
    OnConversationCreated | OnMessage | OnConversationUpdated | OnNoReply | OnSnoozeEnded,
    Field(discriminator="type"),
]


class RuleDefinition(BaseModel):
    """What an admin writes: everything a version of a rule is."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    enabled: bool = True
    mode: Literal["live", "shadow"] = Field(default="live", description="shadow: evaluated and logged only")
    trigger: Trigger
    conditions: Conditions = Field(  # type: ignore[valid-type]
        default_factory=lambda: _ALL1(all=[]), description="nested all/any groups of field tests"
    )
    actions: list[ActionSpec] = Field(min_length=1, max_length=50)
    stop_processing: bool = Field(default=False, description="when it acts, later rules do not run")
    once_per_conversation: bool = False
    cooldown_minutes: float = Field(default=0, ge=0, le=525_600, description="0: none")
