"""Configuration: one TOML file with ``${ENV_VAR}`` interpolation (``${VAR:-default}`` allowed).

A referenced variable that is unset (and has no default) is an error naming it, so a missing secret
never turns silently into an empty string.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError

__all__ = ["ChannelDecl", "HubConfig", "HubSection", "interpolate", "load_config"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class HubSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = "sqlite:///var/hub.db"
    database_pool_size: int = Field(
        default=30,
        ge=2,
        le=1000,
        description="database connections each process keeps open; on PostgreSQL a process holds "
        "this many plus one for event notifications and one per leadership it waits for or holds "
        "(reply windows, each pull channel), against max_connections",
    )
    public_url: str = "http://127.0.0.1:8080"
    secret_key: str = Field(
        default="",
        description="Key for channel secrets at rest; empty means a key file under data_dir",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: str = "var"
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="any request body: webhooks, uploads (413 over it)"
    )
    max_json_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="a JSON body of the API (413 over it)"
    )
    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="an agent's upload, streamed to disk (413 over it); 100 MiB is the largest file a "
        "built-in channel sends (a WhatsApp document)",
    )
    event_retention: int = Field(default=1_000_000, ge=1000, description="events kept for replay")
    # Retention of what the event log refers to: unset means "as long as the event log", i.e. rows
    # older than the oldest event still in the log go (nothing goes before the log is pruned).
    raw_delivery_retention_days: float = Field(
        default=30, gt=0, description="stored webhook deliveries kept for `hub replay` (pending ones stay)"
    )
    outbox_retention_days: float | None = Field(default=None, gt=0, description="sent outbox jobs")
    media_retention_days: float | None = Field(
        default=None, gt=0, description="fetched inbound media: files and their jobs"
    )
    upload_retention_days: float | None = Field(default=None, gt=0, description="agents' uploaded files")
    receipt_retention_days: float | None = Field(
        default=None, gt=0, description="receipts kept for messages the hub does not know (yet)"
    )
    notification_retention_days: float = Field(
        default=90, gt=0, description="users' notifications and their deliveries (pending ones stay)"
    )
    retention_interval: float = Field(default=300, gt=0, description="seconds between retention passes")
    delete_chunk_rows: int = Field(default=1000, ge=10, description="rows per retention transaction")
    automation_run_retention_days: float = Field(
        default=90, gt=0, description="the automation run log (each rule evaluation) is kept this long"
    )
    automation_max_depth: int = Field(
        default=3, ge=1, le=10, description="rules acting on what rules did stop at this depth (loops)"
    )
    automation_messages_per_hour: int = Field(
        default=3, ge=1, le=1000, description="automatic messages (rules, bots) per conversation per hour"
    )
    max_queued_deliveries: int = Field(
        default=10_000, ge=1, description="webhooks waiting to be stored; past it they answer 503"
    )
    max_pending_deliveries: int = Field(
        default=100_000, ge=1, description="stored deliveries not yet processed; past it webhooks answer 503"
    )
    workers: int = Field(default=4, ge=1, le=256, description="outbox send concurrency (x32)")
    outbox_lease: float = Field(
        default=30.0,
        ge=1.0,
        description="seconds an outbox job is leased to the worker sending it; renewed every third of "
        "it while the send is in flight, so only a dead process's lease runs out",
    )
    outbox_grace: float = Field(
        default=30.0,
        ge=0.0,
        description="after a crash, seconds to wait for a status naming a send of unknown outcome "
        "before sending it again (channels with the client_reference capability)",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="the event loop `hub serve` runs on: uvloop (installed with the hub where it "
        "builds, not on Windows) costs less CPU per request than asyncio's own; auto takes uvloop "
        "when it is installed",
    )
    run_workers: bool = Field(
        default=True,
        description="process stored deliveries and send queued messages in this process; false makes a "
        "web-only node that stores webhooks and requests for other processes to work on",
    )
    login_rate_per_address: float = Field(
        default=30, gt=0, description="login attempts per minute from one client address (429 over it)"
    )
    login_rate_per_account: float = Field(
        default=10, gt=0, description="login attempts per minute at one account (429 over it)"
    )
    stream_send_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="seconds a WebSocket frame may wait for a client that does not read; then the "
        "client is closed with 4429 (reconnect with after=)",
    )
    stream_queue_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="events waiting for one WebSocket client; over it the client is closed with 4429",
    )
    access_token_ttl: float = Field(
        default=3600,
        ge=1,
        description="seconds a login's bearer token works; then refresh it (POST /api/v1/auth/refresh)",
    )
    refresh_token_ttl: float = Field(
        default=30 * 24 * 3600, ge=1, description="seconds a refresh token works (each works once)"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="web origins allowed to call the API from a browser, e.g. https://app.example.com",
    )
    check_events: bool = Field(
        default=False,
        description="refuse to emit an event whose type or data the event catalogue does not describe "
        "(hub/web/event_catalogue.py); the test suites turn it on",
    )
    log_level: str = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR; the HUB_LOG_LEVEL variable overrides it"
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    auto_offline_minutes: int = Field(
        default=0,
        ge=0,
        le=7 * 24 * 60,
        description="set agents offline this long after their app left; 0 = never",
    )

    @property
    def media_dir(self) -> Path:
        """Where fetched inbound media is kept."""
        return Path(self.data_dir) / "media"

    @property
    def uploads_dir(self) -> Path:
        """Where agents' uploads are kept."""
        return Path(self.data_dir) / "uploads"

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")


class ChannelDecl(BaseModel):
    """A channel declared in the file, upserted at start-up (``source = "config"``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    type: str
    name: str
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)


class HubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hub: HubSection = Field(default_factory=HubSection)
    channels: list[ChannelDecl] = Field(default_factory=list)
    notifiers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="[notifiers.NAME]: the settings of each notifier to run (webhook, email, a plugin's)",
    )
    path: str | None = Field(default=None, exclude=True)


def interpolate(value: Any, *, where: str = "") -> Any:
    """Replace ``${VAR}`` in every string of a parsed TOML tree."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            got = os.environ.get(name)
            if got is None:
                if default is not None:
                    return default
                raise ConfigError(
                    f"environment variable {name} is not set (referenced by {where or 'config'})"
                )
            return got

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, where=f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_config(path: str | os.PathLike[str] | None) -> HubConfig:
    """Read and validate the file; ``None`` gives the defaults. Errors name the file and field."""
    if path is None:
        return HubConfig()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {p} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    data = interpolate(raw)
    try:
        cfg = HubConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"config file {p}: {problems}") from exc
    # A relative data_dir / SQLite path is relative to where the hub runs, as users expect of
    # `make run`; keep the file's own location for error messages.
    cfg.path = str(p)
    return cfg
