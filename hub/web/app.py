"""The application factory: plugins, storage, workers and routes, each resource in one cleanup
context that starts it and stops what it started."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from hub import __version__
from hub.appkeys import (
    CHANNELS,
    CONFIG,
    HTTP,
    LOGINS,
    MEDIA,
    MEDIA_WORKER,
    METRICS,
    OUTBOX,
    PLUGIN_MANAGER,
    PLUGIN_REPORT,
    PROCESSOR,
    RAW_INBOX,
    REGISTRY,
    SEND_WRITER,
    STORE,
    TOKEN_CACHE,
)
from hub.channels import ChannelService, SettingsInvalid
from hub.config import HubConfig
from hub.db import Database
from hub.errors import ConfigError
from hub.events import EventBus, Store
from hub.groupcommit import GroupCommit
from hub.http import provider_client
from hub.inbound import InboundProcessor, RawInbox
from hub.logins import LoginGuard, LoginLimits
from hub.media import MediaStore, MediaWorker
from hub.metrics import Metrics
from hub.migrate import upgrade
from hub.models import Event
from hub.outbound import OutboxWorker, write_sends
from hub.plugins import load_plugins
from hub.security import SecretBox, load_secret_key
from hub.users import TokenCache
from hub.web import admin, api, stream, webhooks
from hub.web.errors import ProtocolLog, error_middleware
from hub.web.openapi import build_openapi, operation
from hub.windows import WindowWatcher

__all__ = ["create_app"]

log = logging.getLogger("hub.app")
routes = web.RouteTableDef()


@routes.get("/healthz")
@operation("Liveness and readiness", "ops", auth=None)
async def healthz(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    try:
        last = await store.last_seq()
    except Exception as exc:
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    svc = request.app[CHANNELS]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "database": store.db.dialect,
            "last_seq": last,
            "channels": {cid: svc.rows[cid]["health"].get("state", "unknown") for cid in svc.instances},
        }
    )


@routes.get("/metrics")
@operation("Prometheus metrics", "ops", auth=None, response={"type": "string"})
async def metrics(request: web.Request) -> web.StreamResponse:
    m = request.app[METRICS]
    m.last_seq.set(request.app[STORE].bus.last_seq)
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")


@routes.get("/openapi.json")
@operation("This document", "ops", auth=None)
async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_openapi(request.app, request.app[CONFIG].hub.public_url))


@web.middleware
async def timing_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request latency per route (the route's pattern, never the raw path: ids would explode it)."""
    start = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].request_seconds.labels(route).observe(time.perf_counter() - start)


def create_app(
    config: HubConfig, *, extra_plugins: list[tuple[str, object]] | None = None
) -> web.Application:
    """Build the hub. Plugins load here (not at import), so a test can add its own for one app."""
    pm, registry, report = load_plugins(extra=extra_plugins)
    app = web.Application(
        middlewares=[timing_middleware, error_middleware],
        client_max_size=config.hub.max_body_bytes,
        handler_args={"logger": ProtocolLog(logging.getLogger("aiohttp.server"))},
    )
    app[CONFIG] = config
    app[PLUGIN_MANAGER] = pm
    app[REGISTRY] = registry
    app[PLUGIN_REPORT] = report
    app[METRICS] = Metrics()
    app[TOKEN_CACHE] = TokenCache()
    app.cleanup_ctx.extend([_database, _http, _logins, _channels, _workers])
    for table in (routes, webhooks.routes, api.routes, stream.routes, admin.routes):
        app.add_routes(table)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG].hub
    db = Database(cfg.database_url)
    await upgrade(db)
    store = Store(db, EventBus(max_bytes=cfg.stream_queue_bytes))
    store.bus.last_seq = await store.last_seq()
    pm = app[PLUGIN_MANAGER]

    def observe(ev: Event) -> None:
        for impl in pm.hook.hub_on_event.get_hookimpls():
            try:
                impl.function(event=ev)
            except Exception:
                log.exception(
                    "plugin %r failed in hub_on_event for %s #%d", impl.plugin_name, ev.type, ev.seq
                )

    store.bus.observers.append(observe)
    app[STORE] = store
    yield
    await db.dispose()


async def _http(app: web.Application) -> AsyncIterator[None]:
    client = provider_client(f"channel-hub/{__version__}")
    app[HTTP] = client
    yield
    await client.aclose()


async def _logins(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG].hub
    guard = LoginGuard(
        LoginLimits(per_address=cfg.login_rate_per_address, per_account=cfg.login_rate_per_account)
    )
    await guard.warm_up()
    app[LOGINS] = guard
    yield
    guard.close()


async def _channels(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    box = SecretBox(load_secret_key(cfg.hub.secret_key, cfg.hub.data_dir))
    svc = ChannelService(app[STORE], app[REGISTRY], box, app[HTTP], cfg.hub.public_url)
    await svc.load_all()
    app[CHANNELS] = svc
    for decl in cfg.channels:
        if decl.type not in app[REGISTRY]:
            raise ConfigError(
                f"channel {decl.id!r} in the config file has type {decl.type!r}, which no "
                f"installed plugin provides (installed: {', '.join(sorted(app[REGISTRY].types()))})"
            )
        try:
            await admin.upsert_channel(
                svc, decl.id, decl.type, decl.name, decl.enabled, decl.settings, source="config"
            )
        except SettingsInvalid as exc:
            problems = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
            raise ConfigError(f"channel {decl.id!r} in the config file: {problems}") from None
    yield
    try:
        await asyncio.wait_for(svc.drain(), 10)
    except TimeoutError:
        log.warning("health checks still running at shutdown were abandoned")


async def _workers(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG].hub
    store, svc = app[STORE], app[CHANNELS]
    app[SEND_WRITER] = GroupCommit(store, write_sends)
    raw = RawInbox(store)
    processor = InboundProcessor(store, svc, metrics=app[METRICS])
    raw.on_stored.append(processor.notify)
    outbox = OutboxWorker(store, svc, concurrency=max(cfg.workers, 1) * 32, metrics=app[METRICS])
    media = MediaStore(Path(cfg.data_dir) / "media", store)
    media_worker = MediaWorker(store, svc, media, cfg.public_url)
    app[RAW_INBOX], app[PROCESSOR], app[OUTBOX], app[MEDIA], app[MEDIA_WORKER] = (
        raw,
        processor,
        outbox,
        media,
        media_worker,
    )
    store.bus.observers.append(
        lambda ev: (
            media_worker.notify() if ev.type == "message.created" and ev.data.get("attachments") else None
        )
    )
    ingest_tasks = [
        asyncio.create_task(_ingest(app, cid), name=f"hub-ingest-{cid}")
        for cid, inst in svc.instances.items()
        if inst.mode == "pull" and cfg.run_workers
    ]
    pruner = asyncio.create_task(_prune(store, cfg.event_retention))
    watcher = asyncio.create_task(WindowWatcher(store, svc).run()) if cfg.run_workers else None
    await raw.start()
    if cfg.run_workers:
        await processor.start()
        await outbox.start()
        await media_worker.start()
    else:
        log.warning("run_workers is off: deliveries and sends are stored, not processed, by this process")
    yield
    pruner.cancel()
    if watcher is not None:
        watcher.cancel()
        ingest_tasks.append(watcher)
    for t in ingest_tasks:
        t.cancel()
    await outbox.stop()
    await media_worker.stop()
    await processor.stop()
    await raw.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(pruner, *ingest_tasks, return_exceptions=True)


async def _ingest(app: web.Application, channel_id: str) -> None:
    from hub.inbound import ChannelInbox

    inst = app[CHANNELS].get(channel_id)
    if inst is None:
        return
    inbox = ChannelInbox(app[RAW_INBOX], channel_id)
    while True:
        try:
            await inst.ingest(inbox)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingest loop of channel %s stopped; restarting in 10 s", channel_id)
            from hub.channel import HealthState

            app[CHANNELS].report_health(channel_id, HealthState.UNREACHABLE, str(exc)[:200])
            await asyncio.sleep(10)


async def _prune(store: Store, keep: int) -> None:
    while True:
        await asyncio.sleep(300)
        try:
            await store.prune_events(keep)
        except Exception:
            log.exception("pruning the event log failed")
