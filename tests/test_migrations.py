"""The migrations build exactly the schema ``hub.schema`` declares, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.db import Database
from hub.migrate import upgrade
from hub.schema import metadata


async def test_migrations_match_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with db.read() as conn:
        differences = await conn.run_sync(diff)
    await db.dispose()
    assert differences == []
