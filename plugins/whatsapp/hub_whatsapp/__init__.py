"""WhatsApp Cloud API channel for the hub, registered through the entry-point group ``hub``."""

from __future__ import annotations

from collections.abc import Callable

from hub import hookimpl
from hub.channel import Channel

from .channel import WhatsAppChannel
from .settings import Settings

__all__ = ["Settings", "WhatsAppChannel", "__version__", "hub_register_channels"]

__version__ = "0.1.0"


@hookimpl
def hub_register_channels(register: Callable[[type[Channel]], None]) -> None:
    """Register the ``whatsapp`` channel type."""
    register(WhatsAppChannel)
