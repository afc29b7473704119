"""Registration, settings and capability manifest."""

from __future__ import annotations

import importlib.metadata

import pytest
from hub_whatsapp import Settings, WhatsAppChannel, hub_register_channels
from hub_whatsapp.settings import DEFAULT_API_BASE_URL
from pydantic import SecretStr, ValidationError
from wa_support import ACCESS_TOKEN, APP_SECRET, make_settings

from hub.channel import Channel, ChannelRegistrar
from hub.models import AttachmentKind, MessageKind


def test_hook_registers_the_channel() -> None:
    registered: list[type[Channel]] = []
    hub_register_channels(ChannelRegistrar(registered.append))
    assert registered == [WhatsAppChannel]


def test_entry_point() -> None:
    eps = importlib.metadata.entry_points(group="hub")
    assert any(ep.name == "whatsapp" and ep.value == "hub_whatsapp" for ep in eps)


def test_class_attributes() -> None:
    assert WhatsAppChannel.type_name == "whatsapp"
    assert WhatsAppChannel.display_name
    assert WhatsAppChannel.mode == "push"
    assert WhatsAppChannel.webhook_fields == ("verify_token",)
    assert WhatsAppChannel.Settings is Settings
    for method in ("fetch_media", "health_check", "mark_read", "rate_limits"):
        assert WhatsAppChannel.supports(method)


def test_capabilities() -> None:
    caps = WhatsAppChannel.capabilities
    assert caps.max_text_length == 4096
    assert caps.media == frozenset(AttachmentKind)
    assert caps.max_attachment_bytes[AttachmentKind.IMAGE] == 5 * 1024 * 1024
    assert caps.max_attachment_bytes[AttachmentKind.FILE] == 100 * 1024 * 1024
    assert caps.max_attachment_bytes[AttachmentKind.STICKER] == 500 * 1024
    assert caps.captions and caps.reactions and caps.templates and caps.interactive
    assert caps.replies and caps.read_receipts and caps.location
    assert caps.reply_window.hours == 24 and caps.reply_window.outside == "template"
    assert {MessageKind.TEXT, MessageKind.TEMPLATE, MessageKind.INTERACTIVE} <= (caps.sendable_kinds())


def test_settings_defaults_and_secrets() -> None:
    s = make_settings(api_base_url=DEFAULT_API_BASE_URL)
    assert s.api_base_url == "https://graph.facebook.com/v26.0"
    assert s.messages_per_second == 80
    assert isinstance(s.access_token, SecretStr)
    assert set(Settings.secret_fields()) == {"access_token", "app_secret"}
    shown = repr(s) + str(s.model_dump()) + s.model_dump_json()
    assert ACCESS_TOKEN not in shown and APP_SECRET not in shown


@pytest.mark.parametrize(
    "bad",
    [
        {"messages_per_second": 0},
        {"messages_per_second": 1001},
        {"api_base_url": "graph.facebook.com"},
        {"phone_number_id": ""},
        {"unknown_field": 1},
    ],
)
def test_settings_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_settings(**bad)


def test_settings_base_url_trailing_slash() -> None:
    assert make_settings(api_base_url="http://x/v26.0/").api_base_url == "http://x/v26.0"


def test_stored_settings_drop_unknown_fields() -> None:
    data = make_settings().model_dump()
    data["access_token"] = ACCESS_TOKEN
    data["app_secret"] = APP_SECRET
    data["retired_option"] = True
    loaded = Settings.load_stored(data)
    assert loaded.access_token.get_secret_value() == ACCESS_TOKEN
