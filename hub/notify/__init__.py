"""Notifications: the notifier contract plugins implement (``hub_register_notifiers``), and the
hub's own parts: preferences and the in-app list (``service``), the event-log consumer that
decides who is told of what (``consumer``), and durable deliveries through notifiers
(``delivery``). Plugins import from this module only."""

from hub.notify.notifier import (
    EVENT_TYPES,
    MEDIA,
    Device,
    Notification,
    Notifier,
    NotifierContext,
    NotifierRegistrar,
    NotifierRegistry,
    NotifierSettings,
    NotifyError,
    Recipient,
)

__all__ = [
    "EVENT_TYPES",
    "MEDIA",
    "Device",
    "Notification",
    "Notifier",
    "NotifierContext",
    "NotifierRegistrar",
    "NotifierRegistry",
    "NotifierSettings",
    "NotifyError",
    "Recipient",
]
