"""What can be told about a plugin without running it: its classes, its manifest, its source."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.channel import SECRET_SETTING_NAMES, Channel
from hub.manifest import PluginManifest, api_mismatch
from hub.modelref import attribute_docs

__all__ = [
    "Plugin",
    "Verdict",
    "async_hooks",
    "capabilities",
    "declaration",
    "docs",
    "lent_client",
    "secrets",
]


@dataclass
class Plugin:
    """One plugin as the checker sees it."""

    name: str
    obj: object
    channels: list[type[Channel]]
    distribution: str | None = None
    version: str | None = None
    manifest: PluginManifest | None = None
    manifest_error: str | None = None
    project_dir: Path | None = None
    """Where its pyproject.toml and tests are (a path given, or an editable install)."""
    hooks: list[Callable[..., object]] = field(default_factory=list)
    calls: list[tuple[str, str]] | None = field(default=None, repr=False)
    """Every call in its source (``_calls``), once parsed."""

    def source_files(self) -> list[Path]:
        """The plugin package's Python files (the module alone for a single-module plugin)."""
        module = inspect.getmodule(self.obj) or self.obj
        file = getattr(module, "__file__", None)
        if file is None:
            return []
        path = Path(file)
        if path.name == "__init__.py":
            return sorted(p for p in path.parent.rglob("*.py") if "__pycache__" not in p.parts)
        return [path]

    def package_dir(self) -> Path | None:
        files = self.source_files()
        return files[0].parent if files else None


@dataclass(frozen=True)
class Verdict:
    """A rule's result: ``ok`` True (holds), False (unmet) or None (not known: the kit never ran)."""

    ok: bool | None
    detail: str = ""


def declaration(plugin: Plugin) -> Verdict:
    problems = []
    if plugin.manifest_error:
        problems.append(plugin.manifest_error)
    elif plugin.manifest is None:
        problems.append("no manifest: declare `manifest = PluginManifest(...)` in the plugin module")
    else:
        if (mismatch := api_mismatch(plugin.manifest)) is not None:
            problems.append(mismatch)
        if plugin.version and plugin.manifest.version != plugin.version:
            problems.append(
                f"the manifest says version {plugin.manifest.version}, the distribution {plugin.version}"
            )
        modes = {c.mode for c in plugin.channels}
        if modes and modes != {plugin.manifest.mode}:
            problems.append(f"the manifest says {plugin.manifest.mode}, its channels are {sorted(modes)}")
    if not plugin.channels:
        problems.append("it registers no channel type")
    for cls in plugin.channels:
        if not cls.display_name:
            problems.append(f"{cls.__name__} has no display_name")
    return Verdict(not problems, "; ".join(problems))


def secrets(plugin: Plugin) -> Verdict:
    plain = [
        f"{cls.Settings.__name__}.{name}"
        for cls in plugin.channels
        for name in cls.Settings.model_fields
        if any(s in name for s in (*SECRET_SETTING_NAMES, "token"))
        and name not in cls.Settings.secret_fields()
        and not name.startswith("verify")
    ]
    return Verdict(not plain, f"type these settings as SecretStr: {plain}" if plain else "")


def capabilities(plugin: Plugin) -> Verdict:
    problems = []
    for cls in plugin.channels:
        caps = cls.capabilities
        need = {
            "parse": cls.mode == "push",
            "ingest": cls.mode == "pull",
            "send": bool(caps.sendable_kinds()),
            "mark_read": caps.read_receipts,
        }
        for method, needed in need.items():
            if needed and not cls.supports(method) and getattr(cls, method) is getattr(Channel, method):
                problems.append(f"{cls.__name__} declares what needs {method}() but does not implement it")
        if cls.mode == "push" and not cls.supports("authenticate"):
            problems.append(f"{cls.__name__} accepts every webhook: implement authenticate()")
    return Verdict(not problems, "; ".join(problems))


def docs(plugin: Plugin, readme: bool | None) -> Verdict:
    missing = []
    for cls in plugin.channels:
        if not inspect.getdoc(cls) or cls.__doc__ is None:
            missing.append(f"{cls.__name__} docstring")
        documented = _documented_fields(cls.Settings)
        missing += [
            f"{cls.Settings.__name__}.{name}"
            for name, info in cls.Settings.model_fields.items()
            if not info.description and name not in documented
        ]
    missing += [f"{fn.__name__}() docstring" for fn in plugin.hooks if not inspect.getdoc(fn)]
    if readme is False:
        missing.append("a README")
    return Verdict(not missing, f"document: {', '.join(missing)}" if missing else "")


def _documented_fields(model: type) -> set[str]:
    """Fields followed by an attribute docstring in the class source (and in its bases)."""
    return set(attribute_docs(model))


def async_hooks(plugin: Plugin) -> Verdict:
    bad = [fn.__name__ for fn in plugin.hooks if inspect.iscoroutinefunction(fn)]
    return Verdict(not bad, f"async def hooks are never awaited: {bad}" if bad else "")


# Calls that make a client of its own or block the loop; the lent client and awaits do neither.
_OWN_CLIENTS = {"httpx.AsyncClient", "httpx.Client", "aiohttp.ClientSession", "requests", "urllib.request"}
_BLOCKING = {"time.sleep", "requests", "urllib.request.urlopen", "subprocess.run", "socket.create_connection"}


def _calls(plugin: Plugin) -> list[tuple[str, str]]:
    """Every call in the plugin's source, as written, with where; parsed once per ``Plugin``."""
    if plugin.calls is None:
        plugin.calls = []
        for path in plugin.source_files():
            try:
                tree = ast.parse(path.read_text("utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            plugin.calls += [
                (ast.unparse(node.func), f"{path.name}:{node.lineno}")
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
            ]
    return plugin.calls


def _matching(calls: list[tuple[str, str]], names: set[str]) -> list[str]:
    return [
        f"{call} ({where})"
        for call, where in calls
        if any(call == n or call.startswith(n + ".") for n in names)
    ]


def lent_client(plugin: Plugin) -> Verdict:
    own = _matching(_calls(plugin), _OWN_CLIENTS)
    return Verdict(not own, f"use self.context.http, not a client of its own: {own}" if own else "")


def non_blocking(plugin: Plugin) -> Verdict:
    blocking = _matching(_calls(plugin), _BLOCKING)
    return Verdict(not blocking, f"blocking calls: {blocking}" if blocking else "")
