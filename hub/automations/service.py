"""Rules, their versions and run log, business hours, dry runs and backtests: what the admin API
calls. Every method needs ``automations.manage`` (checked by the routes)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import Actor
from hub.automations.conditions import Facts, evaluate
from hub.automations.definition import RuleDefinition
from hub.automations.engine import load_rules, trigger_matches, triggers_of, would_do
from hub.automations.hours import Autoresponder, Hours
from hub.channels import ChannelService
from hub.db import new_id
from hub.events import Store
from hub.models import Event, utcnow
from hub.records import fetch_conversation
from hub.services.config import ConfigRegistry, config_changed
from hub.services.errors import Conflict, Invalid, NotFound

__all__ = ["MASK", "AutomationService"]

R = schema.automation_rules
V = schema.automation_rule_versions
RUNS = schema.automation_runs
BH = schema.business_hours
E = schema.events
MASK = "****************"


def _masked(definition: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(definition))
    for action in out.get("actions", []):
        if action.get("type") == "call_webhook":
            action["secret"] = MASK
    return out


def _rule(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "position": row["position"],
        "enabled": row["enabled"],
        "mode": row["mode"],
        "version": row["version"],
        "definition": _masked(row["definition"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _run(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "rule_id": row["rule_id"],
        "rule_version": row["rule_version"],
        "conversation_id": row["conversation_id"],
        "channel_id": row["channel_id"],
        "event_seq": row["event_seq"],
        "trigger": row["trigger"],
        "depth": row["depth"],
        "mode": row["mode"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "conditions": row["conditions"],
        "actions": row["actions"],
        "created_at": row["created_at"].isoformat(),
    }


def _hours(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "scope_type": row["scope_type"],
        "scope_id": row["scope_id"],
        "timezone": row["timezone"],
        "weekly": row["weekly"],
        "holidays": row["holidays"],
        "autoresponder": row["autoresponder"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _schedule(row: Any) -> dict[str, Any]:
    """Business hours as every reader sees them (``GET /api/v1/business-hours``): no reply text."""
    return {k: v for k, v in _hours(row).items() if k not in ("autoresponder", "created_at")}


async def _load_schedules(conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
    """The ``business_hours`` configuration resource: those of teams (every reader sees the
    teams), and those of the channels the reader serves."""
    rows = await conn.execute(sa.select(BH).order_by(BH.c.name, BH.c.id))
    return {
        "business_hours": [
            _schedule(r)
            for r in rows.mappings()
            if r["scope_type"] != "channel" or actor.sees_channel(r["scope_id"])
        ]
    }


class AutomationService:
    def __init__(self, store: Store, channels: ChannelService, config: ConfigRegistry | None = None) -> None:
        self.store = store
        self.channels = channels
        self.config = config
        if config is not None:
            # The schedules, for the app to say when a channel or a team answers; a channel's only
            # to those who serve it (per reader, like ``channels``). Not the out-of-office text.
            config.register(
                "business_hours",
                _load_schedules,
                per_user=True,
                description="business hours of your channels and of teams",
            )

    # ---- rules ----------------------------------------------------------------------------------

    async def list_rules(self) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            rows = await conn.execute(sa.select(R).order_by(R.c.position, R.c.id))
            return [_rule(r) for r in rows.mappings()]

    async def get_rule(self, rule_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            return _rule(await self._fetch(conn, rule_id))

    async def _fetch(self, conn: AsyncConnection, rule_id: str) -> Any:
        row = (await conn.execute(sa.select(R).where(R.c.id == rule_id))).mappings().first()
        if row is None:
            raise NotFound(f"rule {rule_id} does not exist")
        return row

    async def create_rule(
        self, actor: Actor, definition: RuleDefinition, position: int | None
    ) -> dict[str, Any]:
        now = utcnow()
        body = definition.model_dump(mode="json")
        async with self.store.tx() as tx:
            if position is None:
                position = int(await tx.conn.scalar(sa.select(sa.func.max(R.c.position))) or 0) + 1
            row = {
                "id": new_id("ar_"),
                "name": definition.name,
                "position": position,
                "enabled": definition.enabled,
                "mode": definition.mode,
                "version": 1,
                "definition": body,
                "created_at": now,
                "updated_at": now,
            }
            await tx.conn.execute(R.insert().values(**row))
            await self._version(tx.conn, actor, row)
        return _rule(row)

    async def update_rule(
        self, actor: Actor, rule_id: str, changes: dict[str, Any], position: int | None
    ) -> dict[str, Any]:
        """An edit makes a new version (the run log names the version that ran); a move alone
        (``position``) does not."""
        async with self.store.tx() as tx:
            row = dict(await self._fetch(tx.conn, rule_id))
            values: dict[str, Any] = {}
            if changes:
                merged = {**row["definition"], **changes}
                self._keep_secrets(row["definition"], merged)
                definition = RuleDefinition.model_validate(merged)
                body = definition.model_dump(mode="json")
                if body != row["definition"]:
                    values = {
                        "definition": body,
                        "name": definition.name,
                        "enabled": definition.enabled,
                        "mode": definition.mode,
                        "version": row["version"] + 1,
                    }
            if position is not None and position != row["position"]:
                values["position"] = position
            if values:
                values["updated_at"] = utcnow()
                await tx.conn.execute(R.update().where(R.c.id == rule_id).values(**values))
                row.update(values)
                if "definition" in values:
                    await self._version(tx.conn, actor, row)
        return _rule(row)

    def _keep_secrets(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """A webhook action sent back with the masked secret keeps the secret it had."""
        old = [a for a in before.get("actions", []) if a.get("type") == "call_webhook"]
        for action in after.get("actions", []) if isinstance(after.get("actions"), list) else []:
            if (
                isinstance(action, dict)
                and action.get("type") == "call_webhook"
                and action.get("secret") == MASK
            ):
                same = next((a for a in old if a.get("url") == action.get("url")), None)
                if same is None:
                    raise Invalid("actions", "a new webhook needs its secret (the masked one is only kept)")
                action["secret"] = same["secret"]

    async def _version(self, conn: AsyncConnection, actor: Actor, row: dict[str, Any]) -> None:
        await conn.execute(
            V.insert().values(
                rule_id=row["id"],
                version=row["version"],
                name=row["name"],
                definition=row["definition"],
                created_by=actor.ref,
                created_at=utcnow(),
            )
        )

    async def delete_rule(self, rule_id: str) -> None:
        """The rule goes; its versions and run log stay (they explain what it did)."""
        async with self.store.tx() as tx:
            await self._fetch(tx.conn, rule_id)
            await tx.conn.execute(R.delete().where(R.c.id == rule_id))
            await tx.conn.execute(
                schema.automation_timers.delete().where(schema.automation_timers.c.rule_id == rule_id)
            )

    async def reorder(self, rule_ids: list[str]) -> list[dict[str, Any]]:
        """The rules named first, in that order; the others after them, in the order they had."""
        async with self.store.tx() as tx:
            current = list(
                (await tx.conn.execute(sa.select(R.c.id).order_by(R.c.position, R.c.id))).scalars()
            )
            missing = [r for r in rule_ids if r not in set(current)]
            if missing:
                raise NotFound(f"rule {missing[0]} does not exist")
            named = set(rule_ids)
            for position, rule_id in enumerate([*rule_ids, *(r for r in current if r not in named)], start=1):
                await tx.conn.execute(R.update().where(R.c.id == rule_id).values(position=position))
        return await self.list_rules()

    async def versions(self, rule_id: str) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            rows = (
                (await conn.execute(sa.select(V).where(V.c.rule_id == rule_id).order_by(V.c.version.desc())))
                .mappings()
                .all()
            )
        if not rows:
            raise NotFound(f"rule {rule_id} has no versions")
        return [
            {
                "rule_id": r["rule_id"],
                "version": r["version"],
                "name": r["name"],
                "definition": _masked(r["definition"]),
                "created_by": r["created_by"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]

    # ---- run log --------------------------------------------------------------------------------

    async def runs(
        self,
        *,
        rule_id: str | None = None,
        conversation_id: str | None = None,
        outcome: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """Newest first; ``before`` (a run id) pages on."""
        q = sa.select(RUNS)
        if rule_id:
            q = q.where(RUNS.c.rule_id == rule_id)
        if conversation_id:
            q = q.where(RUNS.c.conversation_id == conversation_id)
        if outcome:
            q = q.where(RUNS.c.outcome == outcome)
        if before:
            q = q.where(RUNS.c.id < before)
        async with self.store.db.read() as conn:
            rows = (await conn.execute(q.order_by(RUNS.c.id.desc()).limit(limit + 1))).mappings().all()
        runs = [_run(r) for r in rows[:limit]]
        return {"runs": runs, "next_before": runs[-1]["id"] if len(rows) > limit else None}

    # ---- dry run and backtest -------------------------------------------------------------------

    async def definition_of(self, rule_id: str | None, draft: RuleDefinition | None) -> RuleDefinition:
        if draft is not None:
            return draft
        if rule_id is None:
            raise Invalid("rule", "give a draft rule or a rule_id")
        async with self.store.db.read() as conn:
            row = await self._fetch(conn, rule_id)
        return RuleDefinition.model_validate(row["definition"])

    async def _evaluate(
        self, conn: AsyncConnection, definition: RuleDefinition, event: Event
    ) -> dict[str, Any] | None:
        """What the rule would do for ``event`` (read only); None when its trigger does not fire."""
        fired = [t for t, d in triggers_of(event) if trigger_matches(definition, t, d)]
        if not fired or not event.conversation_id:
            return None
        conv = await fetch_conversation(conn, event.conversation_id)
        if conv is None:
            return None
        row = self.channels.rows.get(conv["channel_id"])
        message = event.data if event.type == "message.created" else None
        facts = Facts(conn, event.created_at, conv, message, row["type"] if row else None)
        conditions: list[dict[str, Any]] = []
        matched = await evaluate(definition.conditions, facts, conditions)
        return {
            "event_seq": event.seq,
            "event_type": event.type,
            "trigger": fired[0],
            "conversation_id": conv["id"],
            "matched": matched,
            "conditions": conditions,
            "would_do": would_do(definition) if matched else [],
        }

    async def dry_run(self, definition: RuleDefinition, event_seq: int) -> dict[str, Any]:
        """Evaluate against one stored event; nothing is done or logged."""
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(E).where(E.c.seq == event_seq))).mappings().first()
            if row is None:
                raise NotFound(f"event {event_seq} is not in the event log (pruned, or never was)")
            event = _event(row)
            found = await self._evaluate(conn, definition, event)
        if found is None:
            return {
                "event_seq": event_seq,
                "event_type": event.type,
                "trigger": None,
                "conversation_id": event.conversation_id,
                "matched": False,
                "conditions": [],
                "would_do": [],
                "reason": f"the trigger {definition.trigger.type} does not fire on this event",
            }
        return {**found, "reason": None}

    async def backtest(self, definition: RuleDefinition, days: float, max_events: int) -> dict[str, Any]:
        """Evaluate against the event log of the last ``days`` (read only: nothing is done or
        logged). Conditions on the conversation see it as it is now; the message, the time (for
        business hours) and the trigger are the event's own."""
        since = utcnow() - timedelta(days=days)
        wanted = ["conversation.created", "conversation.updated", "message.created"]
        matches: list[dict[str, Any]] = []
        examined = evaluated = 0
        async with self.store.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(E)
                        .where(
                            E.c.created_at >= since, E.c.type.in_(wanted), E.c.conversation_id.is_not(None)
                        )
                        .order_by(E.c.seq)
                        .limit(max_events)
                    )
                )
                .mappings()
                .all()
            )
            for row in rows:
                examined += 1
                found = await self._evaluate(conn, definition, _event(row))
                if found is None:
                    continue
                evaluated += 1
                if found["matched"]:
                    matches.append(found)
        conversations = sorted({m["conversation_id"] for m in matches})
        return {
            "days": days,
            "events_examined": examined,
            "events_evaluated": evaluated,
            "truncated": len(rows) >= max_events,
            "matches": matches[:500],
            "match_count": len(matches),
            "conversations": conversations,
        }

    # ---- business hours -------------------------------------------------------------------------

    async def list_hours(self) -> list[dict[str, Any]]:
        async with self.store.db.read() as conn:
            rows = await conn.execute(sa.select(BH).order_by(BH.c.name, BH.c.id))
            return [_hours(r) for r in rows.mappings()]

    async def _scope_known(self, conn: AsyncConnection, scope_type: str, scope_id: str) -> None:
        if scope_type == "channel":
            if scope_id not in self.channels.rows:
                raise NotFound(f"channel {scope_id} does not exist")
        elif await conn.scalar(sa.select(schema.teams.c.id).where(schema.teams.c.id == scope_id)) is None:
            raise NotFound(f"team {scope_id} does not exist")

    async def create_hours(
        self,
        name: str,
        scope_type: str,
        scope_id: str,
        hours: Hours,
        autoresponder: Autoresponder,
        *,
        by: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        row = {
            "id": new_id("bh_"),
            "name": name,
            "scope_type": scope_type,
            "scope_id": scope_id,
            "timezone": hours.timezone,
            "weekly": hours.model_dump(mode="json")["weekly"],
            "holidays": [d.isoformat() for d in hours.holidays],
            "autoresponder": autoresponder.model_dump(mode="json"),
            "created_at": now,
            "updated_at": now,
        }
        async with self.store.tx() as tx:
            await self._scope_known(tx.conn, scope_type, scope_id)
            taken = await tx.conn.scalar(
                sa.select(BH.c.id).where(BH.c.scope_type == scope_type, BH.c.scope_id == scope_id)
            )
            if taken:
                raise Conflict(f"the {scope_type} {scope_id} already has business hours ({taken})")
            await tx.conn.execute(BH.insert().values(**row))
            await config_changed(self.config, tx, "business_hours", by=by)
        return _hours(row)

    async def update_hours(
        self, hours_id: str, changes: dict[str, Any], *, by: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        async with self.store.tx() as tx:
            row = (await tx.conn.execute(sa.select(BH).where(BH.c.id == hours_id))).mappings().first()
            if row is None:
                raise NotFound(f"business hours {hours_id} do not exist")
            current = dict(row)
            merged = {k: changes.get(k, current[k]) for k in ("timezone", "weekly", "holidays")}
            hours = Hours.model_validate(merged)
            auto = Autoresponder.model_validate(changes.get("autoresponder", current["autoresponder"]))
            values = {
                "name": changes.get("name", current["name"]),
                "timezone": hours.timezone,
                "weekly": hours.model_dump(mode="json")["weekly"],
                "holidays": [d.isoformat() for d in hours.holidays],
                "autoresponder": auto.model_dump(mode="json"),
                "updated_at": utcnow(),
            }
            await tx.conn.execute(BH.update().where(BH.c.id == hours_id).values(**values))
            current.update(values)
            await config_changed(self.config, tx, "business_hours", by=by)
        return _hours(current)

    async def delete_hours(self, hours_id: str, *, by: dict[str, Any] | None = None) -> None:
        async with self.store.tx() as tx:
            gone = await tx.conn.execute(BH.delete().where(BH.c.id == hours_id))
            if not gone.rowcount:
                raise NotFound(f"business hours {hours_id} do not exist")
            await config_changed(self.config, tx, "business_hours", by=by)

    async def rules_in_order(self) -> list[str]:
        async with self.store.db.read() as conn:
            return [r.id for r in await load_rules(conn)]


def _event(row: Any) -> Event:
    return Event.model_construct(
        seq=row["seq"],
        type=row["type"],
        channel_id=row["channel_id"],
        conversation_id=row["conversation_id"],
        data=json.loads(row["data"]),
        created_at=row["created_at"],
    )
