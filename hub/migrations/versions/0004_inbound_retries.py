"""a delivery that failed waits for its retry without holding others back; one conversation per thread

``raw_events.due_at`` is when a delivery that failed is tried again: the processor skips it until
then and carries on with the others, instead of sleeping. A unique index on
``conversations (channel_id, thread_id)`` keeps two processes from opening two conversations for one
provider thread (a group chat); rows without a thread (NULL) are not concerned.

Revision ID: 0004_inbound_retries
Revises: 0003_inbound_threads
Create Date: 2026-12-06 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.schema import TS

revision: str = "0004_inbound_retries"
down_revision: str | None = "0003_inbound_threads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "raw_events",
        sa.Column("due_at", TS, nullable=True, comment="a failed delivery's next try; NULL: now"),
    )
    op.create_index(
        "ix_conversations_channel_id_thread_id", "conversations", ["channel_id", "thread_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_channel_id_thread_id", table_name="conversations")
    with op.batch_alter_table("raw_events") as batch:
        batch.drop_column("due_at")
