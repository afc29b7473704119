"""A rule's shape: a trigger, conditions in nested all/any groups, actions and options.

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

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from hub.actions import ActionSpec

__all__ = [
    "BUILTIN_FIELDS",
    "OPS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Leaf",
    "RuleDefinition",
    "Trigger",
    "field_known",
]

BUILTIN_FIELDS = frozenset(
    {
        "message.text",
        "message.direction",
        "message.sender_type",
        "message.automatic",
        "channel.id",
        "channel.type",
        "conversation.status",
        "conversation.priority",
        "conversation.labels",
        "conversation.team",
        "conversation.assignee_id",
        "contact.name",
        "contact.email",
        "contact.phone",
        "contact.first_time",
        "business_hours.open",
    }
)
PREFIX_FIELDS = ("conversation.custom_attributes.", "contact.custom_attributes.")
OPS = (
    "eq",
    "neq",
    "contains",
    "not_contains",
    "starts_with",
    "regex",
    "in",
    "not_in",
    "includes",
    "excludes",
    "is_set",
    "is_not_set",
    "gt",
    "gte",
    "lt",
    "lte",
)
MAX_CONDITIONS = 100
MAX_NESTING = 6

# Plugin condition fields (name -> callable), filled while the hub starts.
PLUGIN_FIELDS: dict[str, Any] = {}

Scalar = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool | None


def field_known(name: str) -> bool:
    if name in BUILTIN_FIELDS or name in PLUGIN_FIELDS:
        return True
    return any(name.startswith(p) and len(name) > len(p) for p in PREFIX_FIELDS)


class Leaf(BaseModel):
    """One test: ``field`` ``op`` ``value``."""

    model_config = ConfigDict(extra="forbid")

    field: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    op: Literal[OPS]  # type: ignore[valid-type]
    value: Scalar | Annotated[list[Scalar], Field(max_length=100)] = None

    @model_validator(mode="after")
    def _check(self) -> Leaf:
        if not field_known(self.field):
            raise ValueError(
                f"unknown condition field {self.field!r}; use one of {', '.join(sorted(BUILTIN_FIELDS))}, "
                f"conversation.custom_attributes.KEY, contact.custom_attributes.KEY or a plugin's field"
            )
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("regex takes a string value")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"the regex does not compile: {exc}") from None
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"{self.op} takes a list value")
        return self


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: list[Condition] = Field(max_length=MAX_CONDITIONS, description="true when every one is")


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    any: list[Condition] = Field(max_length=MAX_CONDITIONS, description="true when one is")


Condition = Leaf | AllOf | AnyOf
AllOf.model_rebuild()
AnyOf.model_rebuild()

TRIGGERS = ("conversation_created", "message_created", "conversation_updated", "no_reply", "snooze_ended")
CHANGES = ("status", "assignee_id", "team", "labels", "priority")


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal[TRIGGERS] = Field(  # type: ignore[valid-type]
        description="conversation_created, message_created, conversation_updated, no_reply "
        "(no agent reply for minutes after a customer message) or snooze_ended"
    )
    direction: Literal["inbound", "outbound", "any"] = Field(
        default="inbound", description="message_created: which messages"
    )
    changed: list[Literal[CHANGES]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=5,
        description="conversation_updated: fires when one of these changed (empty: any change)",
    )
    minutes: float | None = Field(
        default=None, ge=0.05, le=525_600, description="no_reply: how long without an agent's reply"
    )

    @model_validator(mode="after")
    def _minutes(self) -> Trigger:
        if self.type == "no_reply" and self.minutes is None:
            raise ValueError("a no_reply trigger needs minutes")
        if self.type != "no_reply" and self.minutes is not None:
            raise ValueError("minutes belongs to a no_reply trigger only")
        return self


class RuleDefinition(BaseModel):
    """What an admin writes: everything a version of a rule is."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    enabled: bool = True
    mode: Literal["live", "shadow"] = Field(default="live", description="shadow: evaluated and logged only")
    trigger: Trigger
    conditions: AllOf | AnyOf = Field(
        default_factory=lambda: AllOf(all=[]), description="nested all/any groups of field tests"
    )
    actions: list[ActionSpec] = Field(min_length=1, max_length=50)
    stop_processing: bool = Field(default=False, description="when it acts, later rules do not run")
    once_per_conversation: bool = False
    cooldown_minutes: float = Field(default=0, ge=0, le=525_600, description="0: none")

    @field_validator("conditions")
    @classmethod
    def _bounded(cls, value: AllOf | AnyOf) -> AllOf | AnyOf:
        count, depth = _size(value, 1)
        if count > MAX_CONDITIONS:
            raise ValueError(f"at most {MAX_CONDITIONS} conditions in all")
        if depth > MAX_NESTING:
            raise ValueError(f"groups nest at most {MAX_NESTING} deep")
        return value


def _size(cond: Condition, depth: int) -> tuple[int, int]:
    if isinstance(cond, Leaf):
        return 1, depth
    items = cond.all if isinstance(cond, AllOf) else cond.any
    count, deepest = 0, depth
    for item in items:
        c, d = _size(item, depth + 1)
        count, deepest = count + c, max(deepest, d)
    return count, deepest
