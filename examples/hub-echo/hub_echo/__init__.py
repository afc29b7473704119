"""Echo: a minimal third-party channel plugin for the hub, kept as a worked example.

The hub finds this module through the ``echo`` entry point of group ``hub`` (see pyproject.toml)
and calls its hook implementations.
"""

from __future__ import annotations

from hub import hookimpl
from hub.channel import ChannelRegistrar
from hub_echo.channel import EchoChannel, EchoSettings

__all__ = ["EchoChannel", "EchoSettings", "__version__", "hub_register_channels"]

__version__ = "0.1.0"


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``echo`` channel type."""
    register.add(EchoChannel)
