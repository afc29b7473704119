"""bots: agent bots on channels, the conversations they hold until handoff, webhook deliveries

Revision ID: 0013_bots
Revises: 0012_sessions
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.schema

revision: str = "0013_bots"
down_revision: str | None = "0012_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    TS = hub.schema.UTCDateTime()
    op.create_table(
        "bots",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="webhook or builtin"),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("secrets", sa.Text(), nullable=True, comment="Fernet token of {signing_secret}"),
        sa.Column(
            "token_hash", sa.String(length=64), nullable=True, comment="SHA-256 of the bot's app API token"
        ),
        sa.Column("flow", sa.JSON(), nullable=True, comment="a built-in bot's keyword and menu flow"),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_bots_token_hash")),
    )
    op.create_table(
        "bot_channels",
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_bot_channels_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_bot_channels")),
    )
    op.create_index("ix_bot_channels_bot_id", "bot_channels", ["bot_id"])
    op.create_table(
        "bot_conversations",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False, comment="active or handed_over"),
        sa.Column("flow_state", sa.JSON(), nullable=False, comment="a built-in bot's place in its flow"),
        sa.Column("reason", sa.Text(), nullable=True, comment="why it was handed over"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("handed_over_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_bot_conversations")),
    )
    op.create_index("ix_bot_conversations_bot_id", "bot_conversations", ["bot_id"])
    op.create_table(
        "bot_deliveries",
        sa.Column("id", hub.schema.BigId, autoincrement=True, nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, comment="the event's position in the log"),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "state", sa.String(length=16), nullable=False, comment="pending, delivered, failed or dropped"
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_deliveries")),
    )
    op.create_index(
        "ix_bot_deliveries_state_conversation_id_id", "bot_deliveries", ["state", "conversation_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_bot_deliveries_state_conversation_id_id", table_name="bot_deliveries")
    op.drop_table("bot_deliveries")
    op.drop_index("ix_bot_conversations_bot_id", table_name="bot_conversations")
    op.drop_table("bot_conversations")
    op.drop_index("ix_bot_channels_bot_id", table_name="bot_channels")
    op.drop_table("bot_channels")
    op.drop_table("bots")
