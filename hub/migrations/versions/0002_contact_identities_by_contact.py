"""index contact_identities by contact

Looking up a contact's ids (each outbox batch, each contact merge) scanned the whole table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_contact_identities_contact_id", "contact_identities", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_identities_contact_id", table_name="contact_identities")
