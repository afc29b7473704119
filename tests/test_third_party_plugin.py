"""A third-party plugin distribution, built and installed as pip would, is found by the hub.

``examples/hub-echo`` is installed with pip into a temporary ``--target`` directory (never into the
shared virtualenv), then a fresh interpreter with that directory on ``PYTHONPATH`` loads the plugins:
the ``hub_echo-*.dist-info`` pip wrote there is what ``importlib.metadata`` reads, so this walks
the same path as a user's ``pip install hub-echo``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hub-echo"

CHECK = textwrap.dedent(
    """
    import json
    from hub.plugins import load_plugins

    pm, registry, report = load_plugins(strict=True, disabled=[])
    [echo] = [p for p in report.loaded if p.name == "echo"]
    cls = registry.get("echo")
    print(json.dumps({
        "distribution": echo.distribution,
        "version": echo.version,
        "hooks": echo.hooks,
        "channels": echo.channels,
        "module": cls.__module__ if cls else None,
        "file": __import__("hub_echo").__file__,
    }))
    """
)


def _pip_install(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target)]
    # Offline first, with the build tools already installed; then with pip's own build environment.
    offline = subprocess.run(
        [*base, "--no-build-isolation", "--no-index", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if offline.returncode == 0:
        return offline
    return subprocess.run([*base, str(source)], capture_output=True, text=True, timeout=120)


def test_installed_example_plugin_is_discovered(tmp_path: Path) -> None:
    # setuptools builds in the source tree (build/, *.egg-info): build a copy, keep the checkout clean.
    source = tmp_path / "hub-echo"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    installed = _pip_install(source, target)
    if installed.returncode != 0:
        pytest.skip(
            "pip could not build examples/hub-echo here (no `wheel` for an offline build and no "
            f"package index reachable): {installed.stderr.strip().splitlines()[-1:]}"
        )
    assert list(target.glob("hub_echo-0.1.0.dist-info")), "pip wrote no dist-info"
    env = {**os.environ, "PYTHONPATH": str(target)}
    for name in ("HUB_DISABLE_PLUGINS", "HUB_STRICT_PLUGINS", "HUB_TRACE_HOOKS"):
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["distribution"] == "hub-echo"
    assert found["version"] == "0.1.0"
    assert found["hooks"] == ["hub_register_channels"]
    assert found["channels"] == ["echo"]
    assert found["module"] == "hub_echo.channel"
    assert Path(found["file"]).is_relative_to(target), "hub_echo came from somewhere else"
