"""The plugin manifest and the plugin API version: what a plugin declares about itself.

A plugin declares a ``manifest`` attribute (a ``PluginManifest``) in the module its entry point
names. The manifest lives in code rather than in ``pyproject.toml`` because the hub reads it while
it loads plugins, from installed wheels that carry no ``pyproject.toml``.

The plugin API has a version of its own, ``PLUGIN_API_VERSION`` (``MAJOR.MINOR``), separate from
the hub's release version. A minor version only adds (a hook, a model field, a ``Channel`` method
with a default); what is removed or changed incompatibly is first deprecated for at least one
minor version, with a warning naming the plugin at every start, and goes only in the next major.
A plugin whose manifest requires an API this hub does not provide is refused at load.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "PLUGIN_API_VERSION",
    "PluginDeprecationWarning",
    "PluginManifest",
    "api_mismatch",
    "deprecated",
]

PLUGIN_API_VERSION = "1.1"
"""1.0: the first contract. 1.1: ``hub_register_channels`` gets a ``ChannelRegistrar`` (call
``register.add(cls)``; calling ``register(cls)`` is deprecated), the manifest, the quality tiers."""

log = logging.getLogger("hub.plugins")


class PluginDeprecationWarning(DeprecationWarning):
    """A plugin uses a part of the plugin API that the next major version removes."""


class PluginManifest(BaseModel):
    """What a plugin declares about itself (``manifest = PluginManifest(...)`` in its module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugin_api: str = Field(description='The plugin API versions it works with, e.g. ">=1.1,<2"')
    version: str = Field(description="The plugin's own version; must equal its distribution's")
    mode: Literal["push", "pull"] = Field(
        default="push", description="Webhooks (push) or an ingest loop (pull), as its channels declare"
    )
    exemptions: dict[str, str] = Field(
        default_factory=dict,
        description="Quality rule id -> why it does not apply (e.g. the provider has no edits)",
    )

    @field_validator("plugin_api")
    @classmethod
    def _specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"plugin_api must be a version specifier ('>=1.1,<2'), not {value!r}") from None
        return value

    @field_validator("exemptions")
    @classmethod
    def _reasons(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [rule for rule, reason in value.items() if not reason.strip()]
        if empty:
            raise ValueError(f"an exemption needs a reason: {empty}")
        return value


def api_mismatch(manifest: PluginManifest, provided: str = PLUGIN_API_VERSION) -> str | None:
    """Why a plugin with ``manifest`` cannot run on plugin API ``provided``, or None when it can."""
    if Version(provided) in SpecifierSet(manifest.plugin_api):
        return None
    return (
        f"needs hub plugin API {manifest.plugin_api}, but this hub provides {provided}: "
        "upgrade the hub, or install a version of the plugin made for this API"
    )


def deprecated(plugin: str, what: str, instead: str, *, since: str, removed_in: str) -> str:
    """Warn that ``plugin`` uses ``what``; returns the message (the loader records it per plugin)."""
    message = (
        f"plugin {plugin!r} uses {what}, deprecated since plugin API {since} and removed in "
        f"{removed_in}: {instead}"
    )
    log.warning("%s", message)
    warnings.warn(message, PluginDeprecationWarning, stacklevel=3)
    return message
