"""WhatsApp Cloud API channel."""

__version__ = "0.1.0"
