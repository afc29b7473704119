"""Email channel for the hub: IMAP in (a pull channel with an ingest loop), SMTP out.

Registered through the entry-point group ``hub`` like any third-party plugin.
"""

from __future__ import annotations

from hub import hookimpl
from hub.channel import ChannelRegistrar

from .channel import EmailChannel
from .settings import Settings

__all__ = ["EmailChannel", "Settings", "__version__", "hub_register_channels"]

__version__ = "0.1.0"


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``email`` channel type."""
    register.add(EmailChannel)
