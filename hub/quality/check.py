"""``hub plugin check [NAME | PATH]`` and the tier ``hub plugins`` shows.

Static rules read the plugin's source, so they are evaluated when plugins are listed (never while
they load). The conformance kit and
``mypy --strict`` take seconds, so ``hub plugin check`` runs them and keeps their results in a cache
(``$HUB_PLUGIN_CHECKS_DIR``, default ``~/.cache/hub/plugin-checks``), keyed by the plugin's name and
a digest of its source: ``hub plugins`` and ``GET /api/v1/plugins`` read it, and results for other
source count as never measured.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pluggy

from hub import hookspecs
from hub.channel import Channel
from hub.plugins import ChannelRegistry, plugin_manifest
from hub.quality.rules import Evidence, Result, evaluate, tier_of
from hub.quality.static import Plugin

__all__ = ["cached_evidence", "check", "load_target", "measure", "plugin_from_load", "report_lines"]

ENTRY_POINT_GROUP = "hub"


def cache_dir() -> Path:
    base = os.environ.get("HUB_PLUGIN_CHECKS_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hub" / "plugin-checks"


def digest(plugin: Plugin) -> str:
    sha = hashlib.sha256()
    for path in plugin.source_files():
        sha.update(path.name.encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


# ---- finding the plugin --------------------------------------------------------------------------


def _hooks_and_channels(name: str, obj: object) -> tuple[list[Any], list[type[Channel]]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(obj, name=name)
    hooks = [impl.function for caller in pm.get_hookcallers(obj) or [] for impl in caller.get_hookimpls()]
    registry = ChannelRegistry()
    if any(f.__name__ == "hub_register_channels" for f in hooks):
        pm.hook.hub_register_channels(register=registry.registrar(name))
    return hooks, list(registry.types().values())


def _with_manifest(plugin: Plugin) -> Plugin:
    try:
        plugin.manifest = plugin_manifest(plugin.obj)
    except ValueError as exc:
        plugin.manifest_error = str(exc)
    return plugin


def _editable_project(dist: importlib.metadata.Distribution) -> Path | None:
    """The source folder of an editable (``pip install -e``) install, from PEP 610's direct_url."""
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    info = json.loads(raw)
    url = info.get("url", "")
    if url.startswith("file://") and info.get("dir_info", {}).get("editable"):
        return Path(url.removeprefix("file://"))
    return None


def plugin_from_load(
    name: str, obj: object, channels: list[type[Channel]], distribution: str | None, version: str | None
) -> Plugin:
    """A ``Plugin`` from what the loader already has (no second import, no hook call)."""
    hooks = [getattr(obj, h) for h in dir(obj) if h.startswith("hub_") and callable(getattr(obj, h))]
    return _with_manifest(Plugin(name, obj, channels, distribution, version, hooks=hooks))


def load_target(target: str) -> list[Plugin]:
    """The plugins an installed entry-point name or a source folder holds."""
    path = Path(target)
    if (path / "pyproject.toml").exists():
        project = tomllib.loads((path / "pyproject.toml").read_text("utf-8"))["project"]
        entries = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
        if not entries:
            raise LookupError(
                f"{path}/pyproject.toml declares no entry point in the group {ENTRY_POINT_GROUP!r}"
            )
        sys.path.insert(0, str(path.resolve()))
        found = []
        for name, module in entries.items():
            obj = importlib.import_module(module)
            hooks, channels = _hooks_and_channels(name, obj)
            plugin = Plugin(name, obj, channels, project["name"], project.get("version"), hooks=hooks)
            plugin.project_dir = path.resolve()
            found.append(_with_manifest(plugin))
        return found
    eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == target]
    if not eps:
        raise LookupError(f"no installed plugin {target!r} and no pyproject.toml in a folder {target!r}")
    ep = eps[0]
    obj = ep.load()
    hooks, channels = _hooks_and_channels(ep.name, obj)
    dist = ep.dist
    plugin = Plugin(
        ep.name,
        obj,
        channels,
        dist.metadata["Name"] if dist else None,
        dist.version if dist else None,
        hooks=hooks,
    )
    plugin.project_dir = _editable_project(dist) if dist else None
    return [_with_manifest(plugin)]


# ---- measuring -----------------------------------------------------------------------------------


def _run_kit(plugin: Plugin) -> tuple[dict[str, Any] | None, str]:
    """The kit report of the plugin's own tests, or None and why."""
    if plugin.project_dir is None:
        return None, "no source folder to run its tests from (not an editable install): give its path"
    tests = plugin.project_dir / "tests"
    if not tests.is_dir():
        return None, f"{tests} does not exist: add a ChannelConformance suite there"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kit.json"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "hub.quality.kitreport",
                f"--hub-kit-report={out}",
                "-o",
                "asyncio_mode=auto",
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                str(tests),
            ],
            cwd=plugin.project_dir,
            capture_output=True,
            text=True,
            timeout=900,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(plugin.project_dir), os.environ.get("PYTHONPATH", "")]),
            },
        )
        if not out.exists():
            return None, f"pytest did not run: {(run.stderr or run.stdout).strip()[-300:]}"
        data: dict[str, Any] = json.loads(out.read_text())
        if not data["checks"]:
            return None, f"{tests} holds no ChannelConformance suite"
        return data, ""


def _editable_roots(plugin: Plugin) -> list[str]:
    """Folders of the packages the plugin imports that live outside site-packages (editable
    installs, the hub's own checkout): mypy cannot follow an editable install's import hook."""
    names = {"hub"}
    for path in plugin.source_files():
        try:
            tree = ast.parse(path.read_text("utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    package = plugin.package_dir()
    own = str(package.parent) if package else ""
    roots: list[str] = []
    for name in sorted(names - set(sys.stdlib_module_names)):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = spec.origin if spec else None
        if origin and "site-packages" not in origin and origin not in ("built-in", "frozen"):
            root = str(Path(origin).resolve().parent.parent)
            if root not in roots and root != own:
                roots.append(root)
    return roots


def _run_mypy(plugin: Plugin) -> dict[str, Any]:
    package = plugin.package_dir()
    if package is None:
        return {"ok": False, "detail": "no source to check"}
    target = package if (package / "__init__.py").exists() else plugin.source_files()[0]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--ignore-missing-imports",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=package.parent,
        env={**os.environ, "MYPYPATH": os.pathsep.join(_editable_roots(plugin))},
    )
    if "No module named mypy" in run.stderr:
        return {"ok": False, "detail": "mypy is not installed (pip install mypy)"}
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    detail = f"{len(errors)} error(s), first: {errors[0]}" if errors else ""
    return {"ok": run.returncode == 0, "detail": detail}


def measure(plugin: Plugin) -> Evidence:
    """Run the kit and mypy --strict for ``plugin`` and cache the results."""
    kit, note = _run_kit(plugin)
    evidence = Evidence(
        kit=kit["checks"] if kit else None,
        suites=kit["suites"] if kit else None,
        mypy=_run_mypy(plugin),
        readme=(plugin.project_dir / "README.md").exists() if plugin.project_dir else None,
        kit_note=note,
    )
    record = {
        "plugin": plugin.name,
        "version": plugin.version,
        "digest": digest(plugin),
        "kit": evidence.kit,
        "suites": evidence.suites,
        "mypy": evidence.mypy,
        "readme": evidence.readme,
        "kit_note": evidence.kit_note,
    }
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{plugin.name}.json").write_text(json.dumps(record, indent=2))
    return evidence


def cached_evidence(plugin: Plugin) -> Evidence:
    """What the last ``hub plugin check`` measured for this very source, or nothing."""
    try:
        record = json.loads((cache_dir() / f"{plugin.name}.json").read_text())
    except (OSError, ValueError):
        return Evidence()
    if record.get("digest") != digest(plugin):
        return Evidence()
    return Evidence(
        record.get("kit"),
        record.get("suites"),
        record.get("mypy"),
        record.get("readme"),
        record.get("kit_note", ""),
    )


def check(plugin: Plugin, *, run: bool = True) -> tuple[str | None, list[Result]]:
    evidence = measure(plugin) if run else cached_evidence(plugin)
    results = evaluate(plugin, evidence)
    return tier_of(results), results


def report_lines(plugin: Plugin, tier: str | None, results: list[Result]) -> list[str]:
    where = plugin.distribution or "not installed"
    lines = [f"{plugin.name} {plugin.version or '?'} ({where}): tier {tier or 'none'}"]
    unmet = [r for r in results if not r.holds]
    if not unmet:
        lines.append("  every rule holds")
    for r in unmet:
        state = "unknown" if r.verdict.ok is None else "unmet"
        lines.append(f"  {state:<8}{r.rule.id:<28}{r.rule.title}: {r.verdict.detail}")
    for r in results:
        if r.exempt is not None and r.verdict.ok is not True:
            lines.append(f"  exempt  {r.rule.id:<28}{r.exempt}")
    rules = {r.rule.id for r in results}
    for key, reason in plugin.manifest.exemptions.items() if plugin.manifest else ():
        if key not in rules:  # one kit check of a rule, skipped with this reason
            lines.append(f"  exempt  {key + ' ':<28}{reason}")
    return lines
