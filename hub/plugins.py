"""Plugin loading and the channel registry.

Built-in channels and third-party ones take the same path: a distribution declares an entry point in
the group ``hub``, and ``load_plugins`` imports each one on its own. A broken plugin is reported by
name and skipped (``HUB_STRICT_PLUGINS=1`` makes it fatal); ``HUB_DISABLE_PLUGINS=a,b`` blocks
plugins by entry-point name; a hook implementation the spec does not declare stops the start-up.
``HUB_TRACE_HOOKS=1`` logs every hook call: every hook is called through pluggy, never by reaching
for an implementation's function, so the trace sees them all.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import ValidationError

from hub import hookspecs
from hub.channel import Capabilities, Channel, ChannelRegistrar, ChannelSettings
from hub.errors import PluginLoadError
from hub.manifest import PLUGIN_API_VERSION, PluginManifest, api_mismatch
from hub.notify.notifier import NotifierRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.models import Event

__all__ = [
    "ChannelRegistry",
    "PluginInfo",
    "PluginReport",
    "event_observer",
    "load_automation_hooks",
    "load_notifiers",
    "load_plugins",
    "plugin_manifest",
    "without_paths",
]

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
    plugin_api: str | None = None
    """The plugin API versions its manifest says it works with; None without a manifest."""
    warnings: list[str] = field(default_factory=list)
    """Deprecated parts of the plugin API it uses, each with what to do instead."""
    tier: str | None = None
    """The quality tier it reaches (``hub plugin check``); None below bronze. Set by ``rate``."""
    unmet: list[str] = field(default_factory=list)
    """The quality rules it does not meet yet, by id. Set by ``rate``."""
    plugin: object = field(default=None, repr=False, compare=False)
    """The plugin object itself (module or instance), for rating it."""
    channel_classes: list[type[Channel]] = field(default_factory=list, repr=False, compare=False)
    rated: bool = field(default=False, repr=False, compare=False)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "channels": self.channels,
            "plugin_api": self.plugin_api,
            "warnings": self.warnings,
            "tier": self.tier,
            "unmet": self.unmet,
        }


@dataclass
class PluginReport:
    loaded: list[PluginInfo] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    def rate(self) -> None:
        """Work out each plugin's quality tier (static rules and cached kit results) once.

        Not done while plugins load: the static rules read the plugins' source, which start-up
        and every test building an app would pay for. ``hub plugins`` and the API call this."""
        for info in self.loaded:
            if not info.rated:
                _rate(info)

    def as_dict(self) -> dict[str, Any]:
        self.rate()
        return {
            "plugin_api": PLUGIN_API_VERSION,
            "plugins": [p.public() for p in self.loaded],
            "failed": [{"name": n, "error": e} for n, e in self.failed.items()],
            "disabled": self.disabled,
        }


class ChannelRegistry:
    """Channel types by type name; filled through each plugin's ``ChannelRegistrar``."""

    def __init__(self) -> None:
        self._types: dict[str, type[Channel]] = {}
        self._owner: dict[str, str] = {}

    def registrar(self, plugin: str | None = None) -> ChannelRegistrar:
        """The object ``hub_register_channels`` receives as ``register``, bound to ``plugin``."""
        return ChannelRegistrar(lambda cls: self.register(cls, plugin), plugin)

    def register(self, channel_cls: type[Channel], plugin: str | None = None) -> None:
        """Validate and add one channel type; raises ``PluginLoadError`` when it is unusable."""
        where = f"plugin {plugin!r}" if plugin else "a plugin"
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
                f"{plugin or channel_cls.__module__!r}; disable one of them "
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
        self._owner[name] = plugin or channel_cls.__module__

    def unregister_plugin(self, plugin: str) -> list[str]:
        """Remove every type ``plugin`` registered (its hook failed half-way); returns their names."""
        names = [name for name, owner in self._owner.items() if owner == plugin]
        for name in names:
            del self._types[name], self._owner[name]
        return names

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
        manifest, problem = _manifest_problem(obj)
        if problem is not None:
            _fail(report, name, problem, strict)
            continue
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            _fail(report, name, f"registration failed: {exc}", strict)
            continue
        if coroutines := _async_hooks(pm, obj):
            pm.unregister(obj)
            _fail(
                report,
                name,
                f"{', '.join(coroutines)} is `async def`, and pluggy never awaits a hook: make it a "
                "plain def that starts a task for its I/O",
                strict,
            )
            continue
        infos[name] = PluginInfo(
            name=name,
            version=version,
            distribution=dist_name,
            plugin_api=manifest.plugin_api if manifest else None,
        )

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginLoadError(f"plugin {name!r} implements a hook the hub does not declare: {exc}") from exc

    if _env_flag("HUB_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: log.info("hook: %s", msg.rstrip()))
        pm.enable_tracing()

    registry = ChannelRegistry()
    # Register per plugin, each through pluggy (so HUB_TRACE_HOOKS sees it): a duplicate type names
    # both owners, and a hook that raises names its plugin and takes back what it registered.
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        if "hub_register_channels" not in info.hooks:
            continue
        registrar = registry.registrar(name)
        try:
            _only(pm, "hub_register_channels", plugin)(register=registrar)
        except PluginLoadError:
            raise
        except Exception as exc:
            registry.unregister_plugin(name)
            _fail(report, name, f"hub_register_channels failed: {type(exc).__name__}: {exc}", strict)
        info.channels = sorted(t for t in registry.types() if registry.owner(t) == name)
        info.warnings += registrar.deprecations
    report.loaded = [i for n, i in infos.items() if n not in report.failed]
    for info in report.loaded:
        info.plugin = pm.get_plugin(info.name)
        info.channel_classes = [registry.types()[t] for t in info.channels]
    for name in report.failed:
        if (plugin := pm.get_plugin(name)) is not None:
            pm.unregister(plugin)  # a failed plugin observes nothing either
    return pm, registry, report


def load_notifiers(
    pm: pluggy.PluginManager, report: PluginReport, *, strict: bool | None = None
) -> NotifierRegistry:
    """The notifier types: the built-in ``webhook`` and ``email``, then each plugin's
    ``hub_register_notifiers`` on its own (a failing one is skipped, or fatal in strict mode)."""
    from hub.notify.builtin import EmailNotifier, WebhookNotifier

    strict = _env_flag("HUB_STRICT_PLUGINS") if strict is None else strict
    registry = NotifierRegistry()
    for cls in (WebhookNotifier, EmailNotifier):
        registry.register(cls)
    for info in list(report.loaded):
        plugin = pm.get_plugin(info.name)
        if plugin is None or "hub_register_notifiers" not in info.hooks:
            continue
        try:
            _only(pm, "hub_register_notifiers", plugin)(register=registry.registrar(info.name))
        except PluginLoadError:
            raise
        except Exception as exc:
            registry.unregister_plugin(info.name)
            _fail(report, info.name, f"hub_register_notifiers failed: {type(exc).__name__}: {exc}", strict)
            report.loaded.remove(info)
            pm.unregister(plugin)
    return registry


def load_automation_hooks(
    pm: pluggy.PluginManager, report: PluginReport, *, strict: bool | None = None
) -> None:
    """The plugins' automation actions and condition fields (``hub.automations.plugins``), each
    plugin on its own (a failing one is skipped, or fatal in strict mode)."""
    from hub.automations import plugins as automation

    strict = _env_flag("HUB_STRICT_PLUGINS") if strict is None else strict
    automation.clear()
    for hook, registrar in (
        ("hub_register_automation_actions", automation.AutomationActionRegistrar),
        ("hub_register_automation_conditions", automation.AutomationConditionRegistrar),
    ):
        for info in list(report.loaded):
            plugin = pm.get_plugin(info.name)
            if plugin is None or hook not in info.hooks:
                continue
            try:
                _only(pm, hook, plugin)(register=registrar(info.name))
            except PluginLoadError:
                raise
            except Exception as exc:
                automation.take_back(info.name)
                _fail(report, info.name, f"{hook} failed: {type(exc).__name__}: {exc}", strict)
                report.loaded.remove(info)
                pm.unregister(plugin)


def _rate(info: PluginInfo) -> None:
    """The plugin's tier from its static rules and the cached kit results (never runs the kit)."""
    from hub.quality.check import cached_evidence, plugin_from_load
    from hub.quality.rules import evaluate, tier_of

    info.rated = True
    try:
        plugin = plugin_from_load(
            info.name, info.plugin, info.channel_classes, info.distribution, info.version
        )
        results = evaluate(plugin, cached_evidence(plugin))
    except Exception:  # the rating is information: it must never break a listing
        log.exception("plugin %r: its quality tier could not be computed", info.name)
        return
    info.tier = tier_of(results)
    info.unmet = [r.rule.id for r in results if not r.holds]


def plugin_manifest(obj: object) -> PluginManifest | None:
    """The ``manifest`` a plugin module (or object) declares; ``ValueError`` when it is not one."""
    manifest = getattr(obj, "manifest", None)
    if manifest is None or isinstance(manifest, PluginManifest):
        return manifest
    try:
        return PluginManifest.model_validate(manifest)
    except ValidationError as exc:
        raise ValueError(f"its manifest is invalid: {exc}") from None


def _manifest_problem(obj: object) -> tuple[PluginManifest | None, str | None]:
    try:
        manifest = plugin_manifest(obj)
    except ValueError as exc:
        return None, str(exc)
    if manifest is None:
        return None, None
    return manifest, api_mismatch(manifest)


def _async_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The declared hooks ``plugin`` implements with ``async def`` (or an async generator).

    Undeclared ones are left to ``check_pending``, whose message says the hook is unknown."""
    found = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            continue
        for impl in caller.get_hookimpls():
            fn = impl.function
            if impl.plugin is plugin and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
                found.append(caller.name)
    return sorted(found)


def _only(pm: pluggy.PluginManager, hook: str, plugin: object) -> Any:
    """A caller of ``hook`` that runs ``plugin``'s implementation alone, through pluggy."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)


def event_observer(pm: pluggy.PluginManager) -> Callable[[Event], None]:
    """A function handing one event to every ``hub_on_event`` implementation, each on its own, so
    one that raises is logged with its plugin's name and the others still run."""
    callers = [
        (impl.plugin_name, _only(pm, "hub_on_event", impl.plugin))
        for impl in reversed(pm.hook.hub_on_event.get_hookimpls())  # pluggy's call order
    ]

    def observe(event: Event) -> None:
        for name, caller in callers:
            try:
                caller(event=event)
            except Exception:
                log.exception("plugin %r failed in hub_on_event for %s #%d", name, event.type, event.seq)

    return observe


def _fail(report: PluginReport, name: str, error: str, strict: bool) -> None:
    if strict:
        raise PluginLoadError(f"plugin {name!r}: {error} (HUB_STRICT_PLUGINS is set)")
    log.warning("plugin %r skipped: %s", name, error)
    report.failed[name] = without_paths(error)


# An absolute POSIX or Windows path, as an exception message quotes one: a leading "/" that no
# word, dot, colon or slash comes before (so a URL's "//" is not one), or a drive letter.
_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"()<>,;]+|\b[A-Za-z]:\\[^\s'\"()<>,;]+")


def without_paths(text: str) -> str:
    """``text`` with each absolute file path cut to what says where in the code it is.

    The failure of a plugin is shown by ``GET /api/v1/plugins`` and ``hub plugins``, and an import
    error names files by their full path, which tells a client how the server is laid out. A path
    under an import root (``sys.path``) keeps its part below it (``hub/channel.py``, the module);
    any other keeps its file name (``…/plugin.toml``). The log keeps the full text.
    """
    # A file system's root as an import root would keep every path whole.
    roots = sorted(
        {
            os.path.join(os.path.abspath(p), "")
            for p in sys.path
            if p and os.path.isabs(p) and os.path.dirname(os.path.abspath(p)) != os.path.abspath(p)
        },
        key=len,
        reverse=True,
    )

    def short(match: re.Match[str]) -> str:
        path = match.group(0)
        for root in roots:
            if path.startswith(root) and len(path) > len(root):
                return path[len(root) :]
        name = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
        return f"…/{name}" if name else "…"

    return _PATH.sub(short, text)
