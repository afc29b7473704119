"""The ``hub`` command: serve, plugins, users, tokens, replay, migrate."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub import __version__
from hub.config import HubConfig, load_config
from hub.errors import HubError

__all__ = ["main"]

DEFAULT_CONFIG = "config/hub.toml"
LOG_LEVEL_VAR = "HUB_LOG_LEVEL"


def _config(args: argparse.Namespace) -> HubConfig:
    path = args.config or os.environ.get("HUB_CONFIG")
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    cfg = load_config(path)
    if not os.environ.get(LOG_LEVEL_VAR):  # the variable, when set, overrides the file
        logging.getLogger().setLevel(cfg.hub.log_level)
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from hub.web.app import create_app

    cfg = _config(args)
    host = args.host or cfg.hub.host
    port = cfg.hub.port if args.port is None else args.port
    if args.no_workers:
        cfg.hub.run_workers = False
    app = create_app(cfg)

    def announce(_: str) -> None:
        where = cfg.hub.database_url.split("@")[-1]
        # The loop actually running (uvloop's is uvloop.Loop, asyncio's lives in asyncio).
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(
            f"hub {__version__} serving on http://{host}:{port} (database: {where}, "
            f"event loop: {loop}, public URL: {cfg.hub.public_url})",
            flush=True,
        )

    web.run_app(
        app,
        host=host,
        port=port,
        print=announce,
        access_log=None,
        shutdown_timeout=10,
        loop=new_event_loop(cfg.hub.event_loop),
    )
    return 0


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The loop ``hub serve`` runs on: uvloop unless told otherwise or not installed (its
    transports and callbacks cost less CPU per request, profiled under webhook load)."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit('event_loop = "uvloop" but uvloop is not installed') from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def cmd_plugins(args: argparse.Namespace) -> int:
    from hub.plugins import load_plugins

    _, _, report = load_plugins()
    report.rate()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for p in report.loaded:
        channels = ", ".join(p.channels) or "-"
        print(
            f"{p.name:<16} {p.version or '?':<10} tier: {p.tier or 'none':<9} channels: {channels:<20} "
            f"hooks: {', '.join(p.hooks) or '-'}"
        )
        for warning in p.warnings:
            print(f"{'':<16} warning: {warning}")
    for name, err in report.failed.items():
        print(f"{name:<16} FAILED     {err}")
    for name in report.disabled:
        print(f"{name:<16} disabled   (HUB_DISABLE_PLUGINS)")
    return 0


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hub.scaffold import new_plugin

    folder = new_plugin(args.name, Path(args.dir))
    print(f"created {folder}")
    print(f"next: cd {folder} && pip install -e '.[test]' && pytest && hub plugin check .")
    return 0


def cmd_plugin_check(args: argparse.Namespace) -> int:
    from hub.quality.check import check, load_target, report_lines
    from hub.quality.rules import TIERS

    try:
        plugins = load_target(args.target) if args.target else _installed_plugins()
    except (LookupError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    below = False
    for plugin in plugins:
        print(f"checking {plugin.name} (the conformance kit and mypy --strict)...", flush=True)
        tier, results = check(plugin)
        print("\n".join(report_lines(plugin, tier, results)), flush=True)
        if args.require and (tier is None or TIERS.index(tier) < TIERS.index(args.require)):
            below = True
    return 1 if below else 0


def _installed_plugins() -> list[Any]:
    import importlib.metadata

    from hub.quality.check import load_target

    names = sorted({ep.name for ep in importlib.metadata.entry_points(group="hub")})
    return [p for name in names for p in load_target(name)]


async def _with_db(cfg: HubConfig, fn: Callable[[Any], Awaitable[int]]) -> int:
    from hub.db import Database
    from hub.migrate import upgrade

    db = Database(cfg.hub.database_url, pool_size=cfg.hub.database_pool_size)
    try:
        await upgrade(db)
        return await fn(db)
    finally:
        await db.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run(_db: Any) -> int:
        print("schema is up to date")
        return 0

    return asyncio.run(_with_db(_config(args), run))


def cmd_users_create(args: argparse.Namespace) -> int:
    from hub.users import UserExists, create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password (empty for token-only): ")
    else:
        password = ""
    if password and len(password) < 8:
        print("error: a password needs at least 8 characters", file=sys.stderr)
        return 2

    async def run(db: Any) -> int:
        try:
            user = await create_user(db, args.email, args.role, password or None, args.name)
        except UserExists as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"created {user['role']} {user['email']} ({user['id']})")
        return 0

    return asyncio.run(_with_db(_config(args), run))


def cmd_users_list(args: argparse.Namespace) -> int:
    from hub.users import list_users

    async def run(db: Any) -> int:
        for u in await list_users(db):
            print(f"{u['id']}  {u['email']:<32} {u['role']:<14} {'active' if u['active'] else 'inactive'}")
        return 0

    return asyncio.run(_with_db(_config(args), run))


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from hub.users import create_token, find_user

    async def run(db: Any) -> int:
        user = await find_user(db, args.email)
        if user is None:
            print(f"error: no user {args.email}; create one with `hub users create`", file=sys.stderr)
            return 1
        token = await create_token(db, user["id"], args.name)
        print(f"token for {user['email']} (shown once):")
        print(token)
        return 0

    return asyncio.run(_with_db(_config(args), run))


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-parse stored raw deliveries with the installed plugins; duplicates keep one effect."""
    import httpx

    from hub import schema
    from hub.channels import ChannelService
    from hub.events import EventBus, Store
    from hub.inbound import InboundProcessor
    from hub.plugins import load_plugins
    from hub.redact import SecretRedactor
    from hub.security import SecretBox, load_secret_key

    cfg = _config(args)
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        print("error: --since needs a timezone, e.g. 2026-01-01T00:00:00+00:00", file=sys.stderr)
        return 2

    if args.page_size < 1:
        print("error: --page-size must be at least 1", file=sys.stderr)
        return 2

    async def run(db: Any) -> int:
        _, registry, _ = load_plugins()
        store = Store(db, EventBus())
        redactor = SecretRedactor()  # the channels' secrets stay out of this command's log too
        uninstall = redactor.install()
        async with httpx.AsyncClient() as http:
            svc = ChannelService(
                store,
                registry,
                SecretBox(load_secret_key(cfg.hub.secret_key, cfg.hub.data_dir)),
                http,
                cfg.hub.public_url,
                redactor=redactor,
            )
            await svc.load_all()
            proc = InboundProcessor(store, svc)
            R = schema.raw_events
            conds = []
            if args.channel:
                conds.append(R.c.channel_id == args.channel)
            if since:
                conds.append(R.c.received_at >= since)
            if not args.all:
                conds.append(R.c.state != "done")
            async with db.read() as conn:
                total = int(await conn.scalar(sa.select(sa.func.count()).select_from(R).where(*conds)) or 0)
                # Rows stored after this moment are the live hub's business, not this replay's.
                last_id = int(await conn.scalar(sa.select(sa.func.max(R.c.id))) or 0)
            print(f"replaying {total} raw event(s)", flush=True)
            columns = (R.c.id, R.c.channel_id, R.c.body, R.c.headers, R.c.received_at, R.c.attempts)
            done = failed = 0
            after = 0
            # One page at a time (keyset on id): a month of deliveries does not fit in memory.
            while True:
                async with db.read() as conn:
                    page = (
                        (
                            await conn.execute(
                                sa.select(*columns)
                                .where(*conds, R.c.id > after, R.c.id <= last_id)
                                .order_by(R.c.id)
                                .limit(args.page_size)
                            )
                        )
                        .mappings()
                        .all()
                    )
                if not page:
                    break
                for i, row in enumerate(page, 1):
                    await proc.process_one({**dict(row), "attempts": 0})
                    done += 1
                    if done % 100 == 0 or i == len(page):
                        print(f"  {done}/{total}", flush=True)
                after = page[-1]["id"]
                async with db.read() as conn:
                    failed += int(
                        await conn.scalar(
                            sa.select(sa.func.count())
                            .select_from(R)
                            .where(R.c.id.in_([r["id"] for r in page]), R.c.state == "failed")
                        )
                        or 0
                    )
            print(f"done: {done - failed} applied, {failed} still failing")
        uninstall()
        return 0 if not failed else 1

    return asyncio.run(_with_db(cfg, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Channel hub")
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    config_help = f"TOML config file (default: $HUB_CONFIG or {DEFAULT_CONFIG})"
    parser.add_argument("--config", help=config_help)
    # Accepted before or after the command; SUPPRESS keeps a subcommand from erasing the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="serve the hub")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--no-workers",
        action="store_true",
        help="web-only node: store webhooks and sends, leave processing to other processes",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("plugins", parents=[common], help="list installed plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    plugin = sub.add_parser("plugin", help="write and check channel plugins").add_subparsers(
        dest="plugin_command", required=True
    )
    p = plugin.add_parser("new", help="generate a channel plugin distribution that works as generated")
    p.add_argument("name", help="the channel type name, e.g. chirp")
    p.add_argument("--dir", default=".", help="where to create hub-NAME/ (default: here)")
    p.set_defaults(func=cmd_plugin_new)
    p = plugin.add_parser("check", help="the quality tier a plugin reaches, and the rules unmet")
    p.add_argument("target", nargs="?", help="an installed plugin's name or a plugin's source folder")
    p.add_argument(
        "--require", choices=["bronze", "silver", "gold", "platinum"], help="exit 1 below this tier"
    )
    p.set_defaults(func=cmd_plugin_check)

    p = sub.add_parser("migrate", parents=[common], help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    p = users.add_parser("create", parents=[common], help="create a user")
    p.add_argument("email")
    p.add_argument("--role", choices=["administrator", "agent"], required=True)
    p.add_argument("--name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_users_create)
    p = users.add_parser("list", parents=[common], help="list users")
    p.set_defaults(func=cmd_users_list)

    tokens = sub.add_parser("tokens", help="manage API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    p = tokens.add_parser("create", parents=[common], help="create a bearer token; printed as the last line")
    p.add_argument("email")
    p.add_argument("--name", default="cli")
    p.set_defaults(func=cmd_tokens_create)

    p = sub.add_parser(
        "replay", parents=[common], help="re-parse stored raw events with the installed plugins"
    )
    p.add_argument("--channel")
    p.add_argument("--since", help="ISO time with timezone")
    p.add_argument("--all", action="store_true", help="also re-run events that were processed already")
    p.add_argument("--page-size", type=int, default=500, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=(os.environ.get(LOG_LEVEL_VAR) or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Migration chatter on every command hides what the command itself says.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
