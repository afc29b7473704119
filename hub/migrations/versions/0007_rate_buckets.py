"""rate_buckets: send rate limits shared by every hub process on one PostgreSQL database

Revision ID: 0007_rate_buckets
Revises: 0006_access_people
Create Date: 2026-12-06 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_rate_buckets"
down_revision: str | None = "0006_access_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=400), nullable=False, comment="RateLimit.key, e.g. number:123"),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("burst", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column(
            "stamp",
            sa.Float(),
            nullable=False,
            comment="tokens counted at (database clock, Unix s)",
        ),
        sa.Column(
            "blocked_until",
            sa.Float(),
            nullable=False,
            comment="throttled until (database clock, Unix s)",
        ),
        sa.PrimaryKeyConstraint("key"),
        comment="send rate limits shared by every hub process on PostgreSQL (hub.ratelimit)",
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
