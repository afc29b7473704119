"""pytest plugin registered through the ``pytest11`` entry point: fixtures for channel plugin tests.

It loads in every pytest run of a project that installs the hub, so it stays cheap to import and
defines fixtures only (nothing autouse):

* ``fake_channel_plugin``: a ``FakePlugin`` whose ``channel_cls`` is a ``FakeChannel`` subclass of
  its own (``sent`` list and failure script not shared with any other test);
* ``load_hub_plugins(*extra, strict=False, disabled=None)``: ``hub.plugins.load_plugins`` with extra
  plugin objects (or ``(name, object)`` pairs) registered for this test only;
* ``plugin_manager`` / ``channel_registry``: the installed plugins plus ``fake_channel_plugin``;
* ``channel_context``: a ``ChannelContext`` with a real ``httpx.AsyncClient`` (closed after the
  test), a logger, ``public_url`` and a ``health`` list recording every ``set_health`` call;
* ``no_network``: any socket connection or DNS lookup during the test fails it;
* ``hub_client`` / ``make_hub_client(*plugins)``: a whole hub in-process (``HubTestApp``) on a
  temporary SQLite database, with an administrator token and helpers to create channels, post
  webhooks and wait for events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import pluggy
import pytest

from hub.channel import Channel, ChannelRegistrar, HealthState
from hub.hookspecs import hookimpl
from hub.plugins import ChannelRegistry, PluginReport, load_plugins
from hub.testing.conformance import forbid_network
from hub.testing.fake_channel import FakeChannel, FakePlugin

try:  # pytest-asyncio comes with hub[test]; without it async fixtures need asyncio_mode=auto.
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover
    _async_fixture = pytest.fixture

__all__ = ["HubPlugins", "HubTestApp", "RecordingContext", "start_hub"]


class HubPlugins(NamedTuple):
    """What ``load_hub_plugins`` returns; unpacks like ``load_plugins``'s tuple."""

    pm: pluggy.PluginManager
    registry: ChannelRegistry
    report: PluginReport


@dataclass
class RecordingContext:
    """A ``hub.channel.ChannelContext`` for tests: ``health`` records every reported state."""

    http: httpx.AsyncClient
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.channel.test"))
    public_url: str = "http://hub.test"
    health: list[tuple[HealthState, str | None]] = field(default_factory=list)

    def set_health(self, state: HealthState, error: str | None = None) -> None:
        self.health.append((HealthState(state), error))

    @property
    def last_health(self) -> HealthState | None:
        return self.health[-1][0] if self.health else None


def _plugin_name(obj: object) -> str:
    name = getattr(obj, "plugin_name", None) or getattr(obj, "__name__", None)
    if isinstance(obj, FakePlugin):
        name = obj.channel_cls.type_name
    return str(name or type(obj).__name__.lower())


@pytest.fixture
def fake_channel_plugin() -> FakePlugin:
    """A plugin registering a FakeChannel class of this test's own (``.channel_cls``)."""
    return FakePlugin(FakeChannel.isolated())


@pytest.fixture
def load_hub_plugins() -> Callable[..., HubPlugins]:
    """Load the installed plugins plus ``extra`` ones, for this test only.

    Each extra is a plugin object (named by its ``plugin_name``, ``__name__`` or type) or a
    ``(name, object)`` pair. ``strict`` defaults to False and ``disabled`` to the
    ``HUB_DISABLE_PLUGINS`` list, as in ``hub.plugins.load_plugins``.
    """

    def load(
        *extra: object | tuple[str, object],
        strict: bool | None = False,
        disabled: list[str] | None = None,
    ) -> HubPlugins:
        pairs: list[tuple[str, object]] = []
        for item in extra:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                pairs.append((item[0], item[1]))
            else:
                pairs.append((_plugin_name(item), item))
        return HubPlugins(*load_plugins(strict=strict, disabled=disabled, extra=pairs))

    return load


@pytest.fixture
def _hub_plugins(load_hub_plugins: Callable[..., HubPlugins], fake_channel_plugin: FakePlugin) -> HubPlugins:
    return load_hub_plugins(("fake", fake_channel_plugin))


@pytest.fixture
def plugin_manager(_hub_plugins: HubPlugins) -> pluggy.PluginManager:
    """The plugin manager of the installed plugins plus ``fake_channel_plugin``."""
    return _hub_plugins.pm


@pytest.fixture
def channel_registry(_hub_plugins: HubPlugins) -> ChannelRegistry:
    """The channel registry of the installed plugins plus ``fake_channel_plugin`` (type "fake")."""
    return _hub_plugins.registry


@_async_fixture
async def channel_context() -> AsyncIterator[RecordingContext]:
    """A ChannelContext with a real HTTP client (mock it with respx) that is closed afterwards."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        yield RecordingContext(http=client)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any socket connection or DNS lookup."""
    forbid_network(monkeypatch)


# ---- the app client ------------------------------------------------------------------------------


@dataclass
class HubTestApp:
    """An in-process hub (aiohttp test client) on a temporary SQLite database, with an admin token.

    The hub runs its real pipelines: webhooks are stored, processed and published as events, sends go
    through the outbox. Helpers cover what a channel test usually needs.
    """

    client: Any
    admin_headers: dict[str, str]

    async def create_channel(
        self, type_name: str, settings: dict[str, Any], channel_id: str = "test", name: str = "Test"
    ) -> dict[str, Any]:
        """Enable a channel through the admin API; returns the admin view (setup, masked settings)."""
        body = {"id": channel_id, "type": type_name, "name": name, "settings": settings}
        resp = await self.client.post("/api/v1/admin/channels", json=body, headers=self.admin_headers)
        data: dict[str, Any] = await resp.json()
        if resp.status != 201:
            raise AssertionError(f"creating the channel failed ({resp.status}): {data}")
        return data

    async def post_webhook(self, channel_id: str, body: bytes, headers: dict[str, str]) -> Any:
        return await self.client.post(f"/webhooks/{channel_id}", data=body, headers=headers)

    async def put_pulled(
        self,
        channel_id: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> bool:
        """Hand one fetched item to a pull channel's inbox, as its ``ingest`` loop does; False when
        an item with this key was already stored (a duplicate)."""
        from hub.appkeys import RAW_INBOX
        from hub.inbound import ChannelInbox

        return await ChannelInbox(self.client.app[RAW_INBOX], channel_id).put(body, headers=headers, key=key)

    async def stop_ingest(self) -> None:
        """Stop every pull channel's ``ingest`` loop and start no more (call it before
        ``create_channel``), for a test that hands items to the inbox itself (``put_pulled``)."""
        from hub.appkeys import INGEST

        await self.client.app[INGEST].stop()

    async def replay(self) -> int:
        """Re-run every stored delivery through the parser and the pipeline, as ``hub replay --all``
        does; returns how many. A channel whose parse is pure and whose ids are stable changes
        nothing this way."""
        import sqlalchemy as sa

        from hub import schema
        from hub.appkeys import CHANNELS, STORE
        from hub.inbound import InboundProcessor

        store = self.client.app[STORE]
        processor = InboundProcessor(store, self.client.app[CHANNELS])
        R = schema.raw_events
        query = sa.select(R.c.id, R.c.channel_id, R.c.body, R.c.headers, R.c.received_at, R.c.attempts)
        async with store.db.read() as conn:
            rows = (await conn.execute(query.order_by(R.c.id))).mappings().all()
        for row in rows:
            await processor.process_one({**dict(row), "attempts": 0})
        return len(rows)

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/v1/events?after={after}&limit=500", headers=self.admin_headers)
        data: list[dict[str, Any]] = (await resp.json())["events"]
        return data

    async def wait_for_event(
        self, type_: str, predicate: Callable[[dict[str, Any]], bool] | None = None, within: float = 5.0
    ) -> dict[str, Any]:
        """The first event of ``type_`` (matching ``predicate``), waiting up to ``within`` seconds."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for ev in await self.events():
                if ev["type"] == type_ and (predicate is None or predicate(ev)):
                    return ev
            if loop.time() > deadline:
                raise AssertionError(f"no {type_} event within {within} s")
            await asyncio.sleep(0.02)


@pytest.fixture
def make_hub_client(
    aiohttp_client: Any, tmp_path: Any, fake_channel_plugin: FakePlugin
) -> Callable[..., Any]:
    """``await make_hub_client(*plugins)``: a ``HubTestApp`` with the installed plugins, the fake
    channel and ``plugins`` (objects or ``(name, object)`` pairs) registered for this test.

    Needs pytest-aiohttp (installed with ``hub[test]``).
    """

    async def make(*plugins: Any) -> HubTestApp:
        extra: list[tuple[str, object]] = [("fake", fake_channel_plugin)]
        extra += [p if isinstance(p, tuple) else (_plugin_name(p), p) for p in plugins]
        return await _build_hub(aiohttp_client, tmp_path, extra)

    return make


async def _build_hub(aiohttp_client: Any, tmp_path: Any, extra: list[tuple[str, object]]) -> HubTestApp:
    from hub.appkeys import STORE
    from hub.config import HubConfig, HubSection
    from hub.users import create_token, create_user
    from hub.web.app import create_app

    config = HubConfig(
        hub=HubSection(
            database_url=f"sqlite:///{tmp_path}/hub.db",
            data_dir=str(tmp_path / "data"),
            secret_key="hub-testing-secret-key",
            public_url="http://hub.test",
            check_events=True,
        )
    )
    client = await aiohttp_client(create_app(config, extra_plugins=extra))
    db = client.app[STORE].db
    admin = await create_user(db, "admin@example.test", "administrator", None)
    token = await create_token(db, admin["id"], "tests")
    return HubTestApp(client, {"Authorization": f"Bearer {token}"})


class _OneChannel:
    """A plugin registering one channel class (the conformance suite's hub)."""

    def __init__(self, channel_cls: type[Channel]) -> None:
        self.channel_cls = channel_cls

    @hookimpl
    def hub_register_channels(self, register: ChannelRegistrar) -> None:
        register.add(self.channel_cls)


async def start_hub(
    aiohttp_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, channel_cls: type[Channel]
) -> HubTestApp:
    """An in-process hub whose only plugin registers ``channel_cls``.

    Installed plugins are disabled for it, so the class under test (a copy, a fix not yet
    installed) never clashes with an installed one of the same type name.
    """
    import importlib.metadata

    installed = sorted({ep.name for ep in importlib.metadata.entry_points(group="hub")})
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", ",".join(installed))
    return await _build_hub(aiohttp_client, tmp_path, [("conformance", _OneChannel(channel_cls))])


@_async_fixture
async def hub_client(make_hub_client: Callable[..., Any]) -> HubTestApp:
    """A ``HubTestApp`` with the installed plugins and the fake channel."""
    app: HubTestApp = await make_hub_client()
    return app
