"""An agent starting a conversation: the contact named by an address on a channel, and a new
conversation with it, which the agent then sends the first message into as into any other.

The channel turns the address into its contact (``Channel.contact_for``: an email address for
email); channels that cannot start conversations refuse with a clear error. On a threaded
channel (email) each start is a new thread, even with a contact already known; elsewhere the
contact's existing conversation on the channel is returned.
"""

from __future__ import annotations

from typing import Any

from hub.channels import ChannelService
from hub.db import new_id
from hub.events import Store
from hub.outbound import SendRefused
from hub.records import ensure_contact, ensure_conversation, fetch_conversation

__all__ = ["start_conversation"]


async def start_conversation(
    store: Store,
    channels: ChannelService,
    channel_id: str,
    address: str,
    name: str | None = None,
    subject: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """(the conversation in the app's shape, whether it was created)."""
    if channel_id not in channels.rows:
        raise SendRefused("not_found", "not_found", f"channel {channel_id!r} does not exist")
    channel = channels.get(channel_id)
    if channel is None:
        raise SendRefused(
            "conflict", "channel_inactive", "the channel is disabled or its plugin is not installed"
        )
    if not channel.supports("contact_for"):
        raise SendRefused(
            "conflict", "not_supported", f"channels of type {channel.type_name!r} cannot start conversations"
        )
    try:
        ref = channel.contact_for(address, name)
    except ValueError as exc:
        raise SendRefused(
            "invalid",
            "validation_failed",
            "the address is not one this channel can reach",
            [{"field": "to", "message": str(exc)}],
        ) from None
    if subject is not None and subject.strip() and not channel.capabilities.subject:
        raise SendRefused(
            "invalid",
            "validation_failed",
            "this channel has no subject line",
            [{"field": "subject", "message": "this channel has no subject line"}],
        )
    async with store.tx() as tx:
        contact_id = await ensure_contact(tx, channel_id, ref)
        thread_key = new_id("new_") if channel.threaded else ""
        conv, created = await ensure_conversation(
            tx, channel_id, contact_id, thread_key, (subject or "").strip() or None
        )
        view = await fetch_conversation(tx.conn, conv["id"])
        assert view is not None
        if created:
            await tx.emit("conversation.created", view, channel_id=channel_id, conversation_id=conv["id"])
    return view, created
