"""What plugins add to automations: actions (``hub_register_automation_actions``) and condition
fields (``hub_register_automation_conditions``). Plugins import from this module only."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from hub.actions import PLUGIN_ACTIONS, ActionContext, PluginActionType
from hub.automations.conditions import Facts
from hub.automations.definition import BUILTIN_FIELDS, PLUGIN_FIELDS, PREFIX_FIELDS
from hub.errors import PluginLoadError

__all__ = [
    "ActionContext",
    "AutomationActionRegistrar",
    "AutomationConditionRegistrar",
    "Facts",
    "clear",
    "take_back",
]

_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,39}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_.]{0,79}$")
_OWNERS: dict[str, str] = {}


class AutomationActionRegistrar:
    """What ``hub_register_automation_actions`` receives as ``register``."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin

    def add(
        self,
        name: str,
        settings: type[BaseModel],
        apply: Callable[[ActionContext, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> None:
        """Register the action ``name`` (``plugin.verb``, e.g. ``crm.create_ticket``): rules use it
        as ``{"type": "plugin", "name": name, "settings": {...}}``; ``settings`` validates them
        when the rule is saved and again before each run; ``apply(ctx, settings)`` acts in the
        rule's transaction. ``PluginLoadError`` for a bad name or one already taken."""
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

    def add(self, field: str, read: Callable[[Facts], Awaitable[Any]]) -> None:
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
