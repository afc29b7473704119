"""Fixtures of the WhatsApp plugin tests: channels on respx or on a running FakeGraph."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from hub_whatsapp import WhatsAppChannel
from wa_support import ACCESS_TOKEN, make_settings

from hub.testing.fake_graph import FakeGraph
from hub.testing.pytest_plugin import RecordingContext

ChannelFactory = Callable[..., Awaitable[WhatsAppChannel]]
LOG = logging.getLogger("hub.channel.whatsapp")


@pytest.fixture
async def make_channel() -> AsyncIterator[ChannelFactory]:
    """Build channels whose HTTP clients are closed after the test."""
    clients: list[httpx.AsyncClient] = []

    async def factory(**overrides: Any) -> WhatsAppChannel:
        client = httpx.AsyncClient()
        clients.append(client)
        return WhatsAppChannel(
            "wa-1",
            make_settings(**overrides),
            RecordingContext(http=client, log=LOG),
        )

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def channel(make_channel: ChannelFactory) -> WhatsAppChannel:
    """A channel pointed at ``BASE_URL`` (mock it with respx)."""
    return await make_channel()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    """A running fake Graph API that checks the bearer token."""
    async with FakeGraph(access_token=ACCESS_TOKEN) as fake:
        yield fake


@pytest.fixture
async def fg_channel(make_channel: ChannelFactory, graph: FakeGraph) -> WhatsAppChannel:
    """A channel pointed at the fake Graph API."""
    return await make_channel(api_base_url=graph.base_url, request_timeout=2.0)
