"""The channel hub: one normalized inbox for WhatsApp, Messenger, email and any channel plugin."""

from hub.hookspecs import hookimpl
from hub.manifest import PLUGIN_API_VERSION, PluginManifest

__all__ = ["PLUGIN_API_VERSION", "PluginManifest", "__version__", "hookimpl"]

__version__ = "0.1.0"
