"""conversations keep their provider thread and participants; edits and deletions can wait

``conversations.thread_id`` is the provider's conversation id (a group chat) and
``conversations.participants`` the latest other recipients (email To/Cc), both read by the outbox to
fill ``SendContext``. ``pending_changes`` holds an edit or deletion that arrived before the message
it targets, until that message arrives.

Revision ID: 0003_inbound_threads
Revises: 0002
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.schema import TS, BigId

revision: str = "0003_inbound_threads"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "thread_id",
            sa.String(length=300),
            nullable=True,
            comment="the provider's conversation id (a group chat)",
        ),
    )
    op.add_column(
        "conversations",
        sa.Column(
            "participants",
            sa.JSON(),
            nullable=True,
            comment="ContactRefs of the other recipients (email To/Cc)",
        ),
    )
    op.create_table(
        "pending_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("target_external_id", sa.String(length=300), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False, comment="a MessageEdit or MessageDeletion"),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_changes")),
    )
    op.create_index(
        "ix_pending_changes_channel_id_target_external_id",
        "pending_changes",
        ["channel_id", "target_external_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_pending_changes_channel_id_target_external_id", table_name="pending_changes")
    op.drop_table("pending_changes")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("participants")
        batch.drop_column("thread_id")
