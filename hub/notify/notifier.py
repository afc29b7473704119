"""The notifier contract: what a push provider (or any way to tell a user something) implements.

A plugin registers ``Notifier`` subclasses from ``hub_register_notifiers``; an admin configures one
in the config file (``[notifiers.NAME]``, validated by its ``Settings`` model), and the hub builds
one instance of each configured notifier. The delivery worker (``hub.notify.delivery``) calls
``deliver`` once per notification and user, retrying with a durable backoff when it raises a
retryable ``NotifyError`` (or anything else), and giving up at once on a permanent one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import PluginLoadError

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

EVENT_TYPES: dict[str, str] = {
    "conversation_created": "a new conversation in a channel I serve",
    "assigned": "a conversation was assigned to me",
    "new_message": "a customer wrote in a conversation assigned to me",
    "mention": "a colleague mentioned me in a private note",
    "snooze_ended": "a conversation assigned to me woke up from its snooze",
}
"""The event types a user is notified of, each with what it means."""

MEDIA = ("push", "email", "in_app")
"""The ways a user is notified: push (notifiers of medium push), email, and the app's own list."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class NotifierSettings(BaseModel):
    """Base of a notifier's settings: unknown fields are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class Recipient(BaseModel):
    id: str
    """The user's id."""
    email: str
    """The user's email address (the email notifier writes to it)."""
    name: str | None = None
    """The user's display name."""


class Device(BaseModel):
    id: str
    """The hub's id of the registration."""
    provider: str
    """The notifier that pushes to it (its ``name``)."""
    token: str
    """The provider's address of the device (an FCM or APNs token, a relay's id)."""
    platform: str | None = None
    """What the app said it runs on (``ios``, ``android``, ...)."""


class Notification(BaseModel):
    """One notification for one user, as a notifier receives it."""

    id: str
    """The notification's id (the same in the app's in-app list)."""
    delivery_id: str
    """This delivery's id: a retry of one delivery carries the same (receivers deduplicate on it)."""
    event: str
    """One of ``EVENT_TYPES``: ``conversation_created``, ``assigned``, ``new_message``, ``mention``,
    ``snooze_ended``."""
    title: str
    """A one-line summary, ready to show."""
    body: str | None = None
    """More text (the note, the message), shortened; may be absent."""
    conversation_id: str | None = None
    """The conversation it is about."""
    channel_id: str | None = None
    """That conversation's channel."""
    url: str | None = None
    """Where the conversation is read through the hub's API."""
    data: dict[str, Any] = Field(default_factory=dict)
    """What caused it (the author of a note, the assigner, ...)."""
    created_at: datetime
    """When the hub created it."""
    user: Recipient
    """Who it is for."""
    devices: list[Device] = Field(default_factory=list)
    """The user's devices registered for this notifier (push notifiers send to each)."""


class NotifyError(Exception):
    """A delivery failed. ``retryable`` (the default) asks for another try later, with backoff;
    ``retryable=False`` gives up on this delivery (a refused address, a revoked key)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass
class NotifierContext:
    """What the hub lends a notifier: its shared HTTP client, a logger and its public URL."""

    http: httpx.AsyncClient
    log: logging.Logger
    public_url: str


class Notifier:
    """Base class of notifiers. Subclasses set ``name``, ``medium`` and ``Settings`` and implement
    ``deliver``."""

    name: ClassVar[str]
    """The notifier's name: its config section (``[notifiers.NAME]``) and a device's provider."""
    medium: ClassVar[Literal["push", "email"]]
    """Which preference medium it serves: ``push`` or ``email``."""
    Settings: ClassVar[type[NotifierSettings]] = NotifierSettings
    """Its settings model; secrets as ``SecretStr``."""

    def __init__(self, settings: NotifierSettings, context: NotifierContext) -> None:
        self.settings = settings
        self.context = context

    async def deliver(self, notification: Notification) -> None:
        """Tell ``notification.user``; raise ``NotifyError`` when that failed."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the notifier holds (called when the hub stops)."""


class NotifierRegistrar:
    """What ``hub_register_notifiers`` receives as ``register``: call ``register.add(NotifierSubclass)``."""

    def __init__(self, add: Callable[[type[Notifier]], None], plugin: str | None = None) -> None:
        self._add = add
        self.plugin = plugin

    def add(self, notifier_cls: type[Notifier]) -> None:
        """Validate and register one notifier type; ``PluginLoadError`` (which stops the start-up)
        for an invalid class or a name another plugin already registered."""
        self._add(notifier_cls)


class NotifierRegistry:
    """Notifier types by name: the built-in ``webhook`` and ``email``, then the plugins'."""

    def __init__(self) -> None:
        self._types: dict[str, type[Notifier]] = {}
        self._owner: dict[str, str] = {}

    def registrar(self, plugin: str | None = None) -> NotifierRegistrar:
        return NotifierRegistrar(lambda cls: self.register(cls, plugin), plugin)

    def register(self, cls: type[Notifier], plugin: str | None = None) -> None:
        where = f"plugin {plugin!r}" if plugin else "the hub"
        if not (isinstance(cls, type) and issubclass(cls, Notifier)):
            raise PluginLoadError(f"{where} registered {cls!r}, which is not a Notifier")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginLoadError(f"{where}: {cls.__name__}.name must match {_NAME.pattern}, got {name!r}")
        if getattr(cls, "medium", None) not in ("push", "email"):
            raise PluginLoadError(f"{where}: {cls.__name__}.medium must be 'push' or 'email'")
        if not (isinstance(cls.Settings, type) and issubclass(cls.Settings, NotifierSettings)):
            raise PluginLoadError(f"{where}: {cls.__name__}.Settings must subclass NotifierSettings")
        if cls.Settings.model_config.get("extra") != "forbid":
            raise PluginLoadError(f"{where}: {cls.__name__}.Settings must forbid extra fields")
        if name in self._types:
            raise PluginLoadError(
                f"notifier {name!r} is registered twice: by {self._owner[name]!r} and by "
                f"{plugin or cls.__module__!r}; disable one of them with HUB_DISABLE_PLUGINS"
            )
        self._types[name] = cls
        self._owner[name] = plugin or cls.__module__

    def unregister_plugin(self, plugin: str) -> list[str]:
        names = [n for n, owner in self._owner.items() if owner == plugin]
        for n in names:
            del self._types[n], self._owner[n]
        return names

    def get(self, name: str) -> type[Notifier] | None:
        return self._types.get(name)

    def types(self) -> dict[str, type[Notifier]]:
        return dict(self._types)
