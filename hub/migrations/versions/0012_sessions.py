"""sessions: login tokens expire and belong to a session; refresh tokens, each good for one use

Revision ID: 0012_sessions
Revises: 0011_labels_and_attributes
Create Date: 2026-12-06 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.schema

revision: str = "0012_sessions"
down_revision: str | None = "0011_labels_and_attributes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column(
                "expires_at", hub.schema.UTCDateTime(), nullable=True, comment="none: never (CLI tokens)"
            )
        )
        batch.add_column(
            sa.Column(
                "family_id", sa.String(length=32), nullable=True, comment="the login session it belongs to"
            )
        )
        batch.create_index("ix_api_tokens_family_id", ["family_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", hub.schema.UTCDateTime(), nullable=False),
        sa.Column(
            "used_at", hub.schema.UTCDateTime(), nullable=True, comment="spent: a second use ends the session"
        ),
        sa.Column("created_at", hub.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_refresh_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_user_id", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_family_id")
        batch.drop_column("family_id")
        batch.drop_column("expires_at")
