"""the inbox: a conversation's last message, and read markers per user (unread counts per user)

``conversations.unread_count`` becomes ``inbound_count``: the customer's messages so far, which a
user's read marker (``conversation_reads.read_count``) is compared with. What was unread stays
unread for everyone; ``last_message_id`` is filled from the stored messages.

Revision ID: 0009_inbox_reads
Revises: 0008_workspace_notify
Create Date: 2026-12-06 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.schema

revision: str = "0009_inbox_reads"
down_revision: str | None = "0008_workspace_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE conversations RENAME COLUMN unread_count TO inbound_count")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_message_id",
                sa.String(length=32),
                nullable=True,
                comment="the newest message (by its time): the preview of the conversation",
            )
        )
    op.execute(
        "UPDATE conversations SET last_message_id = (SELECT m.id FROM messages m "
        "WHERE m.conversation_id = conversations.id ORDER BY m.created_at DESC, m.id DESC LIMIT 1)"
    )
    op.create_table(
        "conversation_reads",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column(
            "read_count",
            sa.Integer(),
            nullable=False,
            comment="the conversation's inbound_count when the user last read it",
        ),
        sa.Column("last_read_message_id", sa.String(length=32), nullable=True),
        sa.Column("read_at", hub.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_reads_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_conversation_reads_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name=op.f("pk_conversation_reads")),
    )
    with op.batch_alter_table("conversation_reads", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_reads_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversation_reads", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_reads_user_id")
    op.drop_table("conversation_reads")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("last_message_id")
    op.execute("ALTER TABLE conversations RENAME COLUMN inbound_count TO unread_count")
