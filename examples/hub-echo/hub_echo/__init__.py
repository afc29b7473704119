"""Echo: a minimal third-party channel plugin for the hub, kept as a worked example.

The hub finds this module through the ``echo`` entry point of group ``hub`` (see pyproject.toml)
and calls its hook implementations.
"""

from __future__ import annotations

from hub import PluginManifest, hookimpl
from hub.channel import ChannelRegistrar
from hub_echo.channel import EchoChannel, EchoSettings

__all__ = ["EchoChannel", "EchoSettings", "__version__", "hub_register_channels", "manifest"]

__version__ = "0.1.0"

# What the hub checks at load (plugin API range) and `hub plugin check` reads (version, mode).
manifest = PluginManifest(plugin_api=">=1.1,<2", version=__version__, mode="push")


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``echo`` channel type."""
    register.add(EchoChannel)
