"""Response shapes of the app API, for the OpenAPI document and the tests that hold the API to it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hub.models import Conversation, Event, Message

__all__ = [
    "ChannelList",
    "ChannelOut",
    "ConversationPage",
    "EventPage",
    "HealthOut",
    "LoginOut",
    "MessagePage",
    "PluginsOut",
    "UploadOut",
    "UserOut",
]


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    role: str
    permissions: list[str]
    active: bool
    created_at: str


class LoginOut(BaseModel):
    token: str
    token_type: str = "bearer"
    user: UserOut


class HealthOut(BaseModel):
    state: str = Field(description="ok, connecting, auth_failed, rate_limited, unreachable, paused, unknown")
    action: str = Field(description="What the state asks of an admin")
    last_error: str | None
    since: str


class ChannelOut(BaseModel):
    id: str
    type: str
    name: str
    enabled: bool
    health: HealthOut
    capabilities: dict[str, Any] | None
    mode: str | None
    sending_paused: bool
    source: str | None = Field(default=None, description="admin views only: api or config")
    plugin_installed: bool | None = None
    settings: dict[str, Any] | None = Field(default=None, description="admin views only; secrets masked")
    setup: dict[str, str] | None = Field(default=None, description="admin views only: webhook URL and fields")
    created_at: str | None = None
    updated_at: str | None = None


class ChannelList(BaseModel):
    channels: list[ChannelOut]
    types: list[str] | None = Field(default=None, description="admin view: installed channel types")


class ConversationPage(BaseModel):
    conversations: list[Conversation]
    next_cursor: str | None


class MessagePage(BaseModel):
    messages: list[Message]
    next_before: str | None


class EventPage(BaseModel):
    events: list[Event]
    last_seq: int
    has_more: bool


class UploadOut(BaseModel):
    upload_id: str
    size: int
    mime_type: str
    filename: str


class PluginOut(BaseModel):
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str]
    channels: list[str]
    plugin_api: str | None = Field(description="The plugin API range its manifest declares")
    warnings: list[str] = Field(description="Deprecated parts of the plugin API it uses")


class PluginFailure(BaseModel):
    name: str
    error: str


class PluginsOut(BaseModel):
    plugin_api: str = Field(description="The plugin API version this hub provides")
    plugins: list[PluginOut]
    failed: list[PluginFailure]
    disabled: list[str]
