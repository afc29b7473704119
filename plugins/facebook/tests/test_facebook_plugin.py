"""Registration through the ``hub`` entry point, settings and the two capability manifests."""

from __future__ import annotations

import importlib.metadata

import pytest
from fb_support import instagram_settings, messenger_settings
from hub_facebook import (
    InstagramChannel,
    InstagramSettings,
    MessengerChannel,
    MessengerSettings,
    hub_register_channels,
)
from pydantic import ValidationError

from hub.channel import Channel, ChannelRegistrar
from hub.models import AttachmentKind, MessageKind
from hub.plugins import ChannelRegistry


def test_hook_registers_both_channel_types() -> None:
    registered: list[type[Channel]] = []
    hub_register_channels(ChannelRegistrar(registered.append))
    assert registered == [MessengerChannel, InstagramChannel]
    assert [c.type_name for c in registered] == ["messenger", "instagram"]


def test_entry_point_and_no_entry_point_for_the_shared_library() -> None:
    eps = importlib.metadata.entry_points(group="hub")
    assert any(ep.name == "facebook" and ep.value == "hub_facebook" for ep in eps)
    assert not any(ep.value.startswith("hub_meta") for ep in eps)


def test_loaded_by_the_hub_like_any_plugin(channel_registry: ChannelRegistry) -> None:
    assert channel_registry.get("messenger") is MessengerChannel
    assert channel_registry.get("instagram") is InstagramChannel


def test_settings() -> None:
    s = MessengerSettings.model_validate(messenger_settings())
    assert s.account_id == s.page_id
    assert set(MessengerSettings.secret_fields()) == {"page_access_token", "app_secret"}
    ig = InstagramSettings.model_validate(instagram_settings())
    assert ig.account_id == ig.instagram_account_id != ig.page_id
    with pytest.raises(ValidationError):
        InstagramSettings.model_validate(messenger_settings())  # the Instagram account id is needed
    with pytest.raises(ValidationError):
        MessengerSettings.model_validate(messenger_settings(api_base_url="graph.facebook.com"))


def test_capabilities() -> None:
    fb, ig = MessengerChannel.capabilities, InstagramChannel.capabilities
    assert fb.max_text_length == 2000 and ig.max_text_length == 1000
    assert AttachmentKind.FILE in fb.media and AttachmentKind.FILE not in ig.media
    assert fb.reply_window.hours == 24 and fb.reply_window.outside == "tag"
    for caps in (fb, ig):
        assert {MessageKind.TEXT, MessageKind.INTERACTIVE, MessageKind.TEMPLATE} <= caps.sendable_kinds()
        assert caps.replies and caps.read_receipts and caps.max_attachments == 1
    for method in ("fetch_media", "health_check", "mark_read", "rate_limits", "reply_window"):
        assert MessengerChannel.supports(method) and InstagramChannel.supports(method)
