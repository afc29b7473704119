"""`hub plugin new chirp` gives a distribution that works as generated: `pip install -e` into a
virtualenv, `hub plugins` lists it, its generated tests (the conformance kit) pass, and
`hub plugin check` rates it.

The virtualenv is made without pip or packages of its own; a ``.pth`` file makes the hub's test
virtualenv (this interpreter's site-packages: the hub, pytest, setuptools) visible in it, so the
install is offline and quick, and the generated plugin lands in the new virtualenv only.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from hub.scaffold import ScaffoldError, new_plugin

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def _venv(where: Path) -> Path:
    """A virtualenv seeing this one's packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    ours = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    theirs = _run(python, "-c", "import site; print(site.getsitepackages()[0])", cwd=where).stdout.strip()
    # addsitedir also runs the .pth files there: the hub's own editable install among them.
    lines = [f"import site; site.addsitedir({path!r})" for path in ours]
    Path(theirs, "hub_test_parent.pth").write_text("\n".join(lines) + "\n")
    return python


def test_generated_plugin_installs_lists_passes_the_kit_and_is_rated(tmp_path: Path) -> None:
    made = _run(sys.executable, "-m", "hub.cli", "plugin", "new", "chirp", "--dir", tmp_path, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "hub-chirp"
    assert f"created {project}" in made.stdout
    assert (project / "hub_chirp" / "channel.py").exists() and (project / "README.md").exists()

    python = _venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["HUB_PLUGIN_CHECKS_DIR"] = str(tmp_path / "checks")
    pip = [
        python,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "-e",
        project,
    ]
    installed = _run(*pip[:-2], "--no-build-isolation", "--no-index", "-e", project, cwd=tmp_path, env=env)
    if installed.returncode != 0:
        installed = _run(*pip, cwd=tmp_path, env=env)
    if installed.returncode != 0:
        pytest.skip(f"pip could not install the generated plugin here: {installed.stderr.strip()[-300:]}")

    listed = _run(python, "-m", "hub.cli", "plugins", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("chirp ")]
    assert "0.1.0" in line and "channels: chirp" in line and "tier: none" in line  # not checked yet
    where = _run(python, "-c", "import hub_chirp; print(hub_chirp.__file__)", cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(project), "hub_chirp must come from the editable install"
    outside = _run(sys.executable, "-c", "import hub_chirp", cwd=tmp_path, env=env)
    assert outside.returncode != 0, "the plugin must be installed in the new virtualenv only"

    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", cwd=project, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:]
    summary = tests.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "error" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 45, summary

    checked = _run(python, "-m", "hub.cli", "plugin", "check", "chirp", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "chirp 0.1.0 (hub-chirp): tier platinum" in checked.stdout, checked.stdout
    relisted = _run(python, "-m", "hub.cli", "plugins", cwd=tmp_path, env=env)
    assert any(x.startswith("chirp ") and "tier: platinum" in x for x in relisted.stdout.splitlines())


def test_a_bad_name_or_an_existing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="lower-case"):
        new_plugin("Chirp-Bot", tmp_path)
    new_plugin("chirp", tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        new_plugin("chirp", tmp_path)
    refused = _run(sys.executable, "-m", "hub.cli", "plugin", "new", "9lives", "--dir", tmp_path, cwd=ROOT)
    assert refused.returncode == 2 and "cannot be a channel type name" in refused.stderr
