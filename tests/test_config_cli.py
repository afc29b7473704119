"""Configuration (TOML, ${VAR} interpolation, declared channels) and the ``hub`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from hub import schema
from hub.channels import ChannelService
from hub.config import load_config
from hub.db import Database
from hub.errors import ConfigError
from hub.events import EventBus, Store
from hub.migrate import upgrade
from hub.models import utcnow
from hub.plugins import load_plugins
from hub.security import SecretBox
from hub.testing.fake_channel import FakeChannel, FakePlugin, sign, webhook_body
from hub.users import authenticate_token, create_token, create_user
from hub.web.app import create_app

HUB = str(Path(sys.executable).with_name("hub"))
KEY = "cli-test-secret-key-0123456789"
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.users.hash_password", _cheap.hash)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def base_toml(tmp_path: Path, extra: str = "") -> str:
    return (
        "[hub]\n"
        f'database_url = "sqlite:///{tmp_path}/hub.db"\n'
        f'data_dir = "{tmp_path}/data"\n'
        f'secret_key = "{KEY}"\n'
        'public_url = "http://hub.test"\n' + extra
    )


# ---- configuration -----------------------------------------------------------------------------


def test_env_interpolation_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBT_DB", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("HUBT_PORT_SET", "9090")
    monkeypatch.setenv("HUBT_KEY", "k-${NOT_EXPANDED}-0123456789")
    monkeypatch.delenv("HUBT_UNSET", raising=False)
    cfg = load_config(
        write(
            tmp_path / "hub.toml",
            "[hub]\n"
            'database_url = "${HUBT_DB}"\n'
            'public_url = "${HUBT_UNSET:-https://default.example/}"\n'
            'host = "${HUBT_UNSET:-}0.0.0.0"\n'
            'secret_key = "${HUBT_KEY}"\n'
            'data_dir = "pre-${HUBT_PORT_SET:-1}-post $HUBT_DB literal"\n'
            'log_level = "${HUBT_UNSET:-warning}"\n',
        )
    )
    assert cfg.hub.database_url == f"sqlite:///{tmp_path}/x.db"
    assert cfg.hub.public_url == "https://default.example"
    assert cfg.hub.host == "0.0.0.0"
    assert cfg.hub.secret_key == "k-${NOT_EXPANDED}-0123456789"  # a value is not interpolated again
    assert cfg.hub.data_dir == "pre-9090-post $HUBT_DB literal"
    assert cfg.hub.log_level == "WARNING"
    assert cfg.path == str(tmp_path / "hub.toml")


def test_a_missing_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBT_MISSING_SECRET", raising=False)
    path = write(
        tmp_path / "hub.toml",
        '[hub]\nsecret_key = "${HUBT_MISSING_SECRET}"\n[[channels]]\nid = "c"\ntype = "fake"\nname = "C"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "HUBT_MISSING_SECRET" in str(info.value)
    assert "hub.secret_key" in str(info.value)
    monkeypatch.setenv("HUBT_MISSING_SECRET", "now-it-is-set-0123")
    path = write(
        tmp_path / "hub.toml",
        '[[channels]]\nid = "c"\ntype = "fake"\nname = "C"\n'
        '[channels.settings]\nsecret = "${HUBT_CHANNEL_SECRET}"\n',
    )
    monkeypatch.delenv("HUBT_CHANNEL_SECRET", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "HUBT_CHANNEL_SECRET" in str(info.value)
    assert "channels[0].settings.secret" in str(info.value)


def test_unknown_keys_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "a.toml", '[hub]\ndatabse_url = "sqlite:///x.db"\n'))
    assert "hub.databse_url" in str(info.value)
    assert str(tmp_path / "a.toml") in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "b.toml", "[hubb]\nport = 1\n"))
    assert "hubb" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "c.toml", "[hub]\nport = 99999\n"))
    assert "hub.port" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "d.toml", '[hub\nport = "x"\n'))
    assert "not valid TOML" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "does not exist" in str(info.value)
    assert load_config(None).hub.port == 8080


CHANNEL_TOML = """
[[channels]]
id = "cfg"
type = "fake"
name = "From config"
[channels.settings]
secret = "${HUBT_CFG_SECRET}"
verify_token = "vt-cfg"
"""


async def test_declared_channels_are_upserted_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any
) -> None:
    planted = "config-secret-5e7f"
    monkeypatch.setenv("HUBT_CFG_SECRET", planted)
    cfg = load_config(write(tmp_path / "hub.toml", base_toml(tmp_path, CHANNEL_TOML)))
    cls = FakeChannel.isolated()
    client: TestClient = await aiohttp_client(create_app(cfg, extra_plugins=[("fake", FakePlugin(cls))]))
    from hub.appkeys import STORE

    db = client.app[STORE].db
    admin = await create_user(db, "root@example.com", "administrator", None)
    headers = {"Authorization": f"Bearer {await create_token(db, admin['id'])}"}
    resp = await client.get("/api/v1/admin/channels/cfg", headers=headers)
    assert resp.status == 200, await resp.text()
    ch = await resp.json()
    assert ch["source"] == "config"
    assert ch["name"] == "From config"
    assert ch["enabled"] is True
    assert ch["settings"]["secret"] == "********"
    assert ch["setup"] == {"webhook_url": "http://hub.test/webhooks/cfg", "verify_token": "vt-cfg"}
    assert planted not in json.dumps(ch)
    body = webhook_body({"type": "message", "id": "c1", "from": "a", "text": "t", "ts": 1_700_000_000})
    assert (await client.post("/webhooks/cfg", data=body, headers=sign(planted, body))).status == 200
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(schema.channels))).mappings().all()
    assert [r["id"] for r in rows] == ["cfg"]
    assert planted not in (rows[0]["secrets"] or "")


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (
            '[[channels]]\nid = "broken"\ntype = "fake"\nname = "B"\n[channels.settings]\nsecret = "s"\n',
            ["'broken'", "settings.verify_token"],
        ),
        (
            '[[channels]]\nid = "broken"\ntype = "fake"\nname = "B"\n'
            '[channels.settings]\nsecret = "s"\nverify_token = "v"\ncolour = "red"\n',
            ["'broken'", "settings.colour"],
        ),
        ('[[channels]]\nid = "broken"\ntype = "pigeon"\nname = "B"\n', ["'broken'", "'pigeon'"]),
    ],
)
async def test_an_invalid_declared_channel_stops_start_up(
    tmp_path: Path, declared: str, expected: list[str]
) -> None:
    cfg = load_config(write(tmp_path / "hub.toml", base_toml(tmp_path, declared)))
    app = create_app(cfg, extra_plugins=[("fake", FakePlugin(FakeChannel.isolated()))])
    server = TestServer(app)
    try:
        with pytest.raises(ConfigError) as info:
            await server.start_server()
    finally:
        await server.close()
    for fragment in expected:
        assert fragment in str(info.value)


# ---- the command line --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_LOG_LEVEL"] = "WARNING"
    return env


async def hub_cmd(*args: str, stdin: str | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        HUB,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        cwd=str(cwd) if cwd else None,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else b""), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_users_and_tokens(tmp_path: Path) -> None:
    config = str(write(tmp_path / "hub.toml", base_toml(tmp_path)))
    rc, out, err = await hub_cmd(
        *("users", "create", "X@Example.com", "--role", "agent", "--password-stdin"),
        *("--config", config),
        stdin="a long password\n",
    )
    assert rc == 0, err
    assert out.startswith("created agent x@example.com (usr_")
    (rc_list, listed, _), (rc_dup, _, dup_err), (rc_tok, tok_out, tok_err) = await asyncio.gather(
        hub_cmd("users", "list", "--config", config),
        hub_cmd(
            *("users", "create", "x@example.com", "--role", "agent", "--password-stdin"),
            *("--config", config),
            stdin="another password\n",
        ),
        hub_cmd("tokens", "create", "x@example.com", "--config", config),
    )
    assert rc_list == 0
    (line,) = [ln for ln in listed.splitlines() if "x@example.com" in ln]
    assert line.split()[1:] == ["x@example.com", "agent", "active"]
    assert rc_dup == 1
    assert "already exists" in dup_err and "x@example.com" in dup_err
    assert rc_tok == 0, tok_err
    token = tok_out.strip().splitlines()[-1]
    assert token.startswith("hub_")
    db = Database(f"sqlite:///{tmp_path}/hub.db")
    try:
        user = await authenticate_token(db, token)
        assert user is not None and user["email"] == "x@example.com" and user["role"] == "agent"
        assert await authenticate_token(db, token + "x") is None
        async with db.read() as conn:
            hashes = (await conn.scalars(sa.select(schema.users.c.password_hash))).all()
            emails = (await conn.scalars(sa.select(schema.users.c.email))).all()
        assert sorted(emails) == ["x@example.com"]
        assert hashes[0].startswith("$argon2") and "long password" not in hashes[0]
    finally:
        await db.dispose()


async def test_cli_plugins_and_migrate(tmp_path: Path) -> None:
    config = str(write(tmp_path / "hub.toml", base_toml(tmp_path)))
    (rc, out, err), (rc_json, out_json, _), (rc_mig, out_mig, err_mig) = await asyncio.gather(
        hub_cmd("plugins", "--config", config),
        hub_cmd("plugins", "--json", "--config", config),
        hub_cmd("migrate", "--config", config),
    )
    assert rc == 0, err
    rows = {ln.split()[0]: ln.split()[1] for ln in out.splitlines() if ln.strip()}
    for name in ("whatsapp", "facebook", "email"):
        assert name in rows, out
        assert rows[name][0].isdigit(), out
    assert rc_json == 0
    report = json.loads(out_json)
    by_name = {p["name"]: p for p in report["plugins"]}
    assert {"whatsapp", "facebook", "email"} <= set(by_name)
    assert all(by_name[n]["version"] for n in ("whatsapp", "facebook", "email"))
    assert by_name["whatsapp"]["channels"] == ["whatsapp"]
    assert "hub_register_channels" in by_name["whatsapp"]["hooks"]
    assert report["failed"] == []
    assert rc_mig == 0, err_mig
    assert "schema is up to date" in out_mig
    db = Database(f"sqlite:///{tmp_path}/hub.db")
    try:
        async with db.read() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await db.dispose()
    assert {"users", "api_tokens", "channels", "raw_events", "messages", "outbox", "events"} <= tables


def test_cli_global_config_option_before_the_command(tmp_path: Path) -> None:
    from hub.cli import build_parser

    config = str(write(tmp_path / "hub.toml", base_toml(tmp_path)))
    assert build_parser().parse_args(["migrate", "--config", config]).config == config
    args = build_parser().parse_args(["--config", config, "migrate"])  # exits 2 today
    assert args.command == "migrate"
    assert args.config == config


WA_BODY = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1065"},
                        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16315551181"}],
                        "messages": [
                            {
                                "from": "16315551181",
                                "id": "wamid.REPLAY1",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "replayed hello"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}


async def _replay_setup(tmp_path: Path, *channel_ids: str) -> tuple[str, Database]:
    """A config file and a database with a WhatsApp channel of each id (secrets planted)."""
    config = str(write(tmp_path / "hub.toml", base_toml(tmp_path)))
    db = Database(f"sqlite:///{tmp_path}/hub.db")
    await upgrade(db)
    _, registry, _ = load_plugins()
    async with httpx.AsyncClient() as http:
        svc = ChannelService(Store(db, EventBus()), registry, SecretBox(KEY), http, "http://hub.test")
        settings = {
            "phone_number_id": "1065",
            "access_token": "wa-access-token-planted",
            "app_secret": "wa-app-secret-planted",
            "verify_token": "vt",
        }
        for cid in channel_ids:
            await svc.upsert(cid, "whatsapp", cid.upper(), True, settings, source="api")
    return config, db


async def test_cli_replay_reruns_failed_deliveries_of_one_channel(tmp_path: Path) -> None:
    config, db = await _replay_setup(tmp_path, "wa", "wa2")
    body = json.dumps(WA_BODY).encode()
    async with db.write() as conn:
        for cid in ("wa", "wa2"):
            await conn.execute(
                schema.raw_events.insert().values(
                    channel_id=cid,
                    dedupe_key=f"k-{cid}",
                    body=body,
                    headers={},
                    received_at=utcnow(),
                    state="failed",
                    attempts=5,
                    error="parse: RuntimeError: parser bug",
                )
            )
    await db.dispose()
    rc, out, err = await hub_cmd("replay", "--channel", "wa", "--config", config)
    assert rc == 0, out + err
    assert "replaying 1 raw event(s)" in out
    assert "done: 1 applied, 0 still failing" in out
    for planted in ("wa-access-token-planted", "wa-app-secret-planted"):
        assert planted not in out + err
    db = Database(f"sqlite:///{tmp_path}/hub.db")
    try:
        async with db.read() as conn:
            states = dict(
                (
                    await conn.execute(sa.select(schema.raw_events.c.channel_id, schema.raw_events.c.state))
                ).all()
            )
            texts = (
                await conn.execute(sa.select(schema.messages.c.channel_id, schema.messages.c.text))
            ).all()
    finally:
        await db.dispose()
    assert states == {"wa": "done", "wa2": "failed"}
    assert [tuple(t) for t in texts] == [("wa", "replayed hello")]


async def test_log_level_from_the_config_file_and_the_variable_overrides_it(tmp_path: Path) -> None:
    """``hub.log_level`` takes effect (asyncio's DEBUG line about its selector shows only at DEBUG),
    and HUB_LOG_LEVEL, when set, wins over it."""
    config = str(write(tmp_path / "hub.toml", base_toml(tmp_path, 'log_level = "debug"\n')))

    async def stderr_of(level_var: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        if level_var is not None:
            env["HUB_LOG_LEVEL"] = level_var
        proc = await asyncio.create_subprocess_exec(
            HUB,
            "migrate",
            "--config",
            config,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return err.decode()

    # One after the other: two first migrations of one SQLite file would race.
    from_file = await stderr_of(None)
    overridden = await stderr_of("WARNING")
    assert "DEBUG asyncio: Using selector" in from_file
    assert "DEBUG" not in overridden
    bad = write(tmp_path / "bad.toml", base_toml(tmp_path, 'log_level = "loud"\n'))
    with pytest.raises(ConfigError, match="log_level"):
        load_config(bad)


async def test_cli_replay_pages_through_more_rows_than_a_page_and_shows_progress(tmp_path: Path) -> None:
    config, db = await _replay_setup(tmp_path, "wa")
    async with db.write() as conn:
        for i in range(7):
            doc = json.loads(json.dumps(WA_BODY))
            message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
            message["id"], message["text"]["body"] = f"wamid.PAGE{i}", f"page {i}"
            await conn.execute(
                schema.raw_events.insert().values(
                    channel_id="wa",
                    dedupe_key=f"k{i}",
                    body=json.dumps(doc).encode(),
                    headers={},
                    received_at=utcnow(),
                    state="failed",
                    attempts=5,
                )
            )
    await db.dispose()
    rc, out, err = await hub_cmd("replay", "--page-size", "3", "--config", config)
    assert rc == 0, out + err
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "replaying 7 raw event(s)"
    assert lines[1:4] == ["3/7", "6/7", "7/7"], out  # one progress line per page of 3
    assert "done: 7 applied, 0 still failing" in out
    db = Database(f"sqlite:///{tmp_path}/hub.db")
    try:
        async with db.read() as conn:
            texts = sorted(await conn.scalars(sa.select(schema.messages.c.text)))
    finally:
        await db.dispose()
    assert texts == [f"page {i}" for i in range(7)]


async def test_the_pool_size_setting_sizes_the_pool_and_a_bad_one_is_refused(
    tmp_path: Path, pg_session_url: str | None
) -> None:
    cfg = load_config(write(tmp_path / "p.toml", "[hub]\ndatabase_pool_size = 7\n"))
    assert cfg.hub.database_pool_size == 7
    urls = [f"sqlite:///{tmp_path / 'pool.db'}"] + ([pg_session_url] if pg_session_url else [])
    for url in urls:
        db = Database(url, pool_size=cfg.hub.database_pool_size)
        try:
            pool: Any = db.engine.sync_engine.pool
            assert pool.size() == 7, url
        finally:
            await db.dispose()
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "q.toml", "[hub]\ndatabase_pool_size = 1\n"))
    assert "hub.database_pool_size" in str(info.value)


def test_serve_runs_on_uvloop_unless_told_otherwise() -> None:
    from hub.cli import new_event_loop

    uvloop = pytest.importorskip("uvloop", reason="uvloop is installed with the hub except on Windows")
    for kind, expected in (
        ("auto", uvloop.Loop),
        ("uvloop", uvloop.Loop),
        ("asyncio", asyncio.BaseEventLoop),
    ):
        loop = new_event_loop(kind)
        try:
            assert isinstance(loop, expected), kind
            if kind == "asyncio":
                assert not isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
