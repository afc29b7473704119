"""Channel instances: stored settings (secrets sealed) turned into live ``Channel`` objects.

The admin API and the config file write channel rows through ``ChannelService``; each change
rebuilds that channel's instance in this process and emits ``channel.updated``. Another process
sharing the database sees that event through its feed (``hub.fanout``, woken by ``NOTIFY``) and
re-reads the row (``follow``): settings, enabling and disabling, and send pauses reach every
process within milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr, ValidationError

from hub import schema
from hub.channel import Channel, ChannelSettings, Health, HealthState
from hub.errors import ConfigError
from hub.events import Frame, Store
from hub.models import utcnow
from hub.plugins import ChannelRegistry
from hub.redact import SecretRedactor
from hub.security import SecretBox
from hub.services.config import announce
from hub.services.errors import Conflict, ServiceError

__all__ = ["ChannelContextImpl", "ChannelService", "SettingsInvalid", "mask_settings"]

log = logging.getLogger("hub.channels")
MASK = "********"
_CHANNEL_OF = sa.select(schema.conversations.c.channel_id).where(
    schema.conversations.c.id == sa.bindparam("id")
)
_MAX_CACHED_CONVERSATIONS = 100_000
# The columns an instance is built from; a change to any other (health, send_paused) keeps it.
_BUILT_FROM = ("type", "name", "enabled", "settings", "secrets", "source")


class SettingsInvalid(ServiceError):
    """Settings refused by the plugin's model; ``errors`` carry field paths for a 422."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("the channel settings are invalid", errors)
        self.errors = errors


@dataclass
class ChannelContextImpl:
    """What a channel instance borrows from the hub (satisfies ``hub.channel.ChannelContext``)."""

    channel_id: str
    http: httpx.AsyncClient
    public_url: str
    service: ChannelService
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.channel"))

    def set_health(self, state: HealthState, error: str | None = None) -> None:
        self.service.report_health(self.channel_id, state, error)


def mask_settings(cls: type[ChannelSettings], values: dict[str, Any]) -> dict[str, Any]:
    """Settings for an API answer: every secret replaced by a mask (or None when unset)."""
    out = dict(values)
    for name in cls.secret_fields():
        out[name] = MASK if out.get(name) else None
    return out


def _validation_errors(exc: ValidationError, prefix: str = "settings") -> list[dict[str, Any]]:
    return [
        {"field": ".".join([prefix, *[str(p) for p in e["loc"]]]), "message": e["msg"]} for e in exc.errors()
    ]


class ChannelService:
    def __init__(
        self,
        store: Store,
        registry: ChannelRegistry,
        box: SecretBox,
        http: httpx.AsyncClient,
        public_url: str,
        redactor: SecretRedactor | None = None,
    ) -> None:
        self.store = store
        # Every channel's secrets are masked in log lines, enabled or not (see hub.redact).
        self.redactor = redactor if redactor is not None else SecretRedactor()
        self.registry = registry
        self.box = box
        self.http = http
        self.public_url = public_url
        self.instances: dict[str, Channel] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.on_change: list[Callable[[], None]] = []
        """Called after an instance is built, rebuilt or dropped (the ingest loops follow)."""
        self._health_tasks: set[asyncio.Task[Any]] = set()
        # A conversation never moves to another channel and is never deleted, so an entry here
        # never goes stale; it only saves the read on every agent's send.
        self._conversation_channel: dict[str, str] = {}

    async def channel_of(self, conversation_id: str) -> str | None:
        """The id of the channel a conversation belongs to, or None when there is no such conversation."""
        cached = self._conversation_channel.get(conversation_id)
        if cached is not None:
            return cached
        async with self.store.db.read() as conn:
            channel_id = await conn.scalar(_CHANNEL_OF, {"id": conversation_id})
        if channel_id is not None:
            if len(self._conversation_channel) >= _MAX_CACHED_CONVERSATIONS:
                del self._conversation_channel[next(iter(self._conversation_channel))]
            self._conversation_channel[conversation_id] = channel_id
        return channel_id

    # ---- other processes' changes -----------------------------------------------------------

    def follow(self, frames: list[Frame]) -> None:
        """Feed observer (``Feed.on_remote``): another process changed these channels."""
        changed = {f.channel_id for f in frames if f.type == "channel.updated" and f.channel_id}
        for channel_id in changed:
            task = asyncio.get_running_loop().create_task(self.reload(channel_id))
            self._health_tasks.add(task)
            task.add_done_callback(self._health_tasks.discard)

    async def reload(self, channel_id: str) -> None:
        """Re-read one channel's row: rebuild its instance when what it is built from changed, or
        just take the new health and pause; forget it when it was deleted."""
        async with self.store.db.read() as conn:
            found = (
                (await conn.execute(sa.select(schema.channels).where(schema.channels.c.id == channel_id)))
                .mappings()
                .first()
            )
        if found is None:
            if channel_id in self.rows:
                self.forget(channel_id)
            return
        row = dict(found)
        prior = self.rows.get(channel_id)
        if prior is not None and all(prior.get(k) == row.get(k) for k in _BUILT_FROM):
            prior.update(row)  # health, send_paused: the instance stays as it is
            return
        try:
            self._activate(row)
        except Exception as exc:
            log.warning("channel %r: its %r plugin could not start it: %s", channel_id, row["type"], exc)

    # ---- settings ---------------------------------------------------------------------------

    def validate_settings(
        self, type_name: str, incoming: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> ChannelSettings:
        """Validate what an admin wrote; a secret left out or masked keeps its stored value."""
        cls = self.registry.get(type_name)
        if cls is None:
            raise SettingsInvalid([{"field": "type", "message": f"unknown channel type {type_name!r}"}])
        merged = dict(previous or {})
        for key, value in incoming.items():
            if key in cls.Settings.secret_fields() and value in (MASK, None) and key in merged:
                continue
            merged[key] = value
        try:
            return cls.Settings.model_validate(merged)
        except ValidationError as exc:
            raise SettingsInvalid(_validation_errors(exc)) from None

    @staticmethod
    def reveal(settings: ChannelSettings) -> dict[str, Any]:
        """Every value, secrets included (for comparisons in memory only; never log or return it)."""
        return {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in settings.model_dump(mode="python").items()
        }

    def split(self, settings: ChannelSettings) -> tuple[dict[str, Any], str | None]:
        """(plain settings, sealed secrets) for storage."""
        secret_names = set(type(settings).secret_fields())
        plain: dict[str, Any] = {}
        secrets: dict[str, Any] = {}
        for name, value in settings.model_dump(mode="python").items():
            if name in secret_names:
                if value is not None:
                    secrets[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
            else:
                plain[name] = value
        return _jsonable(plain), (self.box.seal(secrets) if secrets else None)

    def full_settings(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**(row["settings"] or {}), **self.box.open(row["secrets"])}

    # ---- persistence ------------------------------------------------------------------------

    async def upsert(
        self,
        channel_id: str,
        type_name: str,
        name: str,
        enabled: bool,
        settings: dict[str, Any],
        *,
        source: str,
        create_only: bool = False,
    ) -> dict[str, Any]:
        """Create or replace a channel row (validated, secrets sealed) and publish it.

        Raises ``SettingsInvalid`` for settings the plugin refuses and ``Conflict`` for an id taken
        (``create_only``) or a change of type.
        """
        CH = schema.channels
        async with self.store.tx() as tx:
            prior = (await tx.conn.execute(sa.select(CH).where(CH.c.id == channel_id))).mappings().first()
            if prior is not None and create_only:
                raise Conflict(f"channel {channel_id!r} already exists")
            if prior is not None and prior["type"] != type_name:
                raise Conflict(
                    f"channel {channel_id!r} is of type {prior['type']!r}; delete it to change its type"
                )
            previous = self.full_settings(dict(prior)) if prior is not None else None
            validated = self.validate_settings(type_name, settings, previous)
            plain, sealed = self.split(validated)
            now = utcnow()
            values = {
                "type": type_name,
                "name": name,
                "enabled": enabled,
                "settings": plain,
                "secrets": sealed,
                "source": source,
                "updated_at": now,
            }
            if prior is None:
                await tx.conn.execute(
                    CH.insert().values(
                        id=channel_id,
                        health=Health().model_dump(mode="json"),
                        send_paused=False,
                        created_at=now,
                        **values,
                    )
                )
            else:
                # New credentials end an auth pause: sending resumes with the queue intact.
                # Compare values, not ciphertexts: sealing the same secrets twice gives new bytes.
                credentials_changed = self.reveal(validated) != self.reveal(
                    self.validate_settings(type_name, {}, previous)
                )
                if prior["send_paused"] and credentials_changed:
                    values["send_paused"] = False
                    values["health"] = Health().model_dump(mode="json")
                await tx.conn.execute(CH.update().where(CH.c.id == channel_id).values(**values))
            row = dict((await tx.conn.execute(sa.select(CH).where(CH.c.id == channel_id))).mappings().one())
            self.refresh(row)
            await tx.emit("channel.updated", self.public_dict(row, admin=False), channel_id=channel_id)
            await announce(tx, "channels", None, channel_id=channel_id)
        return row

    # ---- instances --------------------------------------------------------------------------

    async def load_all(self) -> None:
        async with self.store.db.read() as conn:
            rows = (await conn.execute(sa.select(schema.channels))).mappings().all()
        for row in rows:
            try:
                self._activate(dict(row))
            except Exception as exc:  # one plugin's constructor must not stop the hub
                log.warning("channel %r: its %r plugin could not start it: %s", row["id"], row["type"], exc)

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def _activate(self, row: dict[str, Any]) -> None:
        self._build(row)
        self._changed()

    def _build(self, row: dict[str, Any]) -> None:
        cid = row["id"]
        self.rows[cid] = row
        self.instances.pop(cid, None)
        # The stored secrets are masked even where no instance comes of them (disabled, invalid).
        self.redactor.set(cid, self._stored_secrets(row))
        if not row["enabled"]:
            return
        cls = self.registry.get(row["type"])
        if cls is None:
            log.warning("channel %r has type %r, which no installed plugin provides", cid, row["type"])
            return
        try:
            settings = cls.Settings.load_stored(self.full_settings(row))
        except ValidationError as exc:
            log.warning("channel %r: stored settings no longer valid: %s", cid, _validation_errors(exc))
            return
        ctx = ChannelContextImpl(
            cid, self.http, self.public_url, self, logging.getLogger(f"hub.channel.{cid}")
        )
        inst = cls(cid, settings, ctx)
        self.redactor.set(cid, {*self._stored_secrets(row), *inst.secret_values()})
        self.instances[cid] = inst

    def _stored_secrets(self, row: dict[str, Any]) -> list[str]:
        """The values sealed in the row's ``secrets`` (every SecretStr field the admin gave)."""
        try:
            sealed = self.box.open(row["secrets"])
        except ConfigError:  # sealed with another key: nothing of it can be used, or logged
            return []
        return [v for v in sealed.values() if isinstance(v, str)]

    def forget(self, channel_id: str) -> None:
        self.rows.pop(channel_id, None)
        self.instances.pop(channel_id, None)
        self.redactor.discard(channel_id)
        self._changed()

    def refresh(self, row: dict[str, Any]) -> None:
        """Apply a written row. A plugin that cannot build an instance from the settings (its
        constructor raises) refuses them: SettingsInvalid, and this process keeps the state it had,
        so the caller's transaction rolls back to match."""
        cid = row["id"]
        prior_row, prior_inst = self.rows.get(cid), self.instances.get(cid)
        try:
            self._activate(row)
        except Exception as exc:
            log.warning("channel %r: its %r plugin refused the settings: %s", cid, row["type"], exc)
            self.forget(cid)
            if prior_row is not None:
                self.rows[cid] = prior_row
                kept = prior_inst.secret_values() if prior_inst is not None else []
                self.redactor.set(cid, {*self._stored_secrets(prior_row), *kept})
            if prior_inst is not None:
                self.instances[cid] = prior_inst
            message = f"the {row['type']} plugin cannot use these settings ({type(exc).__name__})"
            raise SettingsInvalid([{"field": "settings", "message": message}]) from None

    def get(self, channel_id: str) -> Channel | None:
        """The live instance of an enabled channel, or None (unknown, disabled, plugin missing)."""
        return self.instances.get(channel_id)

    def webhook_url(self, channel_id: str) -> str:
        return f"{self.public_url}/webhooks/{channel_id}"

    def public_dict(self, row: dict[str, Any], *, admin: bool) -> dict[str, Any]:
        cls = self.registry.get(row["type"])
        inst = self.instances.get(row["id"])
        out: dict[str, Any] = {
            "id": row["id"],
            "type": row["type"],
            "name": row["name"],
            "enabled": row["enabled"],
            "health": _health_public(row["health"]),
            "capabilities": cls.capabilities.model_dump(mode="json") if cls else None,
            "mode": cls.mode if cls else None,
            "sending_paused": row["send_paused"],
        }
        if admin:
            out["source"] = row["source"]
            out["plugin_installed"] = cls is not None
            out["settings"] = mask_settings(cls.Settings, self.full_settings(row)) if cls else {}
            out["setup"] = (
                inst.setup_instructions(self.webhook_url(row["id"]))
                if inst
                else {"webhook_url": self.webhook_url(row["id"])}
            )
            out["created_at"] = row["created_at"].isoformat()
            out["updated_at"] = row["updated_at"].isoformat()
        return out

    # ---- health -----------------------------------------------------------------------------

    def report_health(self, channel_id: str, state: HealthState, error: str | None) -> None:
        """Record a health change once (not every failure) and publish it."""
        row = self.rows.get(channel_id)
        if row is None:
            return
        current = row["health"] or {}
        if current.get("state") == state.value and (
            state is HealthState.OK or current.get("last_error") == error
        ):
            return
        health = Health(state=state, last_error=error).model_dump(mode="json")
        row["health"] = health
        level = logging.INFO if state is HealthState.OK else logging.WARNING
        log.log(level, "channel %s health: %s%s", channel_id, state.value, f" ({error})" if error else "")
        task = asyncio.get_running_loop().create_task(self._save_health(channel_id, health))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _save_health(self, channel_id: str, health: dict[str, Any], **extra: Any) -> None:
        async with self.store.tx() as tx:
            await tx.conn.execute(
                schema.channels.update()
                .where(schema.channels.c.id == channel_id)
                .values(health=health, updated_at=utcnow(), **extra)
            )
            row = (
                (await tx.conn.execute(sa.select(schema.channels).where(schema.channels.c.id == channel_id)))
                .mappings()
                .first()
            )
            if row is not None:
                self.rows[channel_id] = dict(row)
                await tx.emit(
                    "channel.updated",
                    self.public_dict(dict(row), admin=False),
                    channel_id=channel_id,
                )
                await announce(tx, "channels", None, channel_id=channel_id)

    async def check_health(self, channel_id: str) -> Health | None:
        """Ask the provider now (``Channel.health_check``) and record the answer."""
        inst = self.instances.get(channel_id)
        if inst is None:
            return None
        try:
            health = await inst.health_check()
        except Exception as exc:  # a plugin bug must not break the admin's request
            log.warning("channel %s health check raised %s", channel_id, type(exc).__name__)
            health = Health(
                state=HealthState.UNREACHABLE, last_error=f"health check failed: {type(exc).__name__}"
            )
        if health.state is not HealthState.UNKNOWN:
            self.report_health(channel_id, health.state, health.last_error)
        return health

    def check_health_soon(self, channel_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.check_health(channel_id))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def set_send_paused(self, channel_id: str, paused: bool, error: str | None = None) -> None:
        state = HealthState.AUTH_FAILED if paused else HealthState.OK
        health = Health(state=state, last_error=error).model_dump(mode="json")
        if channel_id in self.rows:
            self.rows[channel_id]["send_paused"] = paused
            self.rows[channel_id]["health"] = health
        await self._save_health(channel_id, health, send_paused=paused)

    async def drain(self) -> None:
        if self._health_tasks:
            await asyncio.gather(*self._health_tasks, return_exceptions=True)


def _health_public(health: dict[str, Any] | None) -> dict[str, Any]:
    h = Health.model_validate(health or {})
    return h.public()


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    import json

    return dict(json.loads(json.dumps(values, default=str)))
