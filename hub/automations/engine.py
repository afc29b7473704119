"""The automation engine: a consumer of the event log (durable cursor, like notifications) that
runs the rules in order, the out-of-office autoresponder, and the time triggers.

Each event is handled in one transaction with the cursor's compare-and-set: the rules' actions,
their run log and the cursor commit together, so a crash neither skips nor repeats an event and
two processes never both handle one. Rules act through ``hub.actions`` as the actor
``rule:<id>`` (events name the rule in ``by``).

Loop prevention: the events a rule's actions emit are recorded with their depth
(``automation_caused``); a rule that matches an event at ``max_depth`` is logged ``stopped`` with
the reason and does nothing. Sends pass the loop guard (``hub.automations.guard``).

Time triggers: a customer message starts (or restarts) a ``no_reply`` timer per such rule; any
process claims due timers (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and runs the rule when no
agent replied since. ``snooze_ended`` fires on the hub's own wake-up of a snoozed conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import jsontext, schema
from hub.access import Actor
from hub.access.permissions import BUILTIN_ROLES
from hub.actions import SEND_ACTIONS, ActionContext, ActionExecutor, ActionResult, SendText, spawn
from hub.automations.conditions import Facts, evaluate
from hub.automations.definition import OnConversationUpdated, OnMessage, OnNoReply, RuleDefinition
from hub.automations.guard import RATE_LIMIT, may_send_automatic
from hub.automations.hours import hours_for, hours_of
from hub.channels import ChannelService
from hub.db import new_id
from hub.events import Store, Tx
from hub.logcursor import LogConsumer, LogCursor
from hub.models import Event, utcnow
from hub.records import fetch_conversation

__all__ = ["CURSOR", "AutomationEngine", "Rule", "load_rules", "rule_actor", "triggers_of"]

log = logging.getLogger("hub.automations")
CURSOR = LogCursor("automations")
WATCHED = ("conversation.created", "conversation.updated", "message.created")
R = schema.automation_rules
RUNS = schema.automation_runs
F = schema.automation_fires
CAUSED = schema.automation_caused
T = schema.automation_timers
M = schema.messages
# Whether any rule or autoresponder could act: asked for every batch, so built once.
_ACTIVE = sa.select(
    sa.or_(
        sa.exists().where(R.c.enabled.is_(True)),
        sa.exists().where(schema.business_hours.c.id.is_not(None)),
    )
)


def rule_actor(rule_id: str, name: str) -> Actor:
    """The actor a rule acts as: every permission, every channel; events name it ``rule:<id>``."""
    ident = f"rule:{rule_id}"
    return Actor(
        id=ident,
        kind="rule",
        role="automation",
        permissions=BUILTIN_ROLES["administrator"],
        all_channels=True,
        user={"name": name, "sender": {"type": "rule", "id": ident, "name": name}},
    )


@dataclass
class Rule:
    id: str
    version: int
    position: int
    definition: RuleDefinition


_PARSED: dict[tuple[str, int], RuleDefinition] = {}


async def load_rules(conn: AsyncConnection) -> list[Rule]:
    """The enabled rules, in their order (a definition that no longer validates, say a removed
    plugin's action, is skipped with a warning)."""
    rows = await conn.execute(
        sa.select(R.c.id, R.c.version, R.c.position, R.c.definition)
        .where(R.c.enabled.is_(True))
        .order_by(R.c.position, R.c.id)
    )
    out = []
    for row in rows:
        key = (row.id, row.version)
        if key not in _PARSED:
            try:
                _PARSED[key] = RuleDefinition.model_validate(row.definition)
            except ValidationError as exc:
                log.warning("rule %s v%s no longer validates and is skipped: %s", row.id, row.version, exc)
                continue
        out.append(Rule(row.id, row.version, row.position, _PARSED[key]))
    return out


def triggers_of(event: Event) -> list[tuple[str, dict[str, Any]]]:
    """The triggers an event fires: (type, details)."""
    data = event.data
    if event.type == "conversation.created":
        return [("conversation_created", {})]
    if event.type == "message.created":
        return [("message_created", {"direction": data.get("direction")})]
    if event.type == "conversation.updated":
        changed = set(data.get("changed") or ())
        out = [("conversation_updated", {"changed": sorted(changed)})]
        by = data.get("by") or {}
        if (
            by.get("type") == "system"
            and {"status", "snoozed_until"} <= changed
            and data.get("status") == "open"
        ):
            out.append(("snooze_ended", {}))
        return out
    return []


def trigger_matches(rule: RuleDefinition, trigger: str, details: dict[str, Any]) -> bool:
    t = rule.trigger
    if t.type != trigger:
        return False
    if isinstance(t, OnMessage):
        return t.direction == "any" or t.direction == details.get("direction")
    if isinstance(t, OnConversationUpdated) and t.changed:
        return bool(set(t.changed) & set(details.get("changed") or ()))
    return True


def would_do(rule: RuleDefinition) -> list[dict[str, Any]]:
    """The actions as a report of what would be done (shadow mode, dry runs, backtests)."""
    return [
        {"index": i, "type": a.type, "status": "would_run", **_summary(a.model_dump(mode="json"))}
        for i, a in enumerate(rule.actions)
    ]


def _summary(action: dict[str, Any]) -> dict[str, Any]:
    action.pop("type", None)
    if "secret" in action:
        action["secret"] = "****************"
    return {"detail": json.dumps(action, separators=(",", ":"))[:500]}


@dataclass
class Outcome:
    """What a handled event leaves for after the commit."""

    sent: bool = False
    later: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class AutomationEngine(LogConsumer):
    task_name = "hub-automations"
    cursor = CURSOR
    watched = WATCHED
    log = log

    def __init__(
        self,
        store: Store,
        executor: ActionExecutor,
        channels: ChannelService,
        *,
        max_depth: int = 3,
        messages_per_hour: int = RATE_LIMIT,
        interval: float = 1.0,
        timer_interval: float = 1.0,
        batch_size: int = 100,
    ) -> None:
        super().__init__(store, batch_size=batch_size, interval=interval)
        self.executor = executor
        self.channels = channels
        self.max_depth = max_depth
        self.messages_per_hour = messages_per_hour
        self.timer_interval = timer_interval
        self._timers: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._timers = asyncio.create_task(self._timer_loop(), name="hub-automation-timers")

    async def stop(self) -> None:
        task, self._timers = self._timers, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().stop()

    async def _move(self, tx: Tx, start: int, to: int) -> bool:
        return await self.move(tx.conn, start, to)

    async def step(self) -> int:
        """Handle the next events, one transaction each; how many were read."""
        batch = await self.next_batch()
        if batch is None:
            return 0
        start = batch.start
        if not await self._active():
            # No rule and no autoresponder: nothing to evaluate, move past the whole batch at once.
            return len(batch.rows) if await self._skip(start, batch.last) else 0
        for seq, type_, channel_id, conversation_id, text, at in batch.rows:
            if not conversation_id:
                continue  # moved past together with the next event handled
            event = Event.model_construct(
                seq=seq,
                type=type_,
                channel_id=channel_id,
                conversation_id=conversation_id,
                data=jsontext.loads(text),
                created_at=at,
            )
            if not await self._one(start, event):
                return 0  # another process moved the cursor: read again from where it is
            start = seq
        if batch.last > start and not await self._skip(start, batch.last):
            return 0
        return len(batch.rows)

    async def _active(self) -> bool:
        """Whether any rule or autoresponder could act (else events are passed over cheaply)."""
        async with self.store.db.read() as conn:
            return bool(await conn.scalar(_ACTIVE))

    async def _skip(self, start: int, to: int) -> bool:
        async with self.store.tx() as tx:
            return await self._move(tx, start, to)

    async def _one(self, start: int, event: Event) -> bool:
        outcome = Outcome()
        try:
            async with self.store.tx() as tx:
                if not await self._move(tx, start, event.seq):
                    return False
                await self.handle(tx, event, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug must not stop every later event: skip this one, with the reason in the log.
            log.exception("automations: event %s could not be handled; it is skipped", event.seq)
            outcome = Outcome()
            async with self.store.tx() as tx:
                if not await self._move(tx, start, event.seq):
                    return False
                await self._record(
                    tx.conn,
                    rule_id="-",
                    version=0,
                    event=event,
                    trigger=event.type,
                    depth=0,
                    mode="live",
                    outcome="error",
                    reason=f"{type(exc).__name__}: {exc}"[:2000],
                )
        self._after(outcome)
        return True

    def _after(self, outcome: Outcome) -> None:
        if outcome.sent and self.executor.on_sent is not None:
            self.executor.on_sent()
        for work in outcome.later:
            spawn(work())

    # ---- one event ------------------------------------------------------------------------------

    async def handle(self, tx: Tx, event: Event, outcome: Outcome) -> None:
        conv_id = event.conversation_id
        assert conv_id is not None
        rules = await load_rules(tx.conn)
        message = event.data if event.type == "message.created" else None
        if message is not None and message.get("direction") == "inbound":
            await self._start_timers(tx, rules, conv_id, event.created_at)
        conv = await fetch_conversation(tx.conn, conv_id)
        if conv is None:
            return
        depth = int(await tx.conn.scalar(sa.select(CAUSED.c.depth).where(CAUSED.c.seq == event.seq)) or 0)
        stopped = False
        for trigger, details in triggers_of(event):
            for rule in rules:
                if not trigger_matches(rule.definition, trigger, details):
                    continue
                facts = await self._facts(tx.conn, event.created_at, conv_id, message)
                if await self.apply_rule(tx, rule, trigger, facts, event, depth, outcome):
                    stopped = True
                    break
            if stopped:
                break
        if message is not None and message.get("direction") == "inbound" and not stopped:
            facts = await self._facts(tx.conn, event.created_at, conv_id, message)
            await self.out_of_office(tx, facts, event, depth, outcome)

    async def _facts(
        self, conn: AsyncConnection, at: datetime, conv_id: str, message: dict[str, Any] | None
    ) -> Facts:
        conv = await fetch_conversation(conn, conv_id)
        row = self.channels.rows.get((conv or {}).get("channel_id", ""))
        return Facts(conn, at, conv, message, row["type"] if row else None)

    async def apply_rule(
        self,
        tx: Tx,
        rule: Rule,
        trigger: str,
        facts: Facts,
        event: Event | None,
        depth: int,
        outcome: Outcome,
    ) -> bool:
        """Evaluate one rule and act on it (or log why not); whether later rules must not run."""
        conv = facts.conversation or {}
        conv_id = conv["id"]
        definition = rule.definition
        conditions: list[dict[str, Any]] = []
        matched = await evaluate(definition.conditions, facts, conditions)

        async def record(outcome_: str, reason: str | None, actions: list[dict[str, Any]]) -> None:
            await self._record(
                tx.conn,
                rule_id=rule.id,
                version=rule.version,
                event=event,
                trigger=trigger,
                depth=depth,
                mode=definition.mode,
                outcome=outcome_,
                reason=reason,
                conversation=conv,
                conditions=conditions,
                actions=actions,
            )

        if not matched:
            await record("not_matched", "the conditions are not met", [])
            return False
        if depth >= self.max_depth:
            await record(
                "stopped",
                f"depth limit: this event was caused by rule actions {depth} levels deep (the limit is "
                f"{self.max_depth}), so the rule's actions were not applied (a loop is likely)",
                would_do(definition),
            )
            return False
        now = utcnow()
        fire = (
            (
                await tx.conn.execute(
                    sa.select(F).where(F.c.rule_id == rule.id, F.c.conversation_id == conv_id)
                )
            )
            .mappings()
            .first()
        )
        if fire is not None and definition.once_per_conversation:
            await record("skipped", "at most once per conversation: it already acted on this one", [])
            return False
        if fire is not None and definition.cooldown_minutes:
            ready = fire["last_at"] + timedelta(minutes=definition.cooldown_minutes)
            if ready > now:
                await record("skipped", f"cooldown: it acted on this conversation at {fire['last_at']}", [])
                return False
        if definition.mode == "shadow":
            await record("shadow", "shadow mode: logged only, nothing done", would_do(definition))
            return False
        answering = facts.message
        ctx = ActionContext(tx, rule_actor(rule.id, definition.name), conv_id)
        first = len(tx.events)
        results: list[ActionResult] = []
        for index, action in enumerate(definition.actions):
            if action.type in SEND_ACTIONS:
                verdict = await may_send_automatic(
                    tx.conn, conv_id, answering=answering, limit=self.messages_per_hour
                )
                if not verdict.allowed:
                    results.append(ActionResult(index, action.type, "skipped", verdict.reason))
                    continue
            results.append(await self.executor.apply(ctx, action, index))
        await self._caused(tx, first, depth + 1, rule.id)
        await self._fired(tx, rule.id, conv_id, fire, now)
        done = sum(r.status == "done" for r in results)
        result = "applied" if done == len(results) else ("partial" if done else "blocked")
        reasons = "; ".join(f"{r.type}: {r.detail}" for r in results if r.status != "done" and r.detail)
        await record(result, reasons or None, [r.public() for r in results])
        outcome.sent = outcome.sent or bool(ctx.sent)
        outcome.later.extend(ctx.after_commit)
        return definition.stop_processing

    async def out_of_office(self, tx: Tx, facts: Facts, event: Event, depth: int, outcome: Outcome) -> None:
        """The built-in autoresponder: outside the conversation's business hours, once per
        conversation, never to an auto-reply or a bot (the loop guard)."""
        conv = facts.conversation or {}
        row = await hours_for(tx.conn, conv)
        if row is None or not (row["autoresponder"] or {}).get("enabled"):
            return
        rule_id = f"ooo:{row['id']}"
        is_open = hours_of(row).is_open(facts.at)
        conditions = [
            {
                "path": "0",
                "field": "business_hours.open",
                "op": "eq",
                "value": False,
                "seen": is_open,
                "result": not is_open,
                "hours": row["id"],
            }
        ]

        async def record(outcome_: str, reason: str | None, actions: list[dict[str, Any]]) -> None:
            await self._record(
                tx.conn,
                rule_id=rule_id,
                version=1,
                event=event,
                trigger="message_created",
                depth=depth,
                mode="live",
                outcome=outcome_,
                reason=reason,
                conversation=conv,
                conditions=conditions,
                actions=actions,
            )

        if is_open:
            await record("not_matched", "within business hours", [])
            return
        if depth >= self.max_depth:
            await record("stopped", f"depth limit {self.max_depth} reached", [])
            return
        fire = await tx.conn.scalar(
            sa.select(F.c.count).where(F.c.rule_id == rule_id, F.c.conversation_id == conv["id"])
        )
        if fire:
            await record("skipped", "the out-of-office reply goes once per conversation", [])
            return
        verdict = await may_send_automatic(
            tx.conn, conv["id"], answering=facts.message, limit=self.messages_per_hour
        )
        if not verdict.allowed:
            await record("blocked", verdict.reason, [])
            return
        name = f"Out-of-office reply ({row['name']})"
        ctx = ActionContext(tx, rule_actor(rule_id, name), conv["id"])
        first = len(tx.events)
        action = SendText(type="send_text", text=row["autoresponder"]["text"])
        result = await self.executor.apply(ctx, action, 0)
        await self._caused(tx, first, depth + 1, rule_id)
        await self._fired(tx, rule_id, conv["id"], None, utcnow())
        await record("applied" if result.status == "done" else "blocked", result.detail, [result.public()])
        outcome.sent = outcome.sent or bool(ctx.sent)

    # ---- bookkeeping ----------------------------------------------------------------------------

    async def _caused(self, tx: Tx, first: int, depth: int, rule_id: str) -> None:
        caused = [{"seq": e.seq, "depth": depth, "rule_id": rule_id} for e in tx.events[first:]]
        if caused:
            await tx.conn.execute(CAUSED.insert(), caused)

    async def _fired(self, tx: Tx, rule_id: str, conv_id: str, fire: Any, now: datetime) -> None:
        if fire is None:
            await tx.conn.execute(
                self.store.db.insert(F)
                .values(rule_id=rule_id, conversation_id=conv_id, count=1, last_at=now)
                .on_conflict_do_nothing(index_elements=["rule_id", "conversation_id"])
            )
        else:
            await tx.conn.execute(
                F.update()
                .where(F.c.rule_id == rule_id, F.c.conversation_id == conv_id)
                .values(count=F.c.count + 1, last_at=now)
            )

    async def _record(
        self,
        conn: AsyncConnection,
        *,
        rule_id: str,
        version: int,
        event: Event | None,
        trigger: str,
        depth: int,
        mode: str,
        outcome: str,
        reason: str | None,
        conversation: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None,
        actions: list[dict[str, Any]] | None = None,
    ) -> None:
        conv = conversation or {}
        await conn.execute(
            RUNS.insert().values(
                id=new_id("run_"),
                rule_id=rule_id,
                rule_version=version,
                conversation_id=conv.get("id") or (event.conversation_id if event else None),
                channel_id=conv.get("channel_id") or (event.channel_id if event else None),
                event_seq=event.seq if event else None,
                trigger=trigger,
                depth=depth,
                mode=mode,
                outcome=outcome,
                reason=reason,
                conditions=conditions or [],
                actions=actions or [],
                created_at=utcnow(),
            )
        )

    # ---- time triggers --------------------------------------------------------------------------

    async def _start_timers(self, tx: Tx, rules: list[Rule], conv_id: str, at: datetime) -> None:
        for rule in rules:
            trigger = rule.definition.trigger
            if not isinstance(trigger, OnNoReply):
                continue
            due = at + timedelta(minutes=trigger.minutes)
            await tx.conn.execute(
                self.store.db.insert(T)
                .values(rule_id=rule.id, conversation_id=conv_id, due_at=due, since=at)
                .on_conflict_do_update(
                    index_elements=["rule_id", "conversation_id"], set_={"due_at": due, "since": at}
                )
            )

    async def _timer_loop(self) -> None:
        while True:
            try:
                handled = await self.run_timers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automations: due timers failed; trying again")
                handled = 0
            if not handled:
                await asyncio.sleep(self.timer_interval)

    async def run_timers(self, now: datetime | None = None, limit: int = 20) -> int:
        """Claim and run due time triggers (each process may: claimed rows are skipped by the
        others); how many were handled."""
        now = now or utcnow()
        outcome = Outcome()
        async with self.store.tx() as tx:
            q = sa.select(T).where(T.c.due_at <= now).order_by(T.c.due_at).limit(limit)
            if not self.store.db.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            due = (await tx.conn.execute(q)).mappings().all()
            if not due:
                return 0
            rules = {r.id: r for r in await load_rules(tx.conn)}
            for timer in due:
                await tx.conn.execute(
                    T.delete().where(
                        T.c.rule_id == timer["rule_id"], T.c.conversation_id == timer["conversation_id"]
                    )
                )
                rule = rules.get(timer["rule_id"])
                if rule is None or rule.definition.trigger.type != "no_reply":
                    continue
                replied = await tx.conn.scalar(
                    sa.select(sa.func.count()).where(
                        M.c.conversation_id == timer["conversation_id"],
                        M.c.direction == "outbound",
                        M.c.created_at > timer["since"],
                        M.c.sender["type"].as_string() == "user",
                    )
                )
                if replied:
                    continue
                facts = await self._facts(tx.conn, now, timer["conversation_id"], None)
                if facts.conversation is None:
                    continue
                await self.apply_rule(tx, rule, "no_reply", facts, None, 0, outcome)
        self._after(outcome)
        return len(due)
