"""The channel hub: one normalized inbox for WhatsApp, Messenger, email and any channel plugin."""

from hub.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]

__version__ = "0.1.0"
