"""The hub's hook specifications: the whole plugin contract, and nothing else.

Hooks are synchronous. They register objects (``hub_register_*``) or observe what happened
(``hub_on_*``); the registered objects do the work, in async methods where there is I/O.
``docs/plugins.md`` documents every hook below; a test keeps the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from hub.automations.registry import AutomationActionRegistrar, AutomationConditionRegistrar
    from hub.channel import ChannelRegistrar
    from hub.models import Event
    from hub.notify import NotifierRegistrar

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "hub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register channel types by calling ``register.add(ChannelSubclass)`` once per type.

    Fires once, while the hub starts, after every plugin is loaded and before any channel instance
    is built. ``register.add`` validates the class (type name, ``Settings`` model, capabilities) and
    raises ``PluginLoadError`` for an invalid class or a type name another plugin already took,
    which stops the start-up: two plugins must never answer for the same channel type.
    The return value is ignored. Any other exception marks the plugin as failed, and the types it
    registered before raising are taken back.
    """


@hookspec
def hub_register_notifiers(register: NotifierRegistrar) -> None:
    """Register notifier types (push providers, chat tools, ...) by calling
    ``register.add(NotifierSubclass)`` once per type.

    Fires once, while the hub starts, after the channel types are registered. ``register.add``
    validates the class (``name``, ``medium``, a ``Settings`` model that forbids unknown fields)
    and raises ``PluginLoadError`` for an invalid class or a name already taken (the built-in
    ``webhook`` and ``email`` included), which stops the start-up. A registered notifier sends
    nothing until an admin configures it (``[notifiers.NAME]`` in the config file). The return
    value is ignored. Any other exception marks the plugin as failed, and the notifiers it
    registered before raising are taken back.
    """


@hookspec
def hub_register_automation_actions(register: AutomationActionRegistrar) -> None:
    """Add actions automation rules can take, by calling ``register.add(name, SettingsModel,
    apply)`` once per action.

    Fires once, while the hub starts, after the notifiers are registered. ``name`` looks like
    ``plugin.verb``; a rule uses it as ``{"type": "plugin", "name": ..., "settings": {...}}``, and
    ``SettingsModel`` (pydantic) checks the settings. ``apply(ctx, settings)`` is awaited in the
    rule's transaction with ``ctx`` a ``hub.actions.ActionContext`` (``tx``, ``actor`` naming the
    rule, ``conversation_id``, ``after_commit`` for I/O that must wait for the commit); it returns
    a dict of result data, or raises ``ServiceError`` for a failed result with its reason.
    ``register.add`` raises ``PluginLoadError`` for a bad or taken name, which stops the start-up.
    The return value is ignored. Any other exception marks the plugin as failed, and the actions
    it registered before raising are taken back.
    """


@hookspec
def hub_register_automation_conditions(register: AutomationConditionRegistrar) -> None:
    """Add condition fields automation rules can test, by calling ``register.add(field, read)``
    once per field.

    Fires once, while the hub starts, after the automation actions. ``field`` looks like
    ``plugin.name`` and is used in a rule's conditions like a built-in field (``{"field":
    "crm.tier", "op": "eq", "value": "gold"}``). ``read(facts)`` is awaited with a
    ``Facts`` (``hub.automations.plugins``) (``conversation``, ``message``, ``at``, ``conn``) and returns
    the value; an exception makes the test false with the error in the run log.
    ``register.add`` raises ``PluginLoadError`` for a bad name, a built-in one or one taken, which
    stops the start-up. The return value is ignored. Any other exception marks the plugin as
    failed, and the fields it registered before raising are taken back.
    """


@hookspec
def hub_on_event(event: Event) -> None:
    """Observe one entry of the event log after the change it records is committed.

    Fires in the process that made the change, in ``seq`` order, for every event type the hub
    emits: ``message.created``, ``message.updated``, ``conversation.created``,
    ``conversation.updated``, ``contact.updated``, ``contact.merged``, ``channel.updated``,
    ``channel.members_updated``, ``config.updated``, ``user.updated``, ``role.updated``,
    ``team.updated``, ``presence.updated``, ``note.created``, ``notification.created``,
    ``notification.updated``, ``access.changed``, ``bot.updated`` and
    ``conversation.handed_over`` (a bot let go of a conversation). Changes made by a person carry
    ``data.by``. ``event`` must not be changed. The call is on the hub's event loop: return
    quickly, and start your own task (``asyncio.get_running_loop()``) for I/O. An exception is
    logged with the plugin's name and never stops the others or the change. The return value is
    ignored.
    """
