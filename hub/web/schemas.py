"""Response shapes of the app API, for the OpenAPI document and the tests that hold the API to it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.channel import Capabilities
from hub.models import AttachmentKind, Contact, Conversation, Message

__all__ = [
    "ActorRef",
    "AgentList",
    "AttributeDefinitionOut",
    "AttributeDefinitions",
    "AvailabilityList",
    "AvailabilityStatusOut",
    "ChannelList",
    "ChannelMembersOut",
    "ChannelOut",
    "ContactOut",
    "ContactPage",
    "ConversationCounts",
    "ConversationPage",
    "HealthOut",
    "InvitationOut",
    "InvitedUserOut",
    "LabelList",
    "LabelOut",
    "LoginOut",
    "MeOut",
    "MessagePage",
    "OwnPermissions",
    "PermissionList",
    "PluginsOut",
    "PolicyList",
    "PolicyOut",
    "PresenceOut",
    "RevokedOut",
    "RoleList",
    "RoleOut",
    "ScheduleList",
    "ScheduleOut",
    "SearchOut",
    "TeamList",
    "TeamOut",
    "UploadOut",
    "UserList",
    "UserOut",
]


class Out(BaseModel):
    """An answer: exactly these fields (the document says ``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


class ActorRef(Out):
    """Who made a change: a user, or the hub itself (``system``), a rule or a bot."""

    type: str = Field(description="user, system, rule or bot")
    id: str
    name: str | None = None


class UserOut(Out):
    id: str
    email: str
    name: str | None
    role: str
    active: bool
    availability: str
    created_at: str


class LoginUser(UserOut):
    permissions: list[str]


class TeamRef(Out):
    id: str
    name: str


class MeOut(LoginUser):
    all_channels: bool = Field(description="true for administrators: every channel is in scope")
    channel_ids: list[str] = Field(description="the activated channels this user serves")
    teams: list[TeamRef]


class RevokedOut(Out):
    user_id: str
    revoked: int = Field(description="how many tokens stopped working")


class UserList(Out):
    users: list[UserOut]


class InvitationOut(Out):
    token: str = Field(description="one-time set-password token; shown once")
    url: str = Field(description="where the user sets their password (POST the token and a password)")
    expires_at: str


class InvitedUserOut(Out):
    user: UserOut
    invitation: InvitationOut


class RoleOut(Out):
    name: str
    description: str | None
    permissions: list[str]
    builtin: bool


class RoleList(Out):
    roles: list[RoleOut]


class PermissionOut(Out):
    name: str
    description: str


class PermissionList(Out):
    permissions: list[PermissionOut]


class TeamOut(Out):
    id: str
    name: str
    member_ids: list[str]
    channel_ids: list[str]
    created_at: str


class TeamList(Out):
    teams: list[TeamOut]


class ScheduleOut(Out):
    """When a channel or a team answers: weekly hours in its time zone, and holidays (closed)."""

    id: str
    name: str
    scope_type: Literal["channel", "team"]
    scope_id: str
    timezone: str = Field(description="an IANA time zone, e.g. Europe/Berlin")
    weekly: dict[str, list[list[str]]] = Field(
        description='day ("mon" .. "sun") -> open intervals ["HH:MM", "HH:MM"] in that time zone '
        "(24:00 ends the day; an interval ending at or before its start runs past midnight); a day "
        "not named is closed"
    )
    holidays: list[str] = Field(description="dates (YYYY-MM-DD) closed all day")
    updated_at: str


class ScheduleList(Out):
    business_hours: list[ScheduleOut]


class ChannelMembersOut(Out):
    channel_id: str
    user_ids: list[str]
    team_ids: list[str]


class LoginOut(Out):
    token: str = Field(description="the bearer token")
    token_type: str = "bearer"
    expires_at: str = Field(description="when the token stops working (then refresh)")
    expires_in: int = Field(description="seconds until then")
    refresh_token: str = Field(description="trade it for a new pair once: POST /api/v1/auth/refresh")
    refresh_expires_at: str
    user: LoginUser


class HealthOut(Out):
    state: str = Field(description="ok, connecting, auth_failed, rate_limited, unreachable, paused, unknown")
    action: str = Field(description="What the state asks of an admin")
    last_error: str | None
    since: str


class ChannelOut(Out):
    id: str
    type: str
    name: str
    enabled: bool
    health: HealthOut
    capabilities: Capabilities | None
    mode: str | None
    sending_paused: bool
    source: str | None = Field(default=None, description="admin views only: api or config")
    plugin_installed: bool | None = None
    settings: dict[str, Any] | None = Field(default=None, description="admin views only; secrets masked")
    setup: dict[str, str] | None = Field(default=None, description="admin views only: webhook URL and fields")
    created_at: str | None = None
    updated_at: str | None = None


class ChannelList(Out):
    channels: list[ChannelOut]
    types: list[str] | None = Field(default=None, description="admin view: installed channel types")


class ConversationPage(Out):
    conversations: list[Conversation]
    next_cursor: str | None


class StatusCounts(Out):
    open: int
    pending: int
    resolved: int
    snoozed: int


class ConversationCounts(Out):
    counts: StatusCounts = Field(description="conversations per status, under the other filters")
    total: int


class AgentOut(Out):
    id: str
    name: str | None
    email: str
    role: str
    availability: str = Field(description="their availability status id")
    shows_as: str = Field(description="online, away or offline, as teammates see it")
    receives: bool = Field(description="their status receives new conversations")
    team_ids: list[str]
    open_conversations: int = Field(description="open and pending conversations assigned to them")


class AgentList(Out):
    agents: list[AgentOut]


class SearchOut(Out):
    messages: list[Message] = Field(description="messages holding every word, newest first")
    contacts: list[Contact] = Field(description="contacts whose name, phone or email holds every word")


class MessagePage(Out):
    messages: list[Message]
    next_before: str | None


class UploadOut(Out):
    upload_id: str = Field(description="give it as an attachment's upload_id when sending")
    size: int = Field(description="bytes stored")
    mime_type: str = Field(description="read from the file's content, not from the request's word")
    filename: str
    kind: AttachmentKind = Field(description="the attachment kind the file's type suggests")


class PluginOut(Out):
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str]
    channels: list[str]
    plugin_api: str | None = Field(description="The plugin API range its manifest declares")
    warnings: list[str] = Field(description="Deprecated parts of the plugin API it uses")
    tier: str | None = Field(description="Quality tier reached: bronze, silver, gold, platinum; null below")
    unmet: list[str] = Field(description="Quality rules not met yet (`hub plugin check NAME` says why)")


class PluginFailure(Out):
    name: str
    error: str


class PluginsOut(Out):
    plugin_api: str = Field(description="The plugin API version this hub provides")
    plugins: list[PluginOut]
    failed: list[PluginFailure]
    disabled: list[str]


class AvailabilityStatusOut(Out):
    id: str
    name: str
    receives: bool = Field(description="agents in it receive new conversations")
    push: bool = Field(description="agents in it get push notifications")
    shows_as: str = Field(description="online, away or offline, as teammates see it")
    builtin: bool


class AvailabilityList(Out):
    statuses: list[AvailabilityStatusOut]


class PresenceOut(Out):
    user_id: str
    status: str
    shows_as: str
    at: str
    by: ActorRef


class PolicyOut(Out):
    scope_type: str = Field(description="channel or team")
    scope_id: str
    policy: str = Field(description="manual, round_robin or balanced")
    capacity: int | None
    team_id: str | None
    updated_at: str


class PolicyList(Out):
    policies: list[PolicyOut]


class LabelOut(BaseModel):
    id: str
    name: str = Field(description="unique whatever its case")
    colour: str = Field(description="#rrggbb")
    description: str | None
    created_at: str
    updated_at: str


class LabelList(BaseModel):
    labels: list[LabelOut]


class AttributeDefinitionOut(BaseModel):
    id: str
    applies_to: str = Field(description="contact or conversation")
    key: str = Field(description="the key values are stored under in custom_attributes")
    name: str
    type: str = Field(description="text, number, date, list, checkbox or link")
    required: bool
    options: list[str] | None = Field(description="list: the allowed values")
    pattern: str | None = Field(description="text and link: a regular expression the whole value matches")
    min: float | str | None = Field(description="number: least value; date: earliest; text and link: length")
    max: float | str | None = Field(description="number: greatest value; date: latest; text and link: length")
    description: str | None
    position: int
    created_at: str
    updated_at: str


class AttributeDefinitions(BaseModel):
    contact: list[AttributeDefinitionOut]
    conversation: list[AttributeDefinitionOut]


class OwnPermissions(BaseModel):
    role: str
    permissions: list[str]


class AttributeProblem(BaseModel):
    key: str
    message: str = Field(description="why the stored value no longer fits its definition (it is kept)")


class ChannelIdentity(BaseModel):
    channel_id: str
    identity: str


class ContactOut(BaseModel):
    id: str
    channel_id: str = Field(description="the channel the contact was first seen on")
    name: str | None
    phone: str | None
    email: str | None
    identities: list[str] = Field(description="its ids on its own channel")
    channel_identities: list[ChannelIdentity] = Field(description="every id on every channel (merges add)")
    labels: list[str] = Field(description="the names of its labels, in name order")
    custom_attributes: dict[str, Any]
    attribute_problems: list[AttributeProblem]
    created_at: str
    updated_at: str


class ContactPage(BaseModel):
    contacts: list[ContactOut]
    next_cursor: str | None
