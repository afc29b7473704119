"""WhatsApp Cloud API channel for the hub, registered through the entry-point group ``hub``."""

from __future__ import annotations

from hub import PluginManifest, hookimpl
from hub.channel import ChannelRegistrar

from .channel import WhatsAppChannel
from .settings import Settings

__all__ = ["Settings", "WhatsAppChannel", "__version__", "hub_register_channels", "manifest"]

__version__ = "0.1.0"

manifest = PluginManifest(plugin_api=">=1.1,<2", version=__version__, mode="push")


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``whatsapp`` channel type."""
    register.add(WhatsAppChannel)
