"""Full-text search over messages and contacts: one interface, the database's own engine.

* SQLite: FTS5 tables (``messages_fts``, ``contacts_fts``) over the rows' text, kept by triggers
  on insert, update and delete, so every writer (inbound batches, sends, edits, tombstones,
  retention) keeps the index without knowing of it.
* PostgreSQL: a generated ``tsvector`` column on each table with a GIN index; the database
  recomputes it whenever the text changes.

Both use the ``simple`` configuration (no stemming, no stop words): the hub's conversations are in
every language, and an agent searches for the words a customer wrote. A query is reduced to its
words; every word must appear, the last as a prefix (what the agent is still typing). The migration
``0010_search`` creates what each backend needs; ``is_search_object`` tells it from the declared
schema. On SQLite the FTS5 tables point at the rows' implicit rowids: a later migration that
rebuilds ``messages`` or ``contacts`` (Alembic's batch mode copies the table) must create the
triggers again and ``rebuild`` the index, as ``0010_search`` does.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from hub import schema

__all__ = ["MAX_TERMS", "contact_match", "is_search_object", "message_match", "terms"]

M = schema.messages
K = schema.contacts
MAX_TERMS = 8


def is_search_object(name: str | None) -> bool:
    """Whether a table, column or index belongs to the search engine (FTS5 tables and their
    shadow tables, the tsvector columns and their GIN indexes), not to the declared schema."""
    if not name:
        return False
    return name.startswith(("messages_fts", "contacts_fts")) or name.endswith("search_vector")


_WORD = re.compile(r"\w+", re.UNICODE)


def terms(query: str) -> list[str]:
    """The words of a query, lower-cased, at most ``MAX_TERMS``: punctuation and operators of
    either engine's query language never reach it."""
    return [w.lower() for w in _WORD.findall(query)][:MAX_TERMS]


def _fts5_query(words: list[str]) -> str:
    # Each word as an FTS5 string (words hold only \w, so no quote needs escaping); the last one
    # as a prefix.
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


def _tsquery(words: list[str]) -> str:
    return " & ".join([*words[:-1], f"{words[-1]}:*"])


def _match(dialect: str, table: sa.Table, fts: str, words: list[str]) -> ColumnElement[bool]:
    if dialect == "sqlite":
        rowids = sa.text(f"SELECT rowid FROM {fts} WHERE {fts} MATCH :q").bindparams(q=_fts5_query(words))
        return sa.literal_column(f"{table.name}.rowid").in_(rowids)
    vector: ColumnElement[Any] = sa.literal_column(f"{table.name}.search_vector")
    simple: ColumnElement[Any] = sa.literal_column("'simple'::regconfig")
    return vector.op("@@")(sa.func.to_tsquery(simple, sa.cast(_tsquery(words), sa.Text)))


def message_match(dialect: str, words: list[str]) -> ColumnElement[bool]:
    """The WHERE clause of the messages whose text holds every word (``words`` from ``terms``)."""
    return _match(dialect, M, "messages_fts", words)


def contact_match(dialect: str, words: list[str]) -> ColumnElement[bool]:
    """The WHERE clause of the contacts whose name, phone or email holds every word."""
    return _match(dialect, K, "contacts_fts", words)
