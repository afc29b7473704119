"""The hub's tables (SQLAlchemy Core). Migrations under ``hub/migrations`` create and change them.

Uniqueness constraints carry the delivery guarantees: a provider retry is one raw event
(``raw_events``), one provider message is one row (``messages``), one agent request is one send
(``messages.idempotency_key``), and one message has one outbox job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime()
# SQLite rowids are 64-bit already; BigInteger keeps PostgreSQL from running out.
BigId = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200)),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200)),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    Column("availability", String(64), nullable=False, default="online", server_default="online"),
    Column("availability_at", TS),
    Column("last_connection_at", TS, comment="when the user's last app stream closed (auto-offline)"),
)

# Admin-defined roles; the built-in ones (administrator, agent) live in hub.access.permissions.
roles = Table(
    "roles",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text),
    Column("permissions", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# One-time set-password links: only the hash is stored; using one deletes it.
invitations = Table(
    "invitations",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("created_at", TS, nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", String(32), ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_team_members_user_id", "user_id"),
)

# Who serves a channel: users directly, or teams (and through them their members).
channel_members = Table(
    "channel_members",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_channel_members_user_id", "user_id"),
)

team_channels = Table(
    "team_channels",
    metadata,
    Column("team_id", String(32), ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", String(64), primary_key=True),
    Index("ix_team_channels_channel_id", "channel_id"),
)

# Admin-defined availability statuses; online, busy and offline are built in (hub.services.presence).
availability_statuses = Table(
    "availability_statuses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("receives", Boolean, nullable=False, comment="agents in it get new conversations"),
    Column("push", Boolean, nullable=False, comment="agents in it get push notifications"),
    Column("shows_as", String(16), nullable=False, comment="online, away or offline"),
    Column("created_at", TS, nullable=False),
)

# How new (and reopened) conversations of a channel or a team find an agent.
assignment_policies = Table(
    "assignment_policies",
    metadata,
    Column("scope_type", String(16), primary_key=True, comment="channel or team"),
    Column("scope_id", String(64), primary_key=True),
    Column("policy", String(16), nullable=False, comment="manual, round_robin or balanced"),
    Column("capacity", Integer, comment="open conversations per agent; none means no limit"),
    Column("team_id", String(32), comment="channel policies: draw agents from this team only"),
    Column("last_user_id", String(32), comment="round-robin: who received the last one"),
    Column("updated_at", TS, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(200)),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    Column("expires_at", TS, comment="none: never (CLI tokens)"),
    Column("family_id", String(32), index=True, comment="the login session it belongs to"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("family_id", String(32), nullable=False, index=True),
    Column("expires_at", TS, nullable=False),
    Column("used_at", TS, comment="spent: a second use ends the session"),
    Column("created_at", TS, nullable=False),
)

channels = Table(
    "channels",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("settings", JSON, nullable=False),
    Column("secrets", Text, comment="Fernet token of a JSON object of SecretStr fields"),
    Column("source", String(16), nullable=False, default="api", comment="api or config"),
    Column("health", JSON, nullable=False),
    Column("send_paused", Boolean, nullable=False, default=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

raw_events = Table(
    "raw_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel_id", String(64), nullable=False),
    Column("dedupe_key", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("received_at", TS, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("processed_at", TS),
    Column("due_at", TS, comment="a failed delivery's next try; NULL: now"),
    UniqueConstraint("channel_id", "dedupe_key"),
    Index("ix_raw_events_state_id", "state", "id"),
    # A pass reads the deliveries waiting for their retry (``hub.inbound``): without it, every pass
    # scanned the whole backlog (36 ms with 53,000 pending on PostgreSQL).
    Index("ix_raw_events_state_due_at", "state", "due_at"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", TS, nullable=False),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(400), primary_key=True, comment="RateLimit.key, e.g. number:123"),
    Column("rate", Float, nullable=False),
    Column("burst", Float, nullable=False),
    Column("tokens", Float, nullable=False),
    Column("stamp", Float, nullable=False, comment="tokens counted at (database clock, Unix s)"),
    Column("blocked_until", Float, nullable=False, comment="throttled until (database clock, Unix s)"),
    comment="send rate limits shared by every hub process on PostgreSQL (hub.ratelimit)",
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("name", String(300)),
    Column("phone", String(64)),
    Column("email", String(320)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("custom_attributes", JSON, comment="values of the contact attribute definitions; null is none"),
)

contact_identities = Table(
    "contact_identities",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("identity", String(300), primary_key=True),
    Column("contact_id", String(32), ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # A contact's ids are looked up by contact for every outbox batch and every merge.
    Index("ix_contact_identities_contact_id", "contact_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("contact_id", String(32), ForeignKey("contacts.id"), nullable=False),
    Column("thread_key", String(300), nullable=False, default=""),
    Column("thread_id", String(300), comment="the provider's conversation id (a group chat)"),
    Column("participants", JSON, comment="ContactRefs of the other recipients (email To/Cc)"),
    Column("status", String(16), nullable=False, default="open"),
    Column("assignee_id", String(32)),
    Column("team", String(100)),
    Column("custom_attributes", JSON, nullable=False),
    Column("subject", Text),
    Column("last_message_at", TS),
    Column("last_inbound_at", TS),
    Column("inbound_count", Integer, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("priority", String(16), comment="none, low, medium, high or urgent; null is none"),
    Column("snoozed_until", TS),
    Column("last_assignee_id", String(32), comment="who had it last, for a reopened conversation"),
    Column(
        "last_message_id",
        String(32),
        comment="the newest message (by its time): the preview of the conversation",
    ),
    UniqueConstraint("channel_id", "contact_id", "thread_key"),
    # One conversation per provider thread (a group chat), whoever writes in it.
    Index("ix_conversations_channel_id_thread_id", "channel_id", "thread_id", unique=True),
    Index("ix_conversations_last_message_at", "last_message_at"),
    Index("ix_conversations_assignee_id_status", "assignee_id", "status"),
    Index("ix_conversations_status_snoozed_until", "status", "snoozed_until"),
)

# Admin-defined labels, applied to conversations and contacts by reference: a rename keeps every
# application, a deletion removes them all (the foreign keys cascade).
labels = Table(
    "labels",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("name_key", String(256), nullable=False, unique=True, comment="casefolded name: unique"),
    Column("colour", String(7), nullable=False, comment="#rrggbb"),
    Column("description", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# Custom attribute definitions, one set for contacts and one for conversations. Values live in the
# owner's custom_attributes column, keyed by ``key``; a definition change never rewrites them.
attribute_definitions = Table(
    "attribute_definitions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("applies_to", String(16), nullable=False, comment="contact or conversation"),
    Column("key", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False, comment="text, number, date, list, checkbox or link"),
    Column("required", Boolean, nullable=False, default=False),
    Column("options", JSON, comment="list: the allowed values"),
    Column("pattern", String(500), comment="text and link: a regular expression the value matches"),
    Column("min", JSON, comment="number: the least value; date: the earliest; text: shortest"),
    Column("max", JSON, comment="number: the greatest value; date: the latest; text: longest"),
    Column("description", Text),
    Column("position", Integer, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("applies_to", "key"),
)

conversation_labels = Table(
    "conversation_labels",
    metadata,
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("label_id", String(32), ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_conversation_labels_label_id", "label_id"),
)

contact_labels = Table(
    "contact_labels",
    metadata,
    Column("contact_id", String(32), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("label_id", String(32), ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_contact_labels_label_id", "label_id"),
)

# Each user's read marker: unread is the conversation's inbound_count past the read_count.
conversation_reads = Table(
    "conversation_reads",
    metadata,
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "read_count",
        Integer,
        nullable=False,
        comment="the conversation's inbound_count when the user last read it",
    ),
    Column("last_read_message_id", String(32)),
    Column("read_at", TS, nullable=False),
    Index("ix_conversation_reads_user_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text),
    Column("content", JSON, nullable=False, comment="attachments, interactive, template, data..."),
    Column("reply_to_message_id", String(32)),
    Column("reply_to_external_id", String(300)),
    Column("reactions", JSON, nullable=False),
    Column("sender", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_at", JSON, nullable=False),
    Column("error", JSON),
    Column("external_id", String(300)),
    Column("author_id", String(32)),
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("channel_id", "external_id"),
    UniqueConstraint("author_id", "idempotency_key"),
    Index("ix_messages_conversation_id_id", "conversation_id", "id"),
)

pending_statuses = Table(
    "pending_statuses",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel_id", String(64), nullable=False),
    Column("external_id", String(300), nullable=False),
    Column("update", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_pending_statuses_channel_id_external_id", "channel_id", "external_id"),
)

pending_changes = Table(
    "pending_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel_id", String(64), nullable=False),
    Column("target_external_id", String(300), nullable=False),
    Column("change", JSON, nullable=False, comment="a MessageEdit or MessageDeletion"),
    Column("created_at", TS, nullable=False),
    Index("ix_pending_changes_channel_id_target_external_id", "channel_id", "target_external_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False, unique=True),
    Column("channel_id", String(64), nullable=False),
    Column(
        "conversation_id",
        String(32),
        comment="sends of one conversation go out one at a time, in order (NULL: before 0015)",
    ),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", TS, nullable=False),
    Column("lease_until", TS),
    # The claim that holds the lease: every write about the job is conditional on it.
    Column("claim_token", String(32)),
    # Taken back from a lease that expired mid-send: the send's outcome is unknown.
    Column("unknown_since", TS),
    Column("last_error", JSON),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_outbox_state_due_at", "state", "due_at"),
    Index("ix_outbox_conversation_state", "conversation_id", "state", "id"),
)

media_jobs = Table(
    "media_jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", TS, nullable=False),
    Column("error", Text),
    Column("path", Text),
    UniqueConstraint("message_id", "idx"),
    Index("ix_media_jobs_state_due_at", "state", "due_at"),
)

events = Table(
    "events",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("channel_id", String(64)),
    Column("conversation_id", String(32)),
    Column("data", Text, nullable=False, comment="the event's JSON, serialized once when appended"),
    Column("created_at", TS, nullable=False),
    # Never reuse a sequence number, even after the newest rows were deleted.
    sqlite_autoincrement=True,
)

# ---- the agents' workspace: quick replies, macros, private notes --------------------------------

# Canned responses: a short code and a text with placeholders, rendered when sent.
quick_replies = Table(
    "quick_replies",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "code", String(64), nullable=False, unique=True, comment="kept lower-case: unique regardless of case"
    ),
    Column("text", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# A named, ordered list of actions (hub.actions) an agent runs on conversations.
macros = Table(
    "macros",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("visibility", String(16), nullable=False, comment="personal (its owner's) or shared"),
    Column("owner_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("actions", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_macros_owner_id", "owner_id"),
)

# Private notes on a conversation: never sent to the customer (no outbox job ever refers to one).
notes = Table(
    "notes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("author", JSON, nullable=False),
    Column("text", Text, nullable=False),
    Column("mentions", JSON, comment="ids of the users the note mentions"),
    Column("created_at", TS, nullable=False),
    Index("ix_notes_conversation_id_created_at", "conversation_id", "created_at"),
)

# ---- notifications (hub.notify) ------------------------------------------------------------------

# Whether an event type reaches a user by a medium; user_id '' holds the admin-set defaults.
notification_preferences = Table(
    "notification_preferences",
    metadata,
    Column("user_id", String(32), primary_key=True, comment="'' for the defaults"),
    Column("event", String(32), primary_key=True),
    Column("medium", String(16), primary_key=True, comment="push, email or in_app"),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# What a user was notified of; the in-app list shows those with in_app set.
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text),
    Column("conversation_id", String(32)),
    Column("channel_id", String(64)),
    Column("data", JSON, nullable=False),
    Column("in_app", Boolean, nullable=False),
    Column("read_at", TS),
    Column("created_at", TS, nullable=False),
    Index("ix_notifications_user_id_id", "user_id", "id"),
)

# Devices the app registered for push, per notifier (provider).
devices = Table(
    "devices",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(64), nullable=False, comment="the notifier that pushes to it"),
    Column("token", String(4096), nullable=False),
    Column("platform", String(32)),
    Column("name", String(200)),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("provider", "token"),
    Index("ix_devices_user_id", "user_id"),
)

# One notification to send through one notifier: durable, retried with backoff across restarts.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("notification_id", String(32), ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    Column("notifier", String(64), nullable=False),
    Column("state", String(16), nullable=False, comment="pending, sent or failed"),
    Column("attempts", Integer, nullable=False),
    Column("due_at", TS, nullable=False),
    Column("lease_until", TS),
    Column("last_error", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_notification_deliveries_state_due_at", "state", "due_at"),
)

# ---- automations (hub.automations) ---------------------------------------------------------------

# A rule as it is now; every edit makes a new row in automation_rule_versions.
automation_rules = Table(
    "automation_rules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("position", Integer, nullable=False, comment="rules run in ascending position"),
    Column("enabled", Boolean, nullable=False),
    Column("mode", String(16), nullable=False, comment="live, or shadow (evaluated and logged only)"),
    Column("version", Integer, nullable=False),
    Column("definition", JSON, nullable=False, comment="trigger, conditions, actions and options"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_automation_rules_position", "position"),
)

automation_rule_versions = Table(
    "automation_rule_versions",
    metadata,
    Column("rule_id", String(32), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("created_by", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
)

# Every evaluation of a rule: what triggered it, each condition's seen value and result, each
# action's result. Kept automation_run_retention_days (hub.retention).
automation_runs = Table(
    "automation_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("rule_id", String(64), nullable=False, comment="a rule's id, or ooo:<business hours id>"),
    Column("rule_version", Integer, nullable=False),
    Column("conversation_id", String(32)),
    Column("channel_id", String(64)),
    Column("event_seq", BigInteger),
    Column("trigger", String(32), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text),
    Column("conditions", JSON, nullable=False),
    Column("actions", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_automation_runs_rule_id_created_at", "rule_id", "created_at"),
    Index("ix_automation_runs_conversation_id_created_at", "conversation_id", "created_at"),
    Index("ix_automation_runs_created_at", "created_at"),
)

# When a rule last acted on a conversation: "at most once per conversation" and cooldowns.
automation_fires = Table(
    "automation_fires",
    metadata,
    Column("rule_id", String(64), primary_key=True),
    Column("conversation_id", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", TS, nullable=False),
)

# Events a rule's actions caused, with their depth in the chain (loop prevention).
automation_caused = Table(
    "automation_caused",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("depth", Integer, nullable=False),
    Column("rule_id", String(64), nullable=False),
)

# Time triggers due later (no reply for N minutes), claimed by one process each.
automation_timers = Table(
    "automation_timers",
    metadata,
    Column("rule_id", String(32), primary_key=True),
    Column("conversation_id", String(32), primary_key=True),
    Column("due_at", TS, nullable=False),
    Column("since", TS, nullable=False, comment="the customer message that started the wait"),
    Index("ix_automation_timers_due_at", "due_at"),
)

# Opening hours of a channel or a team, with the out-of-office autoresponder that uses them.
business_hours = Table(
    "business_hours",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scope_type", String(16), nullable=False, comment="channel or team"),
    Column("scope_id", String(100), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("weekly", JSON, nullable=False, comment="mon..sun: list of [from, to] HH:MM"),
    Column("holidays", JSON, nullable=False, comment="ISO dates closed all day"),
    Column("autoresponder", JSON, nullable=False, comment="enabled and text of the out-of-office reply"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("scope_type", "scope_id"),
)

# ---- bots: agent bots attached to channels, their conversations and webhook deliveries -----------

# An agent bot: an external one (``webhook``: events POSTed to its URL, signed) or a built-in one
# (``builtin``: keyword and menu flows run by the hub). Its app API token is stored as a hash, its
# signing secret sealed like channel secrets.
bots = Table(
    "bots",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False, comment="webhook or builtin"),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("webhook_url", Text),
    Column("secrets", Text, comment="Fernet token of {signing_secret}"),
    Column("token_hash", String(64), unique=True, comment="SHA-256 of the bot's app API token"),
    Column("flow", JSON, comment="a built-in bot's keyword and menu flow"),
    Column("timeout_seconds", Float, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# A channel has at most one bot: its new conversations start with it (status pending).
bot_channels = Table(
    "bot_channels",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("bot_id", String(32), ForeignKey("bots.id", ondelete="CASCADE"), nullable=False, index=True),
)

# A conversation a bot holds (``active``) until it hands over (``handed_over``): then the bot
# receives nothing more of it.
bot_conversations = Table(
    "bot_conversations",
    metadata,
    Column("conversation_id", String(32), primary_key=True),
    Column("bot_id", String(32), nullable=False, index=True),
    Column("state", String(16), nullable=False, comment="active or handed_over"),
    Column("flow_state", JSON, nullable=False, comment="a built-in bot's place in its flow"),
    Column("reason", Text, comment="why it was handed over"),
    Column("created_at", TS, nullable=False),
    Column("handed_over_at", TS),
)

# One event for one bot: durable, delivered in order per conversation, retried with backoff.
bot_deliveries = Table(
    "bot_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("bot_id", String(32), nullable=False),
    Column("conversation_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False, comment="the event's position in the log"),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False, comment="pending, delivered, failed or dropped"),
    Column("attempts", Integer, nullable=False),
    Column("due_at", TS, nullable=False),
    Column("lease_until", TS),
    Column("last_error", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_bot_deliveries_state_conversation_id_id", "state", "conversation_id", "id"),
)
