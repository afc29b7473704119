"""Fixtures of the Messenger/Instagram plugin tests: channels without network, or on FakeGraph."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fb_support import PAGE_TOKEN, instagram_settings, messenger_settings
from hub_facebook import InstagramChannel, MessengerChannel, MessengerSettings

from hub.testing.fake_graph import FakeGraph
from hub.testing.pytest_plugin import RecordingContext

LOG = logging.getLogger("hub.channel.facebook")


@pytest.fixture
async def make_fb_channel() -> AsyncIterator[Callable[..., Awaitable[MessengerChannel]]]:
    """``await make_fb_channel("messenger" | "instagram", **settings)``; clients closed after."""
    clients: list[httpx.AsyncClient] = []

    async def factory(type_name: str = "messenger", **overrides: Any) -> MessengerChannel:
        client = httpx.AsyncClient()
        clients.append(client)
        if type_name == "instagram":
            cls: type[MessengerChannel] = InstagramChannel
            values = instagram_settings(**overrides)
        else:
            cls, values = MessengerChannel, messenger_settings(**overrides)
        settings: MessengerSettings = cls.Settings.model_validate(values)  # type: ignore[assignment]
        return cls("fb-1", settings, RecordingContext(http=client, log=LOG))

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def fb_graph() -> AsyncIterator[FakeGraph]:
    """A running fake Graph API that checks the Page token."""
    async with FakeGraph(access_token=PAGE_TOKEN) as fake:
        yield fake
