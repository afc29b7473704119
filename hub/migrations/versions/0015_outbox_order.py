"""outbox jobs name their conversation: its sends go out one at a time, in order

The outbox sends many jobs at once; two replies of one conversation sent concurrently can reach
the customer in either order. ``outbox.conversation_id`` lets a claim take a job only when no
earlier job of its conversation is still pending or in flight. Existing jobs get it from their
message.

Revision ID: 0015_outbox_order
Revises: 0014_automations
Create Date: 2026-12-07 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_outbox_order"
down_revision: str | None = "0014_automations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column(
                "conversation_id",
                sa.String(length=32),
                nullable=True,
                comment="sends of one conversation go out one at a time, in order (NULL: before 0015)",
            )
        )
        batch.create_index("ix_outbox_conversation_state", ["conversation_id", "state", "id"])
    op.execute(
        "UPDATE outbox SET conversation_id = "
        "(SELECT messages.conversation_id FROM messages WHERE messages.id = outbox.message_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_conversation_state")
        batch.drop_column("conversation_id")
