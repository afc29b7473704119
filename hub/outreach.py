"""An agent starting a conversation: the contact named by an address on a channel, and a new
conversation with it, which the agent then sends the first message into as into any other.

The channel turns the address into its contact (``Channel.contact_for``: an email address for
email); channels that cannot start conversations refuse with a clear error. On a threaded
channel (email) each start is a new thread, even with a contact already known; elsewhere the
contact's existing conversation on the channel is returned.
"""

from __future__ import annotations

from typing import Any

from hub.access import Actor
from hub.channels import ChannelService
from hub.db import new_id
from hub.events import Store
from hub.records import ensure_contact, ensure_conversation, fetch_conversation
from hub.services.errors import Conflict, Invalid, NotFound

__all__ = ["start_conversation"]


class NotSupported(Conflict):
    code = "not_supported"


class ChannelInactive(Conflict):
    code = "channel_inactive"


async def start_conversation(
    store: Store,
    channels: ChannelService,
    actor: Actor,
    channel_id: str,
    address: str,
    name: str | None = None,
    subject: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """(the conversation in the app's shape, whether it was created).

    The actor needs ``messages.send`` and must serve the channel; a channel outside its scope
    answers as if absent.
    """
    actor.require("messages.send")
    if channel_id not in channels.rows or not actor.sees_channel(channel_id):
        raise NotFound(f"channel {channel_id!r} does not exist")
    channel = channels.get(channel_id)
    if channel is None:
        raise ChannelInactive("the channel is disabled or its plugin is not installed")
    if not channel.supports("contact_for"):
        raise NotSupported(f"channels of type {channel.type_name!r} cannot start conversations")
    try:
        ref = channel.contact_for(address, name)
    except ValueError as exc:
        raise Invalid("to", str(exc)) from None
    if subject is not None and subject.strip() and not channel.capabilities.subject:
        raise Invalid("subject", "this channel has no subject line")
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
