"""The bots' shapes: what an admin writes (``BotIn``, ``BotPatch``) and reads (``BotOut``), and the
``conversation.handed_over`` event's data. The web layer, the event catalogue and the service
share them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
    field_validator,
    model_validator,
)

from hub.bots.flows import Flow, json_int
from hub.limits import Id, omit_null

__all__ = [
    "BotCreated",
    "BotDeleted",
    "BotIn",
    "BotList",
    "BotOut",
    "BotPatch",
    "BotRef",
    "HandedOver",
    "HandoffIn",
]

BotName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Printable ASCII only (a URL is; percent-encode the rest): written out, not \S, which engines
# read differently.
WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2048)]
Attempts = json_int(1, 20)
Timeout = Annotated[StrictFloat, Field(ge=0.5, le=60)]
Trigger = Literal["bot", "human_reply", "agent", "failure", "bot_removed"]


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null; omit the field to leave it unchanged")
    return value


def _kind_schema(schema: dict[str, Any]) -> None:
    """The document says what ``_kind_fits`` checks: a webhook bot (``kind`` omitted or
    ``webhook``) has a ``webhook_url`` and no ``flow``; a built-in one a ``flow`` and no URL."""
    omit_null("webhook_url", "flow")(schema)
    schema["oneOf"] = [
        {
            "properties": {"kind": {"const": "webhook"}},
            "required": ["webhook_url"],
            "not": {"required": ["flow"]},
        },
        {
            "properties": {"kind": {"const": "builtin"}},
            "required": ["kind", "flow"],
            "not": {"required": ["webhook_url"]},
        },
    ]


class BotIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_kind_schema)

    name: BotName
    kind: Literal["webhook", "builtin"] = Field(
        default="webhook",
        description="webhook: the hub POSTs events to webhook_url, signed; builtin: the hub runs `flow`",
    )
    webhook_url: WebhookUrl | None = Field(default=None, description="required for a webhook bot")
    flow: Flow | None = Field(default=None, description="required for a built-in bot")
    channel_ids: list[Id] = Field(
        default_factory=list, max_length=100, description="channels whose new conversations it takes"
    )
    enabled: StrictBool = True
    timeout_seconds: StrictFloat = Field(default=10.0, ge=0.5, le=60, description="per delivery attempt")
    max_attempts: Attempts = Field(default=5, description="attempts per event before handing over")  # type: ignore[valid-type]

    @field_validator("webhook_url", "flow", mode="before")
    @classmethod
    def _nn(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field")
        return value

    @model_validator(mode="after")
    def _kind_fits(self) -> BotIn:
        if self.kind == "webhook" and (self.webhook_url is None or self.flow is not None):
            raise ValueError("a webhook bot needs webhook_url and no flow")
        if self.kind == "builtin" and (self.flow is None or self.webhook_url is not None):
            raise ValueError("a built-in bot needs a flow and no webhook_url")
        return self


class BotPatch(BaseModel):
    """Omitted fields stay as they are; the kind never changes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=omit_null(
            "name", "webhook_url", "flow", "channel_ids", "enabled", "timeout_seconds", "max_attempts"
        ),
    )

    name: BotName | None = None
    webhook_url: WebhookUrl | None = None
    flow: Flow | None = None
    channel_ids: list[Id] | None = Field(default=None, max_length=100)
    enabled: StrictBool | None = None
    timeout_seconds: Timeout | None = None
    max_attempts: Attempts | None = None  # type: ignore[valid-type]
    rotate_credentials: StrictBool = Field(
        default=False, description="issue a new token and signing secret (shown once); the old ones stop"
    )

    @field_validator(
        "name",
        "webhook_url",
        "flow",
        "channel_ids",
        "enabled",
        "timeout_seconds",
        "max_attempts",
        mode="before",
    )
    @classmethod
    def _nn(cls, value: Any) -> Any:
        return _not_null(value)


class BotOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    kind: Literal["webhook", "builtin"]
    enabled: bool
    webhook_url: str | None
    flow: Flow | None
    channel_ids: list[str]
    timeout_seconds: float
    max_attempts: int
    created_at: str
    updated_at: str


class BotCreated(BotOut):
    """The bot, with its credentials: shown this once, stored only as a hash (token) or sealed."""

    token: str | None = Field(description="the bot's bearer token for the app API")
    signing_secret: str | None = Field(description="the key of the webhook signatures (webhook bots)")


class BotList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bots: list[BotOut]


class HandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None, description="why: kept as a private note on the conversation"
    )


class BotRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["bot"]
    id: str
    name: str | None = None


class HandedOver(BaseModel):
    """A bot let go of a conversation: from now on it receives none of its events."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    channel_id: str
    bot: BotRef
    trigger: Trigger = Field(
        description="bot (it asked), human_reply (an agent wrote), agent (an agent took over), "
        "failure (the bot did not answer), bot_removed (deleted, disabled or detached)"
    )
    reason: str
    status: str = Field(description="the conversation's status after the handoff")
    by: dict[str, Any] = Field(description="who caused it (an ActorRef)")
    handed_over_at: str


class BotDeleted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    deleted: Literal[True]
