"""raw_events: index the deliveries waiting for their retry

Every inbound pass reads the pending deliveries whose retry is not due yet (their conversations
wait for them). Only ``(state, id)`` was indexed, so with a deep backlog each pass scanned every
pending row: 36 ms a pass with 53,000 pending on PostgreSQL.

Revision ID: 0016_raw_events_due
Revises: 0015_outbox_order
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_raw_events_due"
down_revision: str | None = "0015_outbox_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_raw_events_state_due_at", "raw_events", ["state", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_events_state_due_at", table_name="raw_events")
