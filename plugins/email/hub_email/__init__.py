"""Email channel for the hub: IMAP in (a pull channel with an ingest loop), SMTP out.

Registered through the entry-point group ``hub`` like any third-party plugin.
"""

from __future__ import annotations

from hub import PluginManifest, hookimpl
from hub.channel import ChannelRegistrar

from .channel import EmailChannel
from .settings import Settings

__all__ = ["EmailChannel", "Settings", "__version__", "hub_register_channels", "manifest"]

__version__ = "0.1.0"

# What cannot apply to mail, each with the reason ``hub plugin check`` prints beside it.
manifest = PluginManifest(
    plugin_api=">=1.1,<2",
    version=__version__,
    mode="pull",
    exemptions={
        "bronze.signature": "a pull channel: the hub fetches mail over IMAP with the mailbox's own "
        "login, and no webhook arrives to be signed",
        "test_every_element_of_a_batch": "one fetched mail is one delivery: IMAP hands mails over one "
        "by one, never several in one body",
        "test_unknown_type_is_a_placeholder": "a mail has no element of an unknown type: whatever its "
        "MIME parts, it is shown as a mail (parts it cannot render as attachments)",
        "test_garbage_body_is_bad_payload": "RFC 5322 reads any bytes as a mail (headers, then a body), "
        "and they come from the channel's own mailbox, not from a stranger's POST",
        "gold.edits": "a mail once sent cannot be edited or withdrawn: a correction is a new mail",
    },
)


@hookimpl
def hub_register_channels(register: ChannelRegistrar) -> None:
    """Register the ``email`` channel type."""
    register.add(EmailChannel)
