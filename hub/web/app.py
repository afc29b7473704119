"""The application factory: plugins, storage, workers and routes, each resource in one cleanup
context that starts it and stops what it started."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import __version__
from hub.access import Actor
from hub.actions import ActionExecutor
from hub.appkeys import (
    ACTIONS,
    AGENTS,
    ATTRIBUTES,
    AUTOMATION_ENGINE,
    AUTOMATIONS,
    AVAILABILITY,
    BOT_CONSUMER,
    BOT_DELIVERY,
    BOTS,
    CHANNEL_ADMIN,
    CHANNELS,
    CONFIG,
    CONFIG_REGISTRY,
    CONNECTIONS,
    CONTACTS,
    CONVERSATIONS,
    DELIVERIES,
    EVENTS,
    HTTP,
    INGEST,
    LABELS,
    LOGINS,
    MACROS,
    MEDIA,
    MEDIA_WORKER,
    MESSAGES,
    METRICS,
    NOTES,
    NOTIFICATION_CONSUMER,
    NOTIFICATION_DELIVERY,
    NOTIFICATIONS,
    NOTIFIER_REGISTRY,
    NOTIFIERS,
    ORG,
    OUTBOX,
    PLUGIN_MANAGER,
    PLUGIN_REPORT,
    PROCESSOR,
    QUICK_REPLIES,
    RAW_INBOX,
    REDACTOR,
    REGISTRY,
    SEARCH,
    SEND_WRITER,
    SESSIONS,
    STORE,
    TEAMS,
    TOKEN_CACHE,
    UPLOADS,
)
from hub.automations.engine import AutomationEngine
from hub.automations.service import AutomationService
from hub.bots.consumer import BotConsumer
from hub.bots.delivery import BotDeliveryWorker
from hub.bots.service import BotService
from hub.channels import ChannelService, SettingsInvalid
from hub.config import HubConfig
from hub.console import setup_console
from hub.db import Database
from hub.errors import ConfigError
from hub.events import EventBus, Store
from hub.fanout import INBOX, Feed
from hub.groupcommit import GroupCommit
from hub.http import provider_client
from hub.inbound import InboundProcessor, RawInbox
from hub.ingest import IngestRunner
from hub.leader import WINDOWS_LEADER, while_leading
from hub.logins import LoginGuard, LoginLimits
from hub.media import MediaStore, MediaWorker
from hub.metrics import Metrics
from hub.migrate import upgrade
from hub.models import Event
from hub.notify import Notifier, NotifierContext
from hub.notify.consumer import NotificationConsumer
from hub.notify.delivery import DeliveryWorker
from hub.notify.service import NotificationService
from hub.outbound import OutboxWorker, write_sends
from hub.plugins import event_observer, load_automation_hooks, load_notifiers, load_plugins
from hub.profiles import ProfileWorker
from hub.redact import SecretRedactor
from hub.retention import Retention, RetentionPolicy
from hub.security import SecretBox, load_secret_key
from hub.services.agents import AgentService
from hub.services.attributes import AttributeService
from hub.services.availability import AvailabilityService
from hub.services.channels import ChannelAdmin
from hub.services.config import ConfigRegistry, Loader
from hub.services.contacts import ContactService
from hub.services.conversations import ConversationService
from hub.services.deliveries import DeliveryService
from hub.services.errors import ServiceError
from hub.services.events import EventService
from hub.services.labels import LabelService
from hub.services.macros import MacroService
from hub.services.messages import MessageService
from hub.services.notes import NoteService
from hub.services.organisation import OrgService
from hub.services.quick_replies import QuickReplyService
from hub.services.search import SearchService
from hub.services.teams import TeamService
from hub.sessions import Sessions
from hub.timers import Connections, TimedWork
from hub.uploads import UploadStore
from hub.users import TokenCache
from hub.web import admin, api, automations, bots, notifications, org, routing, stream, webhooks, workspace
from hub.web import config as config_routes
from hub.web.asyncapi import build_asyncapi
from hub.web.cors import cors_middleware
from hub.web.errors import ProtocolLog, error_middleware
from hub.web.event_catalogue import check_event
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
        last = await store.horizon()
    except Exception:
        # The exception's text names hosts, databases and users: it goes to the log, never to
        # an unauthenticated caller.
        log.exception("health check: the database did not answer")
        return web.json_response({"status": "error", "database": "unavailable"}, status=503)
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
@operation("Prometheus metrics", "ops", auth=None, response={"type": "string"}, response_type="text/plain")
async def metrics(request: web.Request) -> web.StreamResponse:
    m = request.app[METRICS]
    m.last_seq.set(request.app[STORE].bus.last_seq)
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")


@routes.get("/openapi.json")
@operation("This document", "ops", auth=None)
async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_openapi(request.app, request.app[CONFIG].hub.public_url))


@routes.get("/asyncapi.json")
@operation(
    "The AsyncAPI document of the event stream (/api/v1/stream): frames, ping and pong, close codes",
    "ops",
    auth=None,
    response={"type": "object"},
)
async def asyncapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_asyncapi(request.app[CONFIG].hub.public_url))


@web.middleware
async def timing_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request latency per route (the route's pattern, never the raw path: ids would explode it)."""
    start = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].request(route, time.perf_counter() - start)


def create_app(
    config: HubConfig, *, extra_plugins: list[tuple[str, object]] | None = None
) -> web.Application:
    """Build the hub. Plugins load here (not at import), so a test can add its own for one app."""
    pm, registry, report = load_plugins(extra=extra_plugins)
    app = web.Application(
        middlewares=[cors_middleware, timing_middleware, error_middleware],
        client_max_size=config.hub.max_body_bytes,
        handler_args={"logger": ProtocolLog(logging.getLogger("aiohttp.server"))},
    )
    app[CONFIG] = config
    app[PLUGIN_MANAGER] = pm
    app[REGISTRY] = registry
    app[NOTIFIER_REGISTRY] = load_notifiers(pm, report)
    load_automation_hooks(pm, report)
    app[PLUGIN_REPORT] = report
    app[METRICS] = Metrics()
    app[TOKEN_CACHE] = TokenCache()
    # One context per resource, started in this order and stopped in the reverse one: a worker
    # stops before what it uses (the inbox before nothing, the outbox before the HTTP client...).
    app.cleanup_ctx.extend(
        [
            _redaction,
            _database,
            _http,
            _logins,
            _channels,
            _raw_inbox,
            _processor,
            _media,
            _profiles,
            _outbox,
            _services,
            _notifications,
            _automations,
            _bots,
            _ingest_loops,
            _window_watcher,
            _retention,
            _timers,
        ]
    )
    for table in (
        routes,
        webhooks.routes,
        api.routes,
        stream.routes,
        admin.routes,
        org.routes,
        routing.routes,
        config_routes.routes,
        workspace.routes,
        notifications.routes,
        automations.routes,
        bots.routes,
    ):
        app.add_routes(table)
    setup_console(app, config)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG].hub
    db = Database(cfg.database_url, pool_size=cfg.database_pool_size)
    await upgrade(db)
    store = Store(
        db, EventBus(max_bytes=cfg.stream_queue_bytes), check=check_event if cfg.check_events else None
    )
    store.bus.last_seq = await store.last_seq()
    store.bus.observers.append(event_observer(app[PLUGIN_MANAGER]))
    app[STORE] = store
    # Several processes may share a PostgreSQL database: each publishes every process's events.
    feed = None if db.is_sqlite else Feed(store)
    if feed is not None:
        await feed.start()
    yield
    if feed is not None:
        await feed.stop()
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
    app[SESSIONS] = Sessions(app[STORE], app[TOKEN_CACHE], cfg.access_token_ttl, cfg.refresh_token_ttl)
    yield
    guard.close()


async def _channels(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    box = SecretBox(load_secret_key(cfg.hub.secret_key, cfg.hub.data_dir))
    svc = ChannelService(
        app[STORE], app[REGISTRY], box, app[HTTP], cfg.hub.public_url, redactor=app[REDACTOR]
    )
    await svc.load_all()
    app[CHANNELS] = svc
    feed = app[STORE].feed
    if feed is not None:
        feed.on_remote.append(svc.follow)
    for decl in cfg.channels:
        if decl.type not in app[REGISTRY]:
            raise ConfigError(
                f"channel {decl.id!r} in the config file has type {decl.type!r}, which no "
                f"installed plugin provides (installed: {', '.join(sorted(app[REGISTRY].types()))})"
            )
        try:
            await svc.upsert(decl.id, decl.type, decl.name, decl.enabled, decl.settings, source="config")
        except SettingsInvalid as exc:
            problems = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
            raise ConfigError(f"channel {decl.id!r} in the config file: {problems}") from None
        except ServiceError as exc:  # e.g. a stored channel of that id has another type
            raise ConfigError(f"channel {decl.id!r} in the config file: {exc.message}") from None
    yield
    try:
        await asyncio.wait_for(svc.drain(), 10)
    except TimeoutError:
        log.warning("health checks still running at shutdown were abandoned")


async def _redaction(app: web.Application) -> AsyncIterator[None]:
    """Mask channel secrets in every log record (hub.redact); ``_channels`` keeps them current."""
    redactor = SecretRedactor()
    app[REDACTOR] = redactor
    uninstall = redactor.install()
    yield
    uninstall()


async def _raw_inbox(app: web.Application) -> AsyncIterator[None]:
    """Webhooks are stored even on a web-only node (``run_workers = false``)."""
    cfg = app[CONFIG].hub
    raw = RawInbox(app[STORE], max_queued=cfg.max_queued_deliveries, max_pending=cfg.max_pending_deliveries)
    app[RAW_INBOX] = raw
    await raw.start()
    yield
    await raw.stop()


async def _processor(app: web.Application) -> AsyncIterator[None]:
    processor = InboundProcessor(app[STORE], app[CHANNELS], metrics=app[METRICS])
    app[RAW_INBOX].on_stored.append(processor.notify)
    feed = app[STORE].feed
    if feed is not None:
        # Deliveries stored here may be applied by another process, and the other way round.
        app[RAW_INBOX].on_stored.append(lambda _new: feed.signal(INBOX))
        feed.on_signal.setdefault(INBOX, []).append(processor.notify)
    app[PROCESSOR] = processor
    if app[CONFIG].hub.run_workers:
        await processor.start()
    else:
        log.warning("run_workers is off: deliveries and sends are stored, not processed, by this process")
    yield
    await processor.stop()


async def _media(app: web.Application) -> AsyncIterator[None]:
    cfg, store = app[CONFIG].hub, app[STORE]
    media = MediaStore(cfg.media_dir, store)
    worker = MediaWorker(store, app[CHANNELS], media, cfg.public_url)
    app[MEDIA], app[MEDIA_WORKER] = media, worker

    def wake(ev: Event) -> None:
        if ev.type == "message.created" and ev.data.get("attachments"):
            worker.notify()

    store.bus.observers.append(wake)
    if cfg.run_workers:
        await worker.start()
    yield
    await worker.stop()
    store.bus.observers.remove(wake)


async def _profiles(app: web.Application) -> AsyncIterator[None]:
    """Names the webhooks did not carry, fetched after the message is stored (hub.profiles)."""
    store = app[STORE]
    worker = ProfileWorker(store, app[CHANNELS])
    store.bus.observers.append(worker.observe)
    if app[CONFIG].hub.run_workers:
        await worker.start()
    yield
    await worker.stop()
    store.bus.observers.remove(worker.observe)


async def _outbox(app: web.Application) -> AsyncIterator[None]:
    cfg, store = app[CONFIG].hub, app[STORE]
    app[SEND_WRITER] = GroupCommit(store, write_sends)
    outbox = OutboxWorker(
        store,
        app[CHANNELS],
        concurrency=max(cfg.workers, 1) * 32,
        lease=cfg.outbox_lease,
        grace=cfg.outbox_grace,
        metrics=app[METRICS],
    )
    app[OUTBOX] = outbox
    if cfg.run_workers:
        await outbox.start()
    yield
    await outbox.stop()


@contextlib.asynccontextmanager
async def _tasks(*tasks: asyncio.Task[None]) -> AsyncIterator[None]:
    """Run background tasks for the body's duration; then cancel them and wait until they end."""
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _ingest_loops(app: web.Application) -> AsyncIterator[None]:
    """The long-running ingest loop of each pull channel (IMAP), kept in step with the channels:
    one enabled, changed or disabled through the admin API starts, restarts or stops at once."""
    svc = app[CHANNELS]
    runner = IngestRunner(svc, app[RAW_INBOX])
    app[INGEST] = runner
    if app[CONFIG].hub.run_workers:
        svc.on_change.append(runner.sync)
        runner.sync()
    yield
    if runner.sync in svc.on_change:
        svc.on_change.remove(runner.sync)
    await runner.stop()


async def _window_watcher(app: web.Application) -> AsyncIterator[None]:
    tasks = []
    if app[CONFIG].hub.run_workers:
        watcher = WindowWatcher(app[STORE], app[CHANNELS])
        # One process announces each closed window, not every process.
        lead = while_leading(app[STORE].db, WINDOWS_LEADER, "reply-window announcements", watcher.run)
        tasks.append(asyncio.create_task(lead, name="hub-window-watcher"))
    async with _tasks(*tasks):
        yield


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Prunes the event log and deletes what outlived its retention (``hub.retention``)."""
    cfg = app[CONFIG].hub
    worker = Retention(
        app[STORE],
        RetentionPolicy.from_config(cfg),
        media_root=cfg.media_dir,
        uploads_root=cfg.uploads_dir,
        interval=cfg.retention_interval,
    )
    await worker.start()
    yield
    await worker.stop()


async def _services(app: web.Application) -> AsyncIterator[None]:
    """The services the web layer calls; they hold no resource of their own."""
    store, channels = app[STORE], app[CHANNELS]
    # The configuration the app caches: each service registers its resources (hub.services.config).
    config = app[CONFIG_REGISTRY] = ConfigRegistry(store)
    org = OrgService(store, app[TOKEN_CACHE])
    known_channel = lambda channel_id: channel_id in channels.rows  # noqa: E731
    teams = TeamService(org, known_channel, config)
    app[ORG], app[TEAMS] = org, teams
    if store.feed is not None:
        store.feed.on_remote.append(org.follow)
    channel_admin = app[CHANNEL_ADMIN] = ChannelAdmin(channels, teams)
    config.register("channels", _channels_resource(channel_admin), per_user=True)
    config.register("permissions", _own_permissions, per_user=True)
    app[LABELS] = LabelService(store, config)
    attributes = app[ATTRIBUTES] = AttributeService(store, config)
    app[AVAILABILITY] = AvailabilityService(org, known_channel, config)
    app[CONVERSATIONS] = ConversationService(store, channels, attributes)
    app[MESSAGES] = MessageService(store, channels, app[MEDIA], app[SEND_WRITER])
    app[EVENTS] = EventService(store)
    app[CONTACTS] = ContactService(store, attributes)
    app[AGENTS] = AgentService(store)
    app[SEARCH] = SearchService(store)
    app[UPLOADS] = UploadStore(app[CONFIG].hub.uploads_dir, app[CONFIG].hub.max_upload_bytes)
    app[DELIVERIES] = DeliveryService(channels, app[PROCESSOR])
    app[QUICK_REPLIES] = quick_replies = QuickReplyService(store, config)
    app[NOTES] = NoteService(store)
    app[ACTIONS] = executor = ActionExecutor(store, channels, quick_replies, on_sent=app[OUTBOX].notify)
    app[MACROS] = MacroService(store, executor, config)
    app[NOTIFICATIONS] = NotificationService(store, app[NOTIFIER_REGISTRY], config)
    yield


def _channels_resource(channel_admin: ChannelAdmin) -> Loader:
    """``channels``: the activated channels the reader serves, with capabilities and health."""

    async def load(conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
        return {"channels": channel_admin.visible(actor)}

    return load


async def _own_permissions(conn: AsyncConnection, actor: Actor) -> dict[str, Any]:
    """``permissions``: the reader's role and effective permissions."""
    return {"role": actor.role, "permissions": sorted(actor.permissions)}


def _configured_notifiers(app: web.Application) -> dict[str, Notifier]:
    """An instance of each notifier the config file sets up (``[notifiers.NAME]``)."""
    cfg, registry = app[CONFIG], app[NOTIFIER_REGISTRY]
    out: dict[str, Notifier] = {}
    for name, values in cfg.notifiers.items():
        cls = registry.get(name)
        if cls is None:
            raise ConfigError(
                f"[notifiers.{name}] in the config file names no installed notifier "
                f"(installed: {', '.join(sorted(registry.types()))})"
            )
        try:
            settings = cls.Settings.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"[notifiers.{name}] in the config file: {problems}") from None
        context = NotifierContext(app[HTTP], logging.getLogger(f"hub.notifier.{name}"), cfg.hub.public_url)
        out[name] = cls(settings, context)
    return out


async def _notifications(app: web.Application) -> AsyncIterator[None]:
    """Who is told of what (a consumer of the event log) and the deliveries through notifiers."""
    cfg, store = app[CONFIG], app[STORE]
    app[NOTIFIERS] = notifiers = _configured_notifiers(app)
    delivery = DeliveryWorker(store, notifiers, cfg.hub.public_url)
    consumer = NotificationConsumer(store, notifiers, on_deliveries=delivery.notify)
    app[NOTIFICATION_DELIVERY], app[NOTIFICATION_CONSUMER] = delivery, consumer
    consumer.attach()
    if cfg.hub.run_workers:
        await consumer.start()
        await delivery.start()
    yield
    consumer.detach()
    await consumer.stop()
    await delivery.stop()
    for notifier in notifiers.values():
        try:
            await notifier.aclose()
        except Exception:
            log.exception("notifier %r failed to close", notifier.name)


async def _automations(app: web.Application) -> AsyncIterator[None]:
    """Rules, the out-of-office reply and time triggers: a consumer of the event log
    (``hub.automations``)."""
    cfg, store = app[CONFIG].hub, app[STORE]
    app[AUTOMATIONS] = AutomationService(store, app[CHANNELS], app[CONFIG_REGISTRY])
    engine = AutomationEngine(
        store,
        app[ACTIONS],
        app[CHANNELS],
        max_depth=cfg.automation_max_depth,
        messages_per_hour=cfg.automation_messages_per_hour,
    )
    app[AUTOMATION_ENGINE] = engine
    engine.attach()
    if cfg.run_workers:
        await engine.start()
    yield
    engine.detach()
    await engine.stop()


async def _bots(app: web.Application) -> AsyncIterator[None]:
    """Agent bots: the event log to deliveries (a consumer), and the deliveries to the bots."""
    store = app[STORE]
    app[BOTS] = bots = BotService(store, app[CHANNELS].box)
    delivery = BotDeliveryWorker(store, bots, app[CHANNELS], app[HTTP], on_sent=app[OUTBOX].notify)
    consumer = BotConsumer(store, on_deliveries=delivery.notify)
    app[BOT_DELIVERY], app[BOT_CONSUMER] = delivery, consumer
    consumer.attach()
    if app[CONFIG].hub.run_workers:
        await consumer.start()
        await delivery.start()
    yield
    consumer.detach()
    await consumer.stop()
    await delivery.stop()


async def _timers(app: web.Application) -> AsyncIterator[None]:
    """Snoozes that run out and agents who left long ago (auto-offline)."""
    cfg = app[CONFIG].hub
    app[CONNECTIONS] = connections = Connections(app[STORE])
    timed = TimedWork(app[STORE], connections, cfg.auto_offline_minutes)
    if cfg.run_workers:
        await timed.start()
    yield
    await timed.stop()
