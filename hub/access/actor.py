"""The acting user (or the system) with its scope: what it may see, and what it may do.

The scope is the channels the user serves, directly or through a team (every channel for
administrators), narrowed by the conversation read levels the role holds. Every read path builds
its query from ``conversation_clause`` or asks ``sees_*``; the day the hub hosts several accounts,
the account filter joins here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from hub import schema
from hub.access.permissions import BUILTIN_ROLES, READ_LEVELS
from hub.services.errors import Forbidden

__all__ = ["Actor", "system_actor"]

C = schema.conversations


@dataclass(frozen=True)
class Actor:
    id: str
    kind: str  # "user" or "system" (later: "rule", "bot")
    role: str
    permissions: frozenset[str]
    all_channels: bool
    channel_ids: frozenset[str] = frozenset()
    team_ids: frozenset[str] = frozenset()
    user: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> dict[str, Any]:
        """Who made a change, as events record it."""
        return {"type": self.kind, "id": self.id, "name": self.user.get("name")}

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"your role ({self.role}) lacks the permission {permission!r}")

    # ---- scope ---------------------------------------------------------------------------------

    @property
    def reads_all(self) -> bool:
        return "conversations.read.all" in self.permissions

    def sees_channel(self, channel_id: str | None) -> bool:
        return self.all_channels or channel_id in self.channel_ids

    def conversation_clause(self) -> ColumnElement[bool]:
        """The WHERE clause of the conversations this actor may read."""
        if not any(level in self.permissions for level in READ_LEVELS):
            return sa.false()
        parts: list[ColumnElement[bool]] = []
        if not self.all_channels:
            parts.append(C.c.channel_id.in_(sorted(self.channel_ids)))
        if not self.reads_all:
            levels: list[ColumnElement[bool]] = []
            if self.can("conversations.read.team") and self.team_ids:
                levels.append(C.c.team.in_(sorted(self.team_ids)))
            if self.can("conversations.read.mine"):
                levels.append(C.c.assignee_id == self.id)
            if self.can("conversations.read.unassigned"):
                levels.append(C.c.assignee_id.is_(None))
            parts.append(sa.or_(*levels) if levels else sa.false())
        return sa.and_(sa.true(), *parts)

    def sees_conversation(self, conv: Mapping[str, Any]) -> bool:
        """The same rule as ``conversation_clause``, for a conversation already read."""
        if not any(level in self.permissions for level in READ_LEVELS):
            return False
        if not self.sees_channel(conv.get("channel_id")):
            return False
        if self.reads_all:
            return True
        assignee = conv.get("assignee_id")
        return (
            (self.can("conversations.read.team") and conv.get("team") in self.team_ids)
            or (self.can("conversations.read.mine") and assignee == self.id)
            or (self.can("conversations.read.unassigned") and assignee is None)
        )


def system_actor(name: str = "system") -> Actor:
    """The hub itself (workers, the CLI, config at start-up): every permission, every channel."""
    return Actor(
        id=name,
        kind="system",
        role="system",
        permissions=BUILTIN_ROLES["administrator"],
        all_channels=True,
    )
