"""full-text search: FTS5 tables kept by triggers (SQLite), generated tsvector columns with GIN
indexes (PostgreSQL), over messages' text and contacts' name, phone and email

Revision ID: 0010_search
Revises: 0009_inbox_reads
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_search"
down_revision: str | None = "0009_inbox_reads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, FTS columns, PostgreSQL document expression). The PostgreSQL parser keeps an address as
# one token ("ann@example.com"): its @ and dots become spaces so that each part is a word, as FTS5's
# tokenizer makes them; a phone number is searched by its digits.
_INDEXES = [
    ("messages", ["text"], "coalesce(text, '')"),
    (
        "contacts",
        ["name", "phone", "email"],
        "coalesce(name, '') || ' ' || regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') || ' ' "
        "|| translate(coalesce(email, ''), '@.', '  ')",
    ),
]


def _sqlite(table: str, columns: list[str]) -> list[str]:
    fts = f"{table}_fts"
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', content_rowid='rowid', "
        "tokenize='unicode61 remove_diacritics 2')",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new}); END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old}); END",
        # Only when the indexed text changes: status updates (many per message) cost nothing.
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {cols} ON {table} WHEN {changed} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old}); "
        f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new}); END",
    ]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns, document in _INDEXES:
        if sqlite:
            for statement in _sqlite(table, columns):
                op.execute(statement)
        else:
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
                f"(to_tsvector('simple'::regconfig, {document})) STORED"
            )
            op.execute(f"CREATE INDEX ix_{table}_search_vector ON {table} USING gin (search_vector)")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, _, _ in _INDEXES:
        if sqlite:
            for suffix in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
        else:
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_search_vector")
            op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
