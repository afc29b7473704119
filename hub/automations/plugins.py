"""What plugins add to automations: actions (``hub_register_automation_actions``) and condition
fields (``hub_register_automation_conditions``). Plugins import from this module only."""

from __future__ import annotations

from hub.actions import ActionContext
from hub.automations.conditions import Facts
from hub.automations.registry import (
    AutomationActionRegistrar,
    AutomationConditionRegistrar,
    clear,
    take_back,
)

__all__ = [
    "ActionContext",
    "AutomationActionRegistrar",
    "AutomationConditionRegistrar",
    "Facts",
    "clear",
    "take_back",
]
