"""The application's typed state keys: every shared object lives on the app under one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pluggy
from aiohttp import web

if TYPE_CHECKING:
    from hub.actions import ActionExecutor
    from hub.automations.engine import AutomationEngine
    from hub.automations.service import AutomationService
    from hub.bots.consumer import BotConsumer
    from hub.bots.delivery import BotDeliveryWorker
    from hub.bots.service import BotService
    from hub.channels import ChannelService
    from hub.config import HubConfig
    from hub.events import Store
    from hub.groupcommit import GroupCommit
    from hub.inbound import InboundProcessor, RawInbox
    from hub.ingest import IngestRunner
    from hub.logins import LoginGuard
    from hub.media import MediaStore, MediaWorker
    from hub.metrics import Metrics
    from hub.notify import Notifier, NotifierRegistry
    from hub.notify.consumer import NotificationConsumer
    from hub.notify.delivery import DeliveryWorker
    from hub.notify.service import NotificationService
    from hub.outbound import OutboxWorker
    from hub.plugins import ChannelRegistry, PluginReport
    from hub.redact import SecretRedactor
    from hub.services.agents import AgentService
    from hub.services.attributes import AttributeService
    from hub.services.availability import AvailabilityService
    from hub.services.channels import ChannelAdmin
    from hub.services.config import ConfigRegistry
    from hub.services.contacts import ContactService
    from hub.services.conversations import ConversationService
    from hub.services.deliveries import DeliveryService
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
    from hub.timers import Connections
    from hub.uploads import UploadStore
    from hub.users import TokenCache

CONFIG: web.AppKey[HubConfig] = web.AppKey("config")
PLUGIN_MANAGER: web.AppKey[pluggy.PluginManager] = web.AppKey("plugin_manager")
REGISTRY: web.AppKey[ChannelRegistry] = web.AppKey("registry")
PLUGIN_REPORT: web.AppKey[PluginReport] = web.AppKey("plugin_report")
STORE: web.AppKey[Store] = web.AppKey("store")
HTTP: web.AppKey[httpx.AsyncClient] = web.AppKey("http")
CHANNELS: web.AppKey[ChannelService] = web.AppKey("channels")
RAW_INBOX: web.AppKey[RawInbox] = web.AppKey("raw_inbox")
PROCESSOR: web.AppKey[InboundProcessor] = web.AppKey("processor")
OUTBOX: web.AppKey[OutboxWorker] = web.AppKey("outbox")
MEDIA: web.AppKey[MediaStore] = web.AppKey("media")
MEDIA_WORKER: web.AppKey[MediaWorker] = web.AppKey("media_worker")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SEND_WRITER: web.AppKey[GroupCommit[dict[str, Any]]] = web.AppKey("send_writer")
TOKEN_CACHE: web.AppKey[TokenCache] = web.AppKey("token_cache")
INGEST: web.AppKey[IngestRunner] = web.AppKey("ingest")
LOGINS: web.AppKey[LoginGuard] = web.AppKey("logins")
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")
REDACTOR: web.AppKey[SecretRedactor] = web.AppKey("redactor")
ORG: web.AppKey[OrgService] = web.AppKey("org")
TEAMS: web.AppKey[TeamService] = web.AppKey("teams")
CHANNEL_ADMIN: web.AppKey[ChannelAdmin] = web.AppKey("channel_admin")
CONVERSATIONS: web.AppKey[ConversationService] = web.AppKey("conversations")
MESSAGES: web.AppKey[MessageService] = web.AppKey("messages")
EVENTS: web.AppKey[EventService] = web.AppKey("events")
AVAILABILITY: web.AppKey[AvailabilityService] = web.AppKey("availability")
CONNECTIONS: web.AppKey[Connections] = web.AppKey("connections")
CONTACTS: web.AppKey[ContactService] = web.AppKey("contacts")
CONFIG_REGISTRY: web.AppKey[ConfigRegistry] = web.AppKey("config_registry")
LABELS: web.AppKey[LabelService] = web.AppKey("labels")
ATTRIBUTES: web.AppKey[AttributeService] = web.AppKey("attributes")
UPLOADS: web.AppKey[UploadStore] = web.AppKey("uploads")
AGENTS: web.AppKey[AgentService] = web.AppKey("agents")
SEARCH: web.AppKey[SearchService] = web.AppKey("search")
QUICK_REPLIES: web.AppKey[QuickReplyService] = web.AppKey("quick_replies")
NOTES: web.AppKey[NoteService] = web.AppKey("notes")
ACTIONS: web.AppKey[ActionExecutor] = web.AppKey("actions")
MACROS: web.AppKey[MacroService] = web.AppKey("macros")
AUTOMATIONS: web.AppKey[AutomationService] = web.AppKey("automations")
AUTOMATION_ENGINE: web.AppKey[AutomationEngine] = web.AppKey("automation_engine")
NOTIFIER_REGISTRY: web.AppKey[NotifierRegistry] = web.AppKey("notifier_registry")
NOTIFIERS: web.AppKey[dict[str, Notifier]] = web.AppKey("notifiers")
NOTIFICATIONS: web.AppKey[NotificationService] = web.AppKey("notifications")
NOTIFICATION_CONSUMER: web.AppKey[NotificationConsumer] = web.AppKey("notification_consumer")
NOTIFICATION_DELIVERY: web.AppKey[DeliveryWorker] = web.AppKey("notification_delivery")
DELIVERIES: web.AppKey[DeliveryService] = web.AppKey("deliveries")
BOTS: web.AppKey[BotService] = web.AppKey("bots")
BOT_CONSUMER: web.AppKey[BotConsumer] = web.AppKey("bot_consumer")
BOT_DELIVERY: web.AppKey[BotDeliveryWorker] = web.AppKey("bot_delivery")
