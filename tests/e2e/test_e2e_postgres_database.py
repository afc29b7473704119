"""Each test session's e2e hubs get a PostgreSQL database of their own, dropped at the end, so two
test runs on one server (two developers, CI beside a benchmark) never wipe each other's tables."""

from __future__ import annotations

import asyncpg
import pytest
from e2e_support import PG_HELP, E2EDatabase, postgres_problem, postgres_url

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def _exists(server: str, url: str) -> bool:
    conn = await asyncpg.connect(server, timeout=5)
    try:
        return bool(
            await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", url.rsplit("/", 1)[1])
        )
    finally:
        await conn.close()


async def test_two_sessions_never_share_a_database_and_each_is_dropped() -> None:
    server = postgres_url()
    if (problem := await postgres_problem(server)) is not None:
        pytest.skip(PG_HELP.format(url=server, error=problem))
    first, second = E2EDatabase(server), E2EDatabase(server)  # two test runs on one server
    urls = [await first.url(), await second.url()]
    try:
        if server in urls:
            pytest.skip("the PostgreSQL role may not create databases: the e2e hubs use the server's")
        assert urls[0] != urls[1]
        assert await first.url() == urls[0], "one database for the whole session"
        assert await _exists(server, urls[0]) and await _exists(server, urls[1])
    finally:
        await first.drop()
    assert not await _exists(server, urls[0]), "dropped at the end of the session"
    assert await _exists(server, urls[1]), "the other run's database is left alone"
    await second.drop()
    assert not await _exists(server, urls[1])
