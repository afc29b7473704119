"""Facebook Messenger and Instagram Direct channels for the hub, from one distribution.

Registered through the entry-point group ``hub`` like any third-party plugin: two channel types,
``messenger`` (a Facebook Page) and ``instagram`` (an Instagram professional account), both on the
Messenger Platform and sharing Meta's webhook and Graph code with WhatsApp through ``hub_meta``.
"""

from __future__ import annotations

from hub import PluginManifest, hookimpl
from hub.channel import ChannelRegistrar

from .channel import InstagramChannel, MessengerChannel
from .settings import InstagramSettings, MessengerSettings

__all__ = [
    "InstagramChannel",
    "InstagramSettings",
    "MessengerChannel",
    "MessengerSettings",
    "__version__",
    "hub_register_channels",
    "manifest",
]

__version__ = "0.1.0"

manifest = PluginManifest(plugin_api=">=1.1,<2", version=__version__, mode="push")


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``messenger`` and ``instagram`` channel types."""
    register.add(MessengerChannel)
    register.add(InstagramChannel)
