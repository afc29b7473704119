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


async def test_free_string_labels_and_teams_become_references(database_url: str) -> None:
    """0011: a conversation's free-string labels become label definitions (one per name whatever
    its case) still applied to it; a team given by name becomes a reference to that team."""
    import sqlalchemy as sa

    from hub import schema
    from hub.models import utcnow

    db = Database(database_url)
    await upgrade(db, "0006_access_people")
    now = utcnow()
    async with db.write() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO contacts (id, channel_id, created_at, updated_at) VALUES ('ct1', 'ch', :n, :n)"
            ),
            {"n": now if not db.is_sqlite else now.replace(tzinfo=None)},
        )
        for cid, labels, team in (("cv1", '["VIP", "billing"]', "Sales"), ("cv2", '["vip"]', None)):
            await conn.execute(
                sa.text(
                    "INSERT INTO conversations (id, channel_id, contact_id, thread_key, status, team, labels,"
                    " custom_attributes, unread_count, created_at, updated_at) VALUES"
                    " (:id, 'ch', 'ct1', :id, 'open', :team, :labels, '{}', 0, :n, :n)"
                ),
                {
                    "id": cid,
                    "team": team,
                    "labels": labels,
                    "n": now if not db.is_sqlite else now.replace(tzinfo=None),
                },
            )
    await upgrade(db)
    async with db.read() as conn:
        labels = {r.name_key: r.id for r in await conn.execute(sa.select(schema.labels))}
        links = {
            (r.conversation_id, r.label_id) for r in await conn.execute(sa.select(schema.conversation_labels))
        }
        teams = {r.name: r.id for r in await conn.execute(sa.select(schema.teams))}
        team_of = dict(
            (await conn.execute(sa.select(schema.conversations.c.id, schema.conversations.c.team))).all()
        )
    await db.dispose()
    assert set(labels) == {"vip", "billing"}
    assert links == {("cv1", labels["vip"]), ("cv1", labels["billing"]), ("cv2", labels["vip"])}
    assert team_of == {"cv1": teams["Sales"], "cv2": None}
