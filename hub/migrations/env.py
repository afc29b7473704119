"""Alembic environment: runs the hub's migrations over the async engine it is handed."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from hub.db import async_url
from hub.schema import metadata
from hub.search import is_search_object

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # The search engine's tables, columns and indexes (0010_search) are not in hub.schema:
        # autogenerate must not offer to drop them.
        include_object=lambda obj, name, type_, reflected, compare_to: (
            not (reflected and is_search_object(name))
        ),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(async_url(config.get_main_option("sqlalchemy.url") or ""))
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async())
