"""Fixtures of the end-to-end suite: real ``hub serve`` processes, an HTTP session, a FakeGraph.

Test modules here run on one event loop per module (``pytest.mark.asyncio(loop_scope="module")``).
One hub process (``shared_hub``) and one FakeGraph serve every test that does not stop the hub;
tests that kill a hub get a fresh one from ``hub_factory``. When a test fails, the tail of every
live hub's log is attached to the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    LIVE_HUBS,
    MAX_BODY_BYTES,
    PG_HELP,
    Api,
    HubFactory,
    HubProcess,
    ThreadedFakeGraph,
    drop_e2e_database,
    e2e_database,
    postgres_problem,
    postgres_url,
    reset_postgres,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for hub in LIVE_HUBS:
            state = "running" if hub.running else "stopped"
            report.sections.append((f"hub log ({state}) {hub.log_path}", hub.log_tail(150)))
    return report


async def launch_hub(
    directory: Path, backend: str = "sqlite", *, workers: bool = True, **kwargs: Any
) -> HubProcess:
    """A bootstrapped hub (admin user + token through the CLI) on a fresh database."""
    database_url = None
    if backend == "postgresql":
        server_url = postgres_url()
        problem = await postgres_problem(server_url)
        if problem is not None:
            pytest.skip(PG_HELP.format(url=server_url, error=problem))
        database_url = await e2e_database(server_url)
        await reset_postgres(database_url)
    elif backend != "sqlite":
        raise ValueError(f"unknown backend {backend!r}")
    hub = HubProcess(directory, database_url=database_url, **kwargs)
    try:
        await hub.bootstrap(workers=workers)
    except BaseException:
        await hub.close()
        raise
    return hub


@pytest.fixture(scope="session", autouse=True)
def e2e_database_dropped() -> Iterator[None]:
    """This run's PostgreSQL database (``e2e_database``) goes once the run ends; set up before,
    so torn down after, every hub of the run."""
    yield
    asyncio.run(drop_e2e_database())


@pytest.fixture(scope="session")
def graph() -> Iterator[ThreadedFakeGraph]:
    """One FakeGraph for the run, served from its own thread (tests script it per phone number id)."""
    fake = ThreadedFakeGraph().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HubProcess]:
    """One SQLite hub shared by every test that does not stop it (they use distinct channels,
    phone number ids and contacts, so they do not see each other's messages)."""
    hub = await launch_hub(tmp_path_factory.mktemp("hub"), max_body_bytes=MAX_BODY_BYTES)
    try:
        yield hub
    finally:
        await hub.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(http: aiohttp.ClientSession, shared_hub: HubProcess) -> Api:
    """The shared hub's API with the admin's CLI-made token."""
    return Api(http, shared_hub.base_url, shared_hub.token)


@pytest_asyncio.fixture(loop_scope="module")
async def hub_factory(tmp_path: Path) -> AsyncIterator[HubFactory]:
    """``await hub_factory(backend="sqlite", workers=True, ...)``: a fresh hub for this test only."""
    hubs: list[HubProcess] = []

    async def make(backend: str = "sqlite", *, workers: bool = True, **kwargs: Any) -> HubProcess:
        hub = await launch_hub(tmp_path / f"hub{len(hubs)}", backend, workers=workers, **kwargs)
        hubs.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in hubs:
            await hub.close()
