"""labels and custom attributes as definitions: labels (applied to conversations and contacts by
reference), attribute definitions, contacts' custom attributes. The free-string labels of
conversations become definitions, and a free-string team that names no team becomes one.

Revision ID: 0011_labels_and_attributes
Revises: 0010_search
Create Date: 2026-12-06 22:20:00
"""

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import hub.schema

revision: str = "0011_labels_and_attributes"
down_revision: str | None = "0010_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Labels created from the old free strings get this colour; admins recolour them.
MIGRATED_COLOUR = "#8e8e93"


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=256), nullable=False, comment="casefolded name: unique"),
        sa.Column("colour", sa.String(length=7), nullable=False, comment="#rrggbb"),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", hub.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("name_key", name=op.f("uq_labels_name_key")),
    )
    op.create_table(
        "attribute_definitions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("applies_to", sa.String(length=16), nullable=False, comment="contact or conversation"),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "type",
            sa.String(length=16),
            nullable=False,
            comment="text, number, date, list, checkbox or link",
        ),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=True, comment="list: the allowed values"),
        sa.Column(
            "pattern",
            sa.String(length=500),
            nullable=True,
            comment="text and link: a regular expression the value matches",
        ),
        sa.Column(
            "min",
            sa.JSON(),
            nullable=True,
            comment="number: the least value; date: the earliest; text: shortest",
        ),
        sa.Column(
            "max",
            sa.JSON(),
            nullable=True,
            comment="number: the greatest value; date: the latest; text: longest",
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", hub.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attribute_definitions")),
        sa.UniqueConstraint("applies_to", "key", name=op.f("uq_attribute_definitions_applies_to_key")),
    )
    op.create_table(
        "conversation_labels",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("label_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_labels_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name=op.f("fk_conversation_labels_label_id_labels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "label_id", name=op.f("pk_conversation_labels")),
    )
    op.create_index("ix_conversation_labels_label_id", "conversation_labels", ["label_id"], unique=False)
    op.create_table(
        "contact_labels",
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("label_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_labels_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_contact_labels_label_id_labels"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("contact_id", "label_id", name=op.f("pk_contact_labels")),
    )
    op.create_index("ix_contact_labels_label_id", "contact_labels", ["label_id"], unique=False)
    op.add_column(
        "contacts",
        sa.Column(
            "custom_attributes",
            sa.JSON(),
            nullable=True,
            comment="values of the contact attribute definitions; null is none",
        ),
    )
    _labels_to_definitions()
    _teams_to_references()
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite 3.35+ drops a plain column in place (a batch copy would rebuild a table that
        # messages reference).
        op.execute("ALTER TABLE conversations DROP COLUMN labels")
    else:
        op.drop_column("conversations", "labels")


def _labels_to_definitions() -> None:
    """Every free-string label becomes a definition (names equal but for case become one), and
    each conversation keeps the labels it had."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    labels = sa.table(
        "labels",
        sa.column("id"),
        sa.column("name"),
        sa.column("name_key"),
        sa.column("colour"),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    links = sa.table("conversation_labels", sa.column("conversation_id"), sa.column("label_id"))
    by_key: dict[str, str] = {}
    pairs: set[tuple[str, str]] = set()
    rows = bind.execute(sa.text("SELECT id, labels FROM conversations")).all()
    for conv_id, raw in rows:
        names = json.loads(raw) if isinstance(raw, str) else raw
        for name in names or []:
            if not isinstance(name, str) or not name.strip(" \t\n\r\f\v"):
                continue
            name = name.strip(" \t\n\r\f\v")[:64]
            key = name.casefold()
            if key not in by_key:
                by_key[key] = _id("lbl_")
                bind.execute(
                    labels.insert().values(
                        id=by_key[key],
                        name=name,
                        name_key=key,
                        colour=MIGRATED_COLOUR,
                        created_at=now,
                        updated_at=now,
                    )
                )
            pairs.add((conv_id, by_key[key]))
    if pairs:
        bind.execute(links.insert(), [{"conversation_id": c, "label_id": lbl} for c, lbl in sorted(pairs)])


def _teams_to_references() -> None:
    """A conversation's team that is no team id becomes the team of that name (created if none)."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    teams = {r.id: r.name for r in bind.execute(sa.text("SELECT id, name FROM teams"))}
    by_name = {name.casefold(): tid for tid, name in teams.items()}
    stray = [
        r.team
        for r in bind.execute(sa.text("SELECT DISTINCT team FROM conversations WHERE team IS NOT NULL"))
        if r.team not in teams
    ]
    for name in stray:
        tid = by_name.get(name.casefold())
        if tid is None:
            tid = by_name[name.casefold()] = _id("team_")
            bind.execute(
                sa.text(
                    "INSERT INTO teams (id, name, created_at, updated_at) VALUES (:id, :name, :now, :now)"
                ),
                {"id": tid, "name": name[:200], "now": now},
            )
        bind.execute(
            sa.text("UPDATE conversations SET team = :tid WHERE team = :name"), {"tid": tid, "name": name}
        )


def downgrade() -> None:
    op.add_column("conversations", sa.Column("labels", sa.JSON(), nullable=True))
    bind = op.get_bind()
    names: dict[str, list[str]] = {}
    for conv_id, name in bind.execute(
        sa.text(
            "SELECT cl.conversation_id, l.name FROM conversation_labels cl "
            "JOIN labels l ON l.id = cl.label_id"
        )
    ):
        names.setdefault(conv_id, []).append(name)
    conv = sa.table("conversations", sa.column("id"), sa.column("labels", sa.JSON()))
    bind.execute(conv.update().values(labels=[]))
    for conv_id, label_names in names.items():
        bind.execute(conv.update().where(conv.c.id == conv_id).values(labels=label_names))
    op.drop_column("contacts", "custom_attributes")
    op.drop_index("ix_contact_labels_label_id", table_name="contact_labels")
    op.drop_table("contact_labels")
    op.drop_index("ix_conversation_labels_label_id", table_name="conversation_labels")
    op.drop_table("conversation_labels")
    op.drop_table("attribute_definitions")
    op.drop_table("labels")
