"""automations: rules with versions, their run log, fires, caused events, timers; business hours

Revision ID: 0014_automations
Revises: 0013_bots
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.schema

revision: str = "0014_automations"
down_revision: str | None = "0013_bots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = hub.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "automation_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, comment="rules run in ascending position"),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "mode",
            sa.String(length=16),
            nullable=False,
            comment="live, or shadow (evaluated and logged only)",
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "definition", sa.JSON(), nullable=False, comment="trigger, conditions, actions and options"
        ),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_rules")),
    )
    op.create_index("ix_automation_rules_position", "automation_rules", ["position"])
    op.create_table(
        "automation_rule_versions",
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.JSON(), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "version", name=op.f("pk_automation_rule_versions")),
    )
    op.create_table(
        "automation_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "rule_id", sa.String(length=64), nullable=False, comment="a rule's id, or ooo:<business hours id>"
        ),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=True),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_runs")),
    )
    op.create_index("ix_automation_runs_rule_id_created_at", "automation_runs", ["rule_id", "created_at"])
    op.create_index(
        "ix_automation_runs_conversation_id_created_at", "automation_runs", ["conversation_id", "created_at"]
    )
    op.create_index("ix_automation_runs_created_at", "automation_runs", ["created_at"])
    op.create_table(
        "automation_fires",
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "conversation_id", name=op.f("pk_automation_fires")),
    )
    op.create_table(
        "automation_caused",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_automation_caused")),
    )
    op.create_table(
        "automation_timers",
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", TS(), nullable=False),
        sa.Column("since", TS(), nullable=False, comment="the customer message that started the wait"),
        sa.PrimaryKeyConstraint("rule_id", "conversation_id", name=op.f("pk_automation_timers")),
    )
    op.create_index("ix_automation_timers_due_at", "automation_timers", ["due_at"])
    op.create_table(
        "business_hours",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scope_type", sa.String(length=16), nullable=False, comment="channel or team"),
        sa.Column("scope_id", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False, comment="mon..sun: list of [from, to] HH:MM"),
        sa.Column("holidays", sa.JSON(), nullable=False, comment="ISO dates closed all day"),
        sa.Column(
            "autoresponder",
            sa.JSON(),
            nullable=False,
            comment="enabled and text of the out-of-office reply",
        ),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_hours")),
        sa.UniqueConstraint("scope_type", "scope_id", name=op.f("uq_business_hours_scope_type_scope_id")),
    )


def downgrade() -> None:
    op.drop_table("business_hours")
    op.drop_index("ix_automation_timers_due_at", table_name="automation_timers")
    op.drop_table("automation_timers")
    op.drop_table("automation_caused")
    op.drop_table("automation_fires")
    op.drop_index("ix_automation_runs_created_at", table_name="automation_runs")
    op.drop_index("ix_automation_runs_conversation_id_created_at", table_name="automation_runs")
    op.drop_index("ix_automation_runs_rule_id_created_at", table_name="automation_runs")
    op.drop_table("automation_runs")
    op.drop_table("automation_rule_versions")
    op.drop_index("ix_automation_rules_position", table_name="automation_rules")
    op.drop_table("automation_rules")
