"""outbox jobs are fenced by the claim that holds them; a send of unknown outcome is marked

``outbox.claim_token`` names the claim that leased a job: every write about the job is conditional
on it, so a worker that lost its lease writes nothing. ``outbox.unknown_since`` is set when a job is
taken back from a lease that expired mid-send (its process died): the send may have reached the
provider, so the outbox waits a grace period for a status naming the message before sending again.

Revision ID: 0005_outbox_claims
Revises: 0004_inbound_retries
Create Date: 2026-12-06 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.schema import TS

revision: str = "0005_outbox_claims"
down_revision: str | None = "0004_inbound_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claim_token", sa.String(length=32), nullable=True))
    op.add_column("outbox", sa.Column("unknown_since", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("unknown_since")
        batch.drop_column("claim_token")
