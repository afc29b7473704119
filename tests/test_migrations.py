"""The migrations build exactly the schema ``hub.schema`` declares, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.db import Database
from hub.migrate import upgrade
from hub.schema import metadata
from hub.search import is_search_object


async def test_migrations_match_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)

    def diff(conn: Any) -> list[Any]:
        # The search engine's own tables and columns (FTS5, tsvector) are not declared tables.
        def declared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
            return not (reflected and is_search_object(name))

        context = MigrationContext.configure(conn, opts={"include_object": declared})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        differences = await conn.run_sync(diff)
    await db.dispose()
    assert differences == []
