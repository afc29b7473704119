"""What plugins register through the automation hooks: actions and condition fields.

Kept apart from the engine (it imports nothing of the hub but ``hub.errors``), so the hook
specifications, and a plugin type-checked against them, do not pull in the whole hub.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hub.errors import PluginLoadError

__all__ = [
    "BUILTIN_FIELDS",
    "PLUGIN_ACTIONS",
    "PLUGIN_FIELDS",
    "PREFIX_FIELDS",
    "AutomationActionRegistrar",
    "AutomationConditionRegistrar",
    "PluginActionType",
    "clear",
    "take_back",
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

PluginApply = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]
"""A plugin action: ``apply(ctx: hub.actions.ActionContext, settings)`` in the rule's
transaction; returns result data, or raises ``ServiceError`` (a failed result with its reason)."""
PluginRead = Callable[[Any], Awaitable[Any]]
"""A plugin condition field: ``read(facts: hub.automations.plugins.Facts)`` returns its value."""


@dataclass
class PluginActionType:
    name: str
    settings: type[BaseModel]
    apply: PluginApply
    plugin: str = ""


PLUGIN_ACTIONS: dict[str, PluginActionType] = {}
PLUGIN_FIELDS: dict[str, PluginRead] = {}
_OWNERS: dict[str, str] = {}
_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,39}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_.]{0,79}$")


class AutomationActionRegistrar:
    """What ``hub_register_automation_actions`` receives as ``register``."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin

    def add(self, name: str, settings: type[BaseModel], apply: PluginApply) -> None:
        """Register the action ``name`` (``plugin.verb``, e.g. ``crm.create_ticket``): rules use it
        as ``{"type": "plugin", "name": name, "settings": {...}}``; ``settings`` validates them
        before each run; ``apply(ctx, settings)`` acts in the rule's transaction.
        ``PluginLoadError`` for a bad name or one already taken."""
        if not _ACTION_NAME.match(name):
            raise PluginLoadError(f"plugin {self.plugin!r}: action name {name!r} must look like plugin.verb")
        if not (isinstance(settings, type) and issubclass(settings, BaseModel)):
            raise PluginLoadError(f"plugin {self.plugin!r}: action {name!r} needs a pydantic settings model")
        if name in PLUGIN_ACTIONS:
            raise PluginLoadError(f"automation action {name!r} is registered twice (by {_OWNERS[name]!r})")
        PLUGIN_ACTIONS[name] = PluginActionType(name, settings, apply, self.plugin)
        _OWNERS[name] = self.plugin


class AutomationConditionRegistrar:
    """What ``hub_register_automation_conditions`` receives as ``register``."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin

    def add(self, field: str, read: PluginRead) -> None:
        """Register the condition field ``field`` (``plugin.name``, e.g. ``crm.tier``): ``read(facts)``
        returns the value a rule's tests compare (``facts.conversation``, ``facts.message``,
        ``facts.conn`` to read more). ``PluginLoadError`` for a bad or taken name."""
        if not _FIELD_NAME.match(field) or field in BUILTIN_FIELDS or field.startswith(PREFIX_FIELDS):
            raise PluginLoadError(
                f"plugin {self.plugin!r}: condition field {field!r} must look like plugin.name and "
                "not be a built-in field"
            )
        if field in PLUGIN_FIELDS:
            raise PluginLoadError(f"condition field {field!r} is registered twice (by {_OWNERS[field]!r})")
        PLUGIN_FIELDS[field] = read
        _OWNERS[field] = self.plugin


def take_back(plugin: str) -> None:
    """Forget what ``plugin`` registered (its hook raised)."""
    for name in [n for n, owner in _OWNERS.items() if owner == plugin]:
        PLUGIN_ACTIONS.pop(name, None)
        PLUGIN_FIELDS.pop(name, None)
        del _OWNERS[name]


def clear() -> None:
    PLUGIN_ACTIONS.clear()
    PLUGIN_FIELDS.clear()
    _OWNERS.clear()
