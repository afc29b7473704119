"""Fixtures for the hub's own tests: an in-process app on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hub.appkeys import STORE
from hub.config import HubConfig, HubSection
from hub.testing.fake_channel import FakeChannel, FakePlugin, sign, webhook_body
from hub.users import create_token, create_user
from hub.web.app import create_app

PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
SECRET = "fake-webhook-secret-3f9a"  # planted: must never appear in any output


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str | None]:
    """A database of this test session's own on the PostgreSQL server (None when unreachable).

    Concurrent test runs on one server (two developers, CI beside a benchmark) never see each
    other's tables.
    """
    import asyncpg

    name = f"hub_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_plain(PG_URL), timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        global _PG_PROBLEM
        _PG_PROBLEM = f"{type(exc).__name__}: {exc}"
        yield None
        return
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with contextlib.suppress(Exception):
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_PG_PROBLEM = ""


async def _reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_plain(url), timeout=3)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_session_url: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    if pg_session_url is None:
        pytest.skip(
            f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM}); start one (apt-get install postgresql) "
            "or set HUB_TEST_POSTGRES_URL"
        )
    await _reset_postgres(pg_session_url)
    return pg_session_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hub.db"


@pytest.fixture
def fake_cls() -> type[FakeChannel]:
    return FakeChannel.isolated()


@pytest.fixture
def hub_config(tmp_path: Path) -> Callable[[str], HubConfig]:
    def make(url: str, **hub: Any) -> HubConfig:
        section = HubSection(
            database_url=url,
            data_dir=str(tmp_path / "data"),
            secret_key="test-secret-key-0123456789",
            public_url="http://hub.test",
            max_body_bytes=256 * 1024,
            check_events=True,
            **hub,
        )
        return HubConfig(hub=section)

    return make


class Hub:
    """An in-process hub with an admin and an agent token, and helpers to drive it."""

    def __init__(self, client: TestClient, fake: type[FakeChannel]) -> None:
        self.client = client
        self.fake = fake
        self.admin: dict[str, str] = {}
        self.agent: dict[str, str] = {}
        self.agent_id = ""

    @property
    def store(self) -> Any:
        return self.client.app[STORE]

    async def setup_users(self) -> None:
        db = self.store.db
        admin = await create_user(db, "admin@example.com", "administrator", "correct horse battery")
        agent = await create_user(db, "agent@example.com", "agent", "agent password 1")
        self.admin = {"Authorization": f"Bearer {await create_token(db, admin['id'])}"}
        self.agent = {"Authorization": f"Bearer {await create_token(db, agent['id'])}"}
        self.agent_id = agent["id"]

    async def create_channel(self, channel_id: str = "fk", **settings: Any) -> dict[str, Any]:
        body = {
            "id": channel_id,
            "type": "fake",
            "name": "Fake",
            "settings": {"secret": SECRET, "verify_token": "vt-123", **settings},
        }
        resp = await self.client.post("/api/v1/admin/channels", json=body, headers=self.admin)
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        await self.serve(channel_id, self.agent_id)
        return data

    async def define_label(self, name: str, **fields: Any) -> dict[str, Any]:
        """An admin defines a label (labels are applied by name once defined)."""
        resp = await self.client.post(
            "/api/v1/admin/labels", json={"name": name, **fields}, headers=self.admin
        )
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def define_attribute(
        self, key: str, type_: str = "text", applies_to: str = "conversation", **fields: Any
    ) -> dict[str, Any]:
        """An admin defines a custom attribute (values are accepted only for defined keys)."""
        body = {"applies_to": applies_to, "key": key, "name": key.title(), "type": type_, **fields}
        resp = await self.client.post("/api/v1/admin/custom-attributes", json=body, headers=self.admin)
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def serve(self, channel_id: str, *user_ids: str) -> None:
        """Make these users serve the channel (the agent sees only the channels it serves)."""
        resp = await self.client.put(
            f"/api/v1/admin/channels/{channel_id}/members",
            json={"user_ids": list(user_ids)},
            headers=self.admin,
        )
        assert resp.status == 200, await resp.text()

    async def webhook(
        self, *events: dict[str, Any], channel_id: str = "fk", headers: dict[str, str] | None = None
    ):
        body = webhook_body(*events)
        return await self.client.post(
            f"/webhooks/{channel_id}", data=body, headers={**sign(SECRET, body), **(headers or {})}
        )

    async def events(self, after: int = 0, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/v1/events?after={after}&limit=500", headers=headers or self.agent)
        assert resp.status == 200, await resp.text()
        data: list[dict[str, Any]] = (await resp.json())["events"]
        return data

    async def conversations(self) -> list[dict[str, Any]]:
        resp = await self.client.get("/api/v1/conversations", headers=self.agent)
        assert resp.status == 200
        data: list[dict[str, Any]] = (await resp.json())["conversations"]
        return data

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=self.agent)
        assert resp.status == 200
        data: list[dict[str, Any]] = (await resp.json())["messages"]
        return data


def fake_message(mid: str, who: str, text: str = "hi") -> dict[str, Any]:
    """A customer's text message as the fake channel's webhook carries it."""
    return {
        "type": "message",
        "id": mid,
        "from": who,
        "name": who.title(),
        "text": text,
        "ts": int(time.time()),
    }


@pytest.fixture
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for users made in a test (the real ones cost ~0.5 s a hash)."""
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr("hub.users.hash_password", cheap.hash)
    monkeypatch.setattr("hub.services.organisation.hash_password", cheap.hash)


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last result after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}")


@pytest.fixture
async def make_hub(
    aiohttp_client: Any, hub_config: Callable[..., HubConfig], fake_cls: type[FakeChannel]
) -> AsyncIterator[Callable[..., Awaitable[Hub]]]:
    async def make(url: str, **hub: Any) -> Hub:
        app = create_app(hub_config(url, **hub), extra_plugins=[("fake", FakePlugin(fake_cls))])
        client = await aiohttp_client(app)
        h = Hub(client, fake_cls)
        await h.setup_users()
        return h

    yield make


@pytest.fixture
async def hub(make_hub: Callable[..., Awaitable[Hub]], database_url: str) -> Hub:
    """A hub on each database backend, with a fake channel ``fk``."""
    h = await make_hub(database_url)
    await h.create_channel()
    return h


@pytest.fixture
async def lite_hub(make_hub: Callable[..., Awaitable[Hub]], sqlite_url: str) -> Hub:
    """The same on SQLite only, for API behaviour that does not depend on the backend."""
    h = await make_hub(sqlite_url)
    await h.create_channel()
    return h


async def drop_every_connection(url: str) -> int:
    """What a server restart does to the hub's connections (pool, LISTEN): how many it ended."""
    import asyncpg

    admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        ended = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return len(ended)
