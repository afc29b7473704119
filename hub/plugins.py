"""Plugin loading and the channel registry.

Built-in channels and third-party ones take the same path: a distribution declares an entry point in
the group ``hub``, and ``load_plugins`` imports each one on its own. A broken plugin is reported by
name and skipped (``HUB_STRICT_PLUGINS=1`` makes it fatal); ``HUB_DISABLE_PLUGINS=a,b`` blocks
plugins by entry-point name; a hook implementation the spec does not declare stops the start-up.
``HUB_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pluggy

from hub import hookspecs
from hub.channel import Capabilities, Channel, ChannelSettings
from hub.errors import PluginLoadError

__all__ = ["ChannelRegistry", "PluginInfo", "PluginReport", "load_plugins"]

log = logging.getLogger("hub.plugins")
ENTRY_POINT_GROUP = "hub"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)


@dataclass
class PluginReport:
    loaded: list[PluginInfo] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugins": [p.__dict__ for p in self.loaded],
            "failed": [{"name": n, "error": e} for n, e in self.failed.items()],
            "disabled": self.disabled,
        }


class ChannelRegistry:
    """Channel types by type name; filled by ``hub_register_channels``."""

    def __init__(self) -> None:
        self._types: dict[str, type[Channel]] = {}
        self._owner: dict[str, str] = {}
        self.current_plugin: str | None = None

    def register(self, channel_cls: type[Channel]) -> None:
        """Validate and add one channel type; raises ``PluginLoadError`` when it is unusable."""
        where = f"plugin {self.current_plugin!r}" if self.current_plugin else "a plugin"
        if not (isinstance(channel_cls, type) and issubclass(channel_cls, Channel)):
            raise PluginLoadError(f"{where} registered {channel_cls!r}, which is not a Channel")
        name = channel_cls.type_name
        if not isinstance(name, str) or not _TYPE_NAME.match(name):
            raise PluginLoadError(
                f"{where}: {channel_cls.__name__}.type_name must match {_TYPE_NAME.pattern}, got {name!r}"
            )
        if name in self._types:
            raise PluginLoadError(
                f"channel type {name!r} is registered twice: by {self._owner[name]!r} and by "
                f"{self.current_plugin or channel_cls.__module__!r}; disable one of them "
                "with HUB_DISABLE_PLUGINS"
            )
        if not (isinstance(channel_cls.Settings, type) and issubclass(channel_cls.Settings, ChannelSettings)):
            raise PluginLoadError(f"{where}: {channel_cls.__name__}.Settings must subclass ChannelSettings")
        if channel_cls.Settings.model_config.get("extra") != "forbid":
            raise PluginLoadError(f"{where}: {channel_cls.__name__}.Settings must forbid extra fields")
        if not isinstance(channel_cls.capabilities, Capabilities):
            raise PluginLoadError(f"{where}: {channel_cls.__name__}.capabilities must be Capabilities")
        if channel_cls.mode not in ("push", "pull"):
            raise PluginLoadError(f"{where}: {channel_cls.__name__}.mode must be 'push' or 'pull'")
        self._types[name] = channel_cls
        self._owner[name] = self.current_plugin or channel_cls.__module__

    def get(self, type_name: str) -> type[Channel] | None:
        return self._types.get(type_name)

    def owner(self, type_name: str) -> str | None:
        return self._owner.get(type_name)

    def types(self) -> dict[str, type[Channel]]:
        return dict(self._types)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types


def _env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _dist_version(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = ep.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_plugins(
    *,
    strict: bool | None = None,
    disabled: list[str] | None = None,
    extra: list[tuple[str, object]] | None = None,
) -> tuple[pluggy.PluginManager, ChannelRegistry, PluginReport]:
    """Build the plugin manager, load every entry point of group ``hub``, register channels.

    ``extra`` adds plugin objects by name (tests register a plugin for one test this way).
    Raises ``PluginLoadError`` for a duplicate channel type, an undeclared hook implementation, or
    (in strict mode) any plugin that fails to load.
    """
    strict = _env_flag("HUB_STRICT_PLUGINS") if strict is None else strict
    blocked = set(_env_list("HUB_DISABLE_PLUGINS") if disabled is None else disabled)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    report = PluginReport()
    for name in sorted(blocked):
        pm.set_blocked(name)
        report.disabled.append(name)

    infos: dict[str, PluginInfo] = {}
    candidates: list[tuple[str, object, str | None, str | None]] = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in blocked:
            continue
        dist_name, version = _dist_version(ep)
        try:
            obj: object = ep.load()
        except Exception as exc:
            _fail(report, ep.name, f"import failed: {type(exc).__name__}: {exc}", strict)
            continue
        candidates.append((ep.name, obj, dist_name, version))
    for name, obj in extra or []:
        if name in blocked:
            continue
        candidates.append((name, obj, None, None))

    for name, obj, dist_name, version in candidates:
        if pm.has_plugin(name):
            _fail(report, name, "a plugin of this name is already registered", strict)
            continue
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            _fail(report, name, f"registration failed: {exc}", strict)
            continue
        infos[name] = PluginInfo(name=name, version=version, distribution=dist_name)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginLoadError(f"plugin {name!r} implements a hook the hub does not declare: {exc}") from exc

    if _env_flag("HUB_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: log.info("hook: %s", msg.rstrip()))
        pm.enable_tracing()

    registry = ChannelRegistry()
    # Register per plugin so a duplicate type names both owners and a broken hook names its plugin.
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        if "hub_register_channels" not in info.hooks:
            continue
        registry.current_plugin = name
        before = set(registry.types())
        impls = [i for i in pm.hook.hub_register_channels.get_hookimpls() if i.plugin_name == name]
        for impl in impls:
            try:
                impl.function(register=registry.register)
            except PluginLoadError:
                raise
            except Exception as exc:
                _fail(
                    report,
                    name,
                    f"hub_register_channels failed: {type(exc).__name__}: {exc}",
                    strict,
                )
        info.channels = sorted(set(registry.types()) - before)
    registry.current_plugin = None
    report.loaded = [i for n, i in infos.items() if n not in report.failed]
    return pm, registry, report


def _fail(report: PluginReport, name: str, error: str, strict: bool) -> None:
    if strict:
        raise PluginLoadError(f"plugin {name!r}: {error} (HUB_STRICT_PLUGINS is set)")
    log.warning("plugin %r skipped: %s", name, error)
    report.failed[name] = error
