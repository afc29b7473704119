"""Assignment: who receives a new (or reopened) conversation, decided inside the transaction that
creates (or reopens) it, so the app never sees an unassigned gap.

Policies belong to a channel or a team: ``manual`` (nobody is chosen), ``round_robin`` (the next
eligible agent after the last one chosen) and ``balanced`` (the eligible agent with the fewest open
conversations), each with an optional capacity of open conversations per agent. An agent is
eligible when active, serving the channel (directly or through a team; only the team's members
when the policy names a team), in an availability status that receives conversations, and under
capacity. A reopened conversation goes back to its last agent when that agent is eligible.

Concurrent webhooks: on PostgreSQL the choice is made under the event log's transaction lock
(``Tx.serialize``), which every event-writing transaction takes anyway, so two transactions never
both count an agent's last free slot; SQLite's single writer does the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.events import Tx
from hub.models import utcnow

__all__ = ["BUILTIN_AVAILABILITY", "OPEN_STATUSES", "POLICIES", "route", "route_to_team"]

C = schema.conversations
U = schema.users
P = schema.assignment_policies
POLICIES = ("manual", "round_robin", "balanced")
# What counts against an agent's capacity.
OPEN_STATUSES = ("open", "pending")
# id -> (receives new conversations, gets push, shows as)
BUILTIN_AVAILABILITY: dict[str, tuple[bool, bool, str]] = {
    "online": (True, True, "online"),
    "busy": (False, True, "away"),
    "offline": (False, False, "offline"),
}


@dataclass
class _Policy:
    policy: str
    capacity: int | None
    team_id: str | None
    scope: tuple[str, str]
    last_user_id: str | None


async def route(tx: Tx, created: Iterable[dict[str, Any]], reopened: Iterable[dict[str, Any]] = ()) -> None:
    """Assign each conversation (rows, updated in place and in the database) per its policy."""
    created, reopened = list(created), list(reopened)
    if not created and not reopened:
        return
    policies: dict[str, _Policy | None] = {}
    for conv in created + reopened:
        if conv["channel_id"] not in policies:
            policies[conv["channel_id"]] = await _policy(tx.conn, conv["channel_id"])
    if not any(policies.values()) and not any(c.get("last_assignee_id") for c in reopened):
        return  # nothing to decide: leave the write path as it was
    await tx.serialize()
    receiving = await _receiving_statuses(tx.conn)
    loads = _Loads(tx.conn)
    for conv in reopened:
        last = conv.get("assignee_id") or conv.get("last_assignee_id")
        policy = policies[conv["channel_id"]]
        capacity = policy.capacity if policy else None
        # A conversation that kept its assignee while resolved already counts in their load.
        own = 1 if last and conv.get("assignee_id") == last else 0
        if last and await _eligible(tx.conn, last, conv["channel_id"], receiving, loads, capacity, own):
            await _assign(tx, conv, last, conv.get("team"), loads)
        elif policy is not None and policy.policy != "manual":
            await _choose(tx, conv, policy, receiving, loads)
    for conv in created:
        policy = policies[conv["channel_id"]]
        if policy is not None and policy.policy != "manual":
            await _choose(tx, conv, policy, receiving, loads)


async def route_to_team(tx: Tx, conv: dict[str, Any], team_id: str) -> None:
    """A conversation handed to a team without an agent: the team's policy chooses one."""
    row = (
        (await tx.conn.execute(sa.select(P).where(P.c.scope_type == "team", P.c.scope_id == team_id)))
        .mappings()
        .first()
    )
    if row is None or row["policy"] == "manual":
        return
    policy = _from_row(row)
    policy.team_id = team_id
    await tx.serialize()
    await _choose(tx, conv, policy, await _receiving_statuses(tx.conn), _Loads(tx.conn))


async def _policy(conn: AsyncConnection, channel_id: str) -> _Policy | None:
    row = (
        (await conn.execute(sa.select(P).where(P.c.scope_type == "channel", P.c.scope_id == channel_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    policy = _from_row(row)
    if policy.team_id:
        # The team's own policy (how it shares out its work) wins over the channel's.
        team = (
            (await conn.execute(sa.select(P).where(P.c.scope_type == "team", P.c.scope_id == policy.team_id)))
            .mappings()
            .first()
        )
        if team is not None:
            own = _from_row(team)
            own.team_id = policy.team_id
            return own
    return policy


def _from_row(row: Any) -> _Policy:
    return _Policy(
        row["policy"],
        row["capacity"],
        row["team_id"],
        (row["scope_type"], row["scope_id"]),
        row["last_user_id"],
    )


async def _receiving_statuses(conn: AsyncConnection) -> set[str]:
    A = schema.availability_statuses
    custom = set(await conn.scalars(sa.select(A.c.id).where(A.c.receives.is_(True))))
    return custom | {k for k, (receives, _, _) in BUILTIN_AVAILABILITY.items() if receives}


class _Loads:
    """Open conversations per agent, read once per transaction and kept up to date as it assigns."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.counts: dict[str, int] = {}

    async def of(self, user_ids: list[str]) -> dict[str, int]:
        missing = [u for u in user_ids if u not in self.counts]
        if missing:
            rows = await self.conn.execute(
                sa.select(C.c.assignee_id, sa.func.count())
                .where(C.c.assignee_id.in_(missing), C.c.status.in_(OPEN_STATUSES))
                .group_by(C.c.assignee_id)
            )
            found: dict[str, int] = {str(u): int(n) for u, n in rows.all()}
            for u in missing:
                self.counts[u] = int(found.get(u, 0))
        return {u: self.counts[u] for u in user_ids}


async def _candidates(
    conn: AsyncConnection, channel_id: str, team_id: str | None, receiving: set[str]
) -> list[str]:
    """Active users able to receive now who serve the channel (only the team's, if one is named)."""
    TM, CM, TC = schema.team_members, schema.channel_members, schema.team_channels
    serving: sa.Select[Any] | sa.CompoundSelect[Any]
    if team_id:
        serving = sa.select(TM.c.user_id).where(TM.c.team_id == team_id)
    else:
        direct = sa.select(CM.c.user_id).where(CM.c.channel_id == channel_id)
        via = (
            sa.select(TM.c.user_id)
            .join(TC, TC.c.team_id == TM.c.team_id)
            .where(TC.c.channel_id == channel_id)
        )
        serving = sa.union(direct, via)
    ids = sa.select(serving.subquery().c.user_id)
    stmt = (
        sa.select(U.c.id)
        .where(U.c.id.in_(ids), U.c.active.is_(True), U.c.availability.in_(sorted(receiving)))
        .order_by(U.c.id)
    )
    return list(await conn.scalars(stmt))


async def _eligible(
    conn: AsyncConnection,
    user_id: str,
    channel_id: str,
    receiving: set[str],
    loads: _Loads,
    capacity: int | None,
    own: int,
) -> bool:
    if user_id not in await _candidates(conn, channel_id, None, receiving):
        return False
    return capacity is None or (await loads.of([user_id]))[user_id] - own < capacity


async def _choose(tx: Tx, conv: dict[str, Any], policy: _Policy, receiving: set[str], loads: _Loads) -> None:
    candidates = await _candidates(tx.conn, conv["channel_id"], policy.team_id, receiving)
    counts = await loads.of(candidates)
    if policy.capacity is not None:
        candidates = [u for u in candidates if counts[u] < policy.capacity]
    if not candidates:
        if policy.team_id and conv.get("team") is None:
            await _assign(tx, conv, None, policy.team_id, loads)
        return  # everyone is at capacity or away: it waits, unassigned
    if policy.policy == "balanced":
        chosen = min(candidates, key=lambda u: (counts[u], _after(u, policy.last_user_id, candidates)))
    else:
        chosen = min(candidates, key=lambda u: _after(u, policy.last_user_id, candidates))
    policy.last_user_id = chosen
    await tx.conn.execute(
        P.update()
        .where(P.c.scope_type == policy.scope[0], P.c.scope_id == policy.scope[1])
        .values(last_user_id=chosen)
    )
    await _assign(tx, conv, chosen, policy.team_id or conv.get("team"), loads)


def _after(user_id: str, last: str | None, ordered: list[str]) -> tuple[int, str]:
    """Round-robin order: the users after ``last`` (by id) first, then from the start."""
    return (0 if last is None or user_id > last else 1, user_id)


async def _assign(
    tx: Tx, conv: dict[str, Any], user_id: str | None, team_id: str | None, loads: _Loads
) -> None:
    previous = conv.get("assignee_id")
    values: dict[str, Any] = {"assignee_id": user_id, "team": team_id, "updated_at": utcnow()}
    if user_id is not None:
        values["last_assignee_id"] = user_id
    await tx.conn.execute(C.update().where(C.c.id == conv["id"]).values(**values))
    conv.update(values)
    if previous and previous in loads.counts and previous != user_id:
        loads.counts[previous] -= 1
    if user_id is not None and user_id != previous:
        loads.counts[user_id] = loads.counts.get(user_id, 0) + 1
