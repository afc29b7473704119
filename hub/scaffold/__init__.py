"""``hub plugin new NAME``: a channel plugin distribution that works as generated.

The templates under ``template/`` are a complete plugin for a made-up provider (described in the
generated ``channel.py``): the channel, its settings and capabilities, the manifest and the entry
point, fixtures and tests running the hub's conformance kit against a ``FakeProvider``, and a README.
Placeholders are ``{{name}}`` (the type name), ``{{Name}}``, ``{{package}}`` and ``{{dist}}``;
a path component ``PACKAGE`` becomes the package and ``NAME`` the type name.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from hub import __version__
from hub.errors import HubError
from hub.manifest import PLUGIN_API_VERSION

__all__ = ["ScaffoldError", "new_plugin"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ScaffoldError(HubError):
    """The plugin cannot be generated (a bad name, a folder already there)."""


def _api_range() -> str:
    major = PLUGIN_API_VERSION.split(".")[0]
    return f">={PLUGIN_API_VERSION},<{int(major) + 1}"


def new_plugin(name: str, parent: Path) -> Path:
    """Write the distribution ``hub-<name>`` under ``parent``; returns its folder."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"{name!r} cannot be a channel type name: use lower-case letters, digits and _, "
            "starting with a letter (e.g. chirp, my_sms)"
        )
    words = {
        "{{name}}": name,
        "{{Name}}": "".join(part.capitalize() for part in name.split("_")),
        "{{package}}": f"hub_{name}",
        "{{dist}}": "hub-" + name.replace("_", "-"),
        "{{hub_version}}": __version__,
        "{{api_range}}": _api_range(),
    }
    target = parent / words["{{dist}}"]
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} already exists and is not empty: choose another folder")
    template = resources.files("hub.scaffold") / "template"
    _copy(template, target, words)
    return target


def _copy(source: Traversable, target: Path, words: dict[str, str]) -> None:
    for item in source.iterdir():
        name = item.name.replace("PACKAGE", words["{{package}}"]).replace("NAME", words["{{name}}"])
        if item.is_dir():
            _copy(item, target / name, words)
            continue
        if not name.endswith(".tmpl"):
            continue
        text = item.read_text("utf-8")
        for placeholder, value in words.items():
            text = text.replace(placeholder, value)
        path = target / name.removesuffix(".tmpl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
