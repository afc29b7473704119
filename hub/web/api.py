"""The app API (v1): auth, channels, conversations, messages, uploads and attachments.

Handlers parse and render; the services (``hub.services``) read and write with the acting user's
scope and permissions applied.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from hub.appkeys import (
    AGENTS,
    BOTS,
    CHANNEL_ADMIN,
    CHANNELS,
    CONTACTS,
    CONVERSATIONS,
    LOGINS,
    MESSAGES,
    ORG,
    OUTBOX,
    SEARCH,
    SESSIONS,
    STORE,
    TEAMS,
    UPLOADS,
)
from hub.limits import Attributes, Id, Labels, Name, omit_null
from hub.logins import LoginRefused, TooManyLogins
from hub.models import Conversation, Message
from hub.outreach import start_conversation
from hub.services.conversations import ASSIGNEE_FILTERS, PRIORITIES, STATUSES
from hub.services.organisation import public_user
from hub.sessions import SessionRefused, SessionTokens
from hub.uploads import EmptyUpload, UploadTooLarge
from hub.web.auth import bearer_token, require_actor
from hub.web.config import config_response
from hub.web.errors import ApiError, query_int, query_text, read_json
from hub.web.openapi import operation, query_integer, with_seq
from hub.web.schemas import (
    AgentList,
    ChannelList,
    ContactOut,
    ContactPage,
    ConversationCounts,
    ConversationPage,
    LoginOut,
    MeOut,
    MessagePage,
    SearchOut,
    UploadOut,
)
from hub.web.sends import SendRequest

__all__ = ["routes"]

routes = web.RouteTableDef()


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class ConversationPatch(BaseModel):
    # Omitted leaves a field unchanged; null is refused where it means nothing (status, labels,
    # custom attributes), and the document says so. Every field is bounded (hub.limits).
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=omit_null("status", "labels", "custom_attributes")
    )

    status: Literal["open", "pending", "resolved", "snoozed"] | None = None
    snoozed_until: AwareDatetime | None = Field(
        default=None, description="with status snoozed: when it reopens by itself"
    )
    assignee_id: Id | None = Field(default=None, description="a user serving the channel; null unassigns")
    team: Name | None = Field(default=None, description="a team id; null clears it")
    priority: Literal["low", "medium", "high", "urgent"] | None = None
    labels: Labels | None = None
    custom_attributes: Attributes | None = None

    @field_validator("status", "labels", "custom_attributes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    data = await read_json(request)
    return model.model_validate(data)


def _limit(request: web.Request) -> int:
    return query_int(request, "limit", 50, minimum=1, maximum=200)


@routes.post("/api/v1/auth/login")
@operation(
    "Log in with email and password; returns a bearer token",
    "auth",
    operation_id="login",
    auth=None,
    body=LoginRequest,
    response=LoginOut,
    errors=(401, 422, 429),
)
async def auth_login(request: web.Request) -> web.StreamResponse:
    req = await _body(request, LoginRequest)
    try:
        user = await request.app[LOGINS].login(
            request.app[STORE].db, request.remote or "unknown", req.email, req.password
        )
    except LoginRefused as exc:
        raise ApiError(401, "invalid_credentials", str(exc)) from None
    except TooManyLogins as exc:
        wait = str(exc.retry_after)
        raise ApiError(
            429, "too_many_requests", str(exc), {"retry_after": exc.retry_after}, {"Retry-After": wait}
        ) from None
    tokens = await request.app[SESSIONS].open(user["id"])
    return web.json_response(await _session_body(request, user, tokens))


async def _session_body(request: web.Request, user: dict[str, Any], tokens: SessionTokens) -> dict[str, Any]:
    actor = await request.app[ORG].actor_for(user, fresh=True)
    return {**tokens.public(), "user": {**public_user(user), "permissions": sorted(actor.permissions)}}


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


@routes.post("/api/v1/auth/refresh")
@operation(
    "Trade a refresh token for a new token and refresh token. Each refresh token works once: "
    "presenting a used one again ends the whole session (401 refresh_token_reused)",
    "auth",
    operation_id="refresh_session",
    auth=None,
    body=RefreshRequest,
    response=LoginOut,
    errors=(401, 422),
)
async def auth_refresh(request: web.Request) -> web.StreamResponse:
    req = await _body(request, RefreshRequest)
    try:
        user, tokens = await request.app[SESSIONS].refresh(req.refresh_token)
    except SessionRefused as exc:
        raise ApiError(401, exc.code, str(exc)) from None
    return web.json_response(await _session_body(request, user, tokens))


@routes.post("/api/v1/auth/logout")
@operation(
    "End the session of the token used for this request: it, its refresh token and its open "
    "streams (closed with 4401) stop at once",
    "auth",
    status=204,
    operation_id="logout",
)
async def auth_logout(request: web.Request) -> web.StreamResponse:
    await require_actor(request)
    token = bearer_token(request)
    if token:
        await request.app[SESSIONS].logout(token)
    return web.Response(status=204)


@routes.get("/api/v1/me")
@operation(
    "The current user, role, effective permissions, teams and the channels they serve",
    "auth",
    response=MeOut,
)
async def me(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    teams = await request.app[TEAMS].list_teams(actor)
    user = await request.app[ORG].get_user(actor, actor.id)  # fresh: availability changes often
    return web.json_response(
        {
            **user,
            "permissions": sorted(actor.permissions),
            "all_channels": actor.all_channels,
            "channel_ids": [c["id"] for c in request.app[CHANNEL_ADMIN].visible(actor)],
            "teams": [{"id": t["id"], "name": t["name"]} for t in teams if t["id"] in actor.team_ids],
        }
    )


@routes.get("/api/v1/channels")
@operation(
    "Activated channels this user serves, with capabilities and health (cacheable)",
    "channels",
    response=ChannelList,
    etag=True,
)
async def list_channels(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "channels")


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query parameter with a fixed set of values: 400 naming them for anything else (an empty
    value included)."""
    if name not in request.query:
        return None
    value = request.query[name]
    if value not in allowed:
        raise ApiError(
            400,
            "bad_request",
            f"{name} must be one of {', '.join(allowed)}",
            [{"field": name, "message": f"unknown value {value[:40]!r}"}],
        )
    return value


def _conversation_filters(request: web.Request) -> dict[str, str]:
    found = {
        "status": _choice(request, "status", STATUSES),
        "priority": _choice(request, "priority", PRIORITIES),
        "assignee": _choice(request, "assignee", ASSIGNEE_FILTERS),
        "unread": _choice(request, "unread", ("true", "false")),
        **{n: query_text(request, n) for n in ("channel_id", "assignee_id", "team", "label")},
    }
    return {k: v for k, v in found.items() if v is not None}


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


CONVERSATION_FILTERS: dict[str, str | tuple[str, dict[str, Any]]] = {
    "status": ("only conversations in this status (any other value is 400)", _enum(STATUSES)),
    "assignee": (
        "mine (assigned to you), unassigned or assigned (to anyone)",
        _enum(ASSIGNEE_FILTERS),
    ),
    "assignee_id": "only conversations assigned to this user",
    "team": "only conversations of this team (a team id)",
    "label": "only conversations carrying this label",
    "channel_id": "only conversations of this channel",
    "priority": ("only conversations of this priority", _enum(PRIORITIES)),
    "unread": (
        "true: only conversations with customer messages you have not read; false: only the others",
        _enum(("true", "false")),
    ),
}


@routes.get("/api/v1/conversations")
@operation(
    "Conversations this user may read, most recent first, with cursor pagination; the filters "
    "combine (all must hold)",
    "conversations",
    response=ConversationPage,
    query={
        **CONVERSATION_FILTERS,
        "cursor": "next_cursor of the previous page (any other value is 400)",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
)
@with_seq
async def list_conversations(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    items, nxt = await request.app[CONVERSATIONS].list(
        actor,
        filters=_conversation_filters(request),
        cursor=query_text(request, "cursor"),
        limit=_limit(request),
    )
    return web.json_response({"conversations": items, "next_cursor": nxt})


@routes.get("/api/v1/conversations/counts")
@operation(
    "How many conversations you may read are in each status, under the list's other filters (the "
    "tabs of the list)",
    "conversations",
    response=ConversationCounts,
    query={k: v for k, v in CONVERSATION_FILTERS.items() if k != "status"},
)
async def count_conversations(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    filters = _conversation_filters(request)
    counts = await request.app[CONVERSATIONS].counts(actor, filters=filters)
    return web.json_response({"counts": counts, "total": sum(counts.values())})


@routes.get("/api/v1/agents")
@operation(
    "Who a conversation can be assigned to, with their availability: colleagues serving one of "
    "your channels, or exactly those serving a channel or a conversation's channel",
    "conversations",
    response=AgentList,
    query={
        "channel_id": "only agents serving this channel (404 outside your scope)",
        "conversation_id": "only agents who may be assigned this conversation (404 outside your scope)",
    },
    errors=(404,),
)
async def list_agents(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    agents = await request.app[AGENTS].list(
        actor,
        channel_id=query_text(request, "channel_id"),
        conversation_id=query_text(request, "conversation_id"),
    )
    return web.json_response({"agents": agents})


@routes.get("/api/v1/search")
@operation(
    "Messages and contacts holding every word of q (the last word as a prefix), newest first, "
    "within your scope: the conversations you may read, the contacts of your channels",
    "conversations",
    response=SearchOut,
    query={
        "q": "the words to find (punctuation is ignored; no words finds nothing)",
        "limit": ("results of each kind (over 50 gives 50)", query_integer(1)),
    },
)
async def search(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    found = await request.app[SEARCH].search(
        actor,
        query_text(request, "q") or "",
        limit=query_int(request, "limit", 20, minimum=1, maximum=50),
    )
    return web.json_response(found)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: str = Field(min_length=1)
    to: str = Field(min_length=1, max_length=320, description="the contact's address on the channel")
    name: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=998, description="channels with subjects")


@routes.post("/api/v1/conversations")
@operation(
    "Start a conversation with an address on a channel (email); then send into it",
    "conversations",
    body=ConversationCreate,
    response=Conversation,
    status=201,
    errors=(403, 404, 409, 422),
)
async def create_conversation(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "messages.send")
    req = ConversationCreate.model_validate(await read_json(request))
    conv, created = await start_conversation(
        request.app[STORE], request.app[CHANNELS], actor, req.channel_id, req.to, req.name, req.subject
    )
    return web.json_response(conv, status=201 if created else 200)


# "counts" is a route of its own (above), never a conversation id: without the exclusion an OPTIONS
# of /conversations/counts would be answered with this resource's methods as well.
CONVERSATION = "/api/v1/conversations/{conversation_id:(?!counts$)[^/]+}"


@routes.get(CONVERSATION)
@operation(
    "One conversation with its contact and reply window (404 outside your scope)",
    "conversations",
    errors=(404,),
    response=Conversation,
)
@with_seq
async def get_conversation(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    conv = await request.app[CONVERSATIONS].get(actor, request.match_info["conversation_id"])
    return web.json_response(conv)


@routes.patch(CONVERSATION)
@operation(
    "Change status (snooze with snoozed_until), assignee, team, priority, labels or custom attributes",
    "conversations",
    response=Conversation,
    body=ConversationPatch,
    errors=(403, 404, 422),
)
async def patch_conversation(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    patch = await _body(request, ConversationPatch)
    out = await request.app[CONVERSATIONS].update(
        actor, request.match_info["conversation_id"], patch.model_dump(exclude_unset=True)
    )
    return web.json_response(out)


@routes.post("/api/v1/conversations/{conversation_id}/read")
@operation(
    "Mark the conversation read by you (your unread count only; conversation.read tells your "
    "other devices), and tell the provider where it can",
    "conversations",
    response=Conversation,
    errors=(404,),
)
async def read_conversation(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    conv = await request.app[CONVERSATIONS].mark_read(actor, request.match_info["conversation_id"])
    return web.json_response(conv)


@routes.get("/api/v1/conversations/{conversation_id}/messages")
@operation(
    "Message history, oldest first within a page: the newest page, then older pages with before "
    "(next_before), or what came after a message with after",
    "messages",
    response=MessagePage,
    query={
        "before": "a message id of this conversation: messages older than it (any other value is 400)",
        "after": "a message id of this conversation: messages newer than it (any other value is 400)",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
    errors=(404,),
)
@with_seq
async def list_messages(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    page, before = await request.app[MESSAGES].history(
        actor,
        request.match_info["conversation_id"],
        before=query_text(request, "before"),
        after=query_text(request, "after"),
        limit=_limit(request),
    )
    return web.json_response({"messages": page, "next_before": before})


async def _load_uploads(request: web.Request, req: SendRequest) -> dict[str, dict[str, Any]]:
    ids = [att.upload_id for att in req.attachments if att.upload_id]
    if not ids:
        return {}
    return await request.app[UPLOADS].load(ids)


@routes.post("/api/v1/conversations/{conversation_id}/messages")
@operation(
    "Send a message (queued; 202), or a quick reply rendered for the conversation. Idempotency-Key "
    "makes retries safe",
    "messages",
    body=SendRequest,
    response=Message,
    status=202,
    also={
        200: "A replay: the message an earlier request with this Idempotency-Key stored "
        "(Idempotent-Replayed: true)"
    },
    headers={
        "Idempotency-Key": (
            "a unique key per message; the same key returns the same message",
            {"type": "string", "minLength": 1, "maxLength": 200},
        )
    },
    errors=(403, 404, 409, 422),
)
async def send_message(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "messages.send")
    req = await _body(request, SendRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise ApiError(
            422,
            "validation_failed",
            "Idempotency-Key must be 1 to 200 characters",
            [{"field": "Idempotency-Key", "message": "length"}],
        )
    if actor.kind == "bot":  # a bot writes only while it holds the conversation (409 after handoff)
        await request.app[BOTS].require_held(actor, request.match_info["conversation_id"])
    msg, created = await request.app[MESSAGES].send(
        actor,
        request.match_info["conversation_id"],
        req,
        key,
        await _load_uploads(request, req),
        quick_reply_id=req.quick_reply_id,
    )
    if created:
        request.app[OUTBOX].notify()
    resp = web.json_response(msg, status=202 if created else 200)
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@routes.get("/api/v1/messages/{message_id}")
@operation("One message (404 outside your scope)", "messages", errors=(404,), response=Message)
async def get_message(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(await request.app[MESSAGES].get(actor, request.match_info["message_id"]))


@routes.post("/api/v1/messages/{message_id}/retry")
@operation(
    "Retry a failed outbound message", "messages", errors=(403, 404, 409), response=Message, status=202
)
async def retry(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "messages.send")
    msg = await request.app[MESSAGES].retry(actor, request.match_info["message_id"])
    request.app[OUTBOX].notify()
    return web.json_response(msg, status=202)


@routes.post("/api/v1/messages/{message_id}/cancel")
@operation("Cancel a queued outbound message", "messages", errors=(403, 404, 409), response=Message)
async def cancel(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "messages.send")
    return web.json_response(await request.app[MESSAGES].cancel(actor, request.match_info["message_id"]))


UPLOAD_CHUNK = 256 * 1024
# What a multipart body carries besides the file itself: boundaries and part headers.
MULTIPART_OVERHEAD = 64 * 1024


def _upload_body_schema(app: web.Application) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "minLength": 1}


def _multipart_schema(app: web.Application) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "minLength": 1, "description": "the file"}
        },
        "additionalProperties": False,
    }


async def _raw_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
        yield chunk


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        yield chunk


@routes.post("/api/v1/uploads")
@operation(
    "Upload a file to attach to a message: multipart/form-data with a `file` part (what FormData "
    "sends), or the raw bytes with ?filename=. Streamed to disk; the MIME type is read from the "
    "file's content",
    "messages",
    response=UploadOut,
    query={"filename": "the file's name (raw bodies; a multipart part's own name otherwise)"},
    status=201,
    errors=(403, 413, 415, 422),
    bodies={
        "multipart/form-data": _multipart_schema,
        "application/octet-stream": _upload_body_schema,
    },
)
async def upload(request: web.Request) -> web.StreamResponse:
    await require_actor(request, "messages.send")
    uploads = request.app[UPLOADS]
    multipart = request.content_type == "multipart/form-data"
    if request.content_type == "application/x-www-form-urlencoded":
        raise ApiError(
            415,
            "unsupported_media_type",
            "a form carries no file: send multipart/form-data with a file part, or the raw bytes",
        )
    allowed = uploads.max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    if request.content_length is not None and request.content_length > allowed:
        raise _upload_too_large(uploads.max_bytes)
    filename = query_text(request, "filename")
    try:
        if multipart:
            out = await _receive_multipart(request, filename)
        else:
            out = await uploads.receive(_raw_chunks(request), request.content_type, filename)
    except UploadTooLarge as exc:
        raise _upload_too_large(exc.limit) from None
    except EmptyUpload as exc:
        raise ApiError(422, "validation_failed", str(exc), [{"field": "file", "message": str(exc)}]) from None
    return web.json_response(out, status=201)


async def _receive_multipart(request: web.Request, filename: str | None) -> dict[str, Any]:
    """The one part named ``file`` is the file; any other part is refused (the document says the
    form has that one field), and nothing of the request is kept."""
    uploads = request.app[UPLOADS]
    out: dict[str, Any] | None = None
    problem: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file" or out is not None:
                problem = "the form has one field, file" if out is None else "one file per upload"
                await part.release()
                continue
            out = await uploads.receive(
                _part_chunks(part), part.headers.get(hdrs.CONTENT_TYPE), filename or part.filename
            )
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:  # malformed
        problem = f"the multipart body cannot be read: {exc}"
        if out is not None:
            await uploads.discard(out["upload_id"])
        raise ApiError(400, "bad_request", problem) from None
    if out is None or problem is not None:
        if out is not None:
            await uploads.discard(out["upload_id"])
        raise ApiError(
            422,
            "validation_failed",
            "the request is invalid",
            [{"field": "file", "message": problem or "a part named file is required"}],
        )
    return out


def _upload_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the file is larger than the hub accepts ({limit} bytes)",
        {"limit": limit},
    )


# Types a browser may show in place: pictures, sound and video it decodes itself. Anything else
# (HTML, SVG, PDF, unknown) is a download, so a file never runs as a page of the hub's origin.
_INLINE = re.compile(r"^(image/(jpeg|png|gif|webp|avif|bmp)|audio/[\w.+-]+|video/[\w.+-]+)$")
_MIME = re.compile(r"^[\w!#$&^.+-]+/[\w!#$&^.+-]+$")


def _disposition(filename: str | None, mime_type: str) -> str:
    """``inline`` or ``attachment``, with the name as a plain ASCII fallback and RFC 6266's UTF-8
    ``filename*`` (no quote, backslash, control character or path survives)."""
    name = (filename or "file").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()) or "file"
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in name)
    kind = "inline" if _INLINE.match(mime_type) else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@routes.get("/api/v1/attachments/{message_id}/{index}")
@operation(
    "Download an attachment the hub stored, with its MIME type (404 outside your scope)",
    "messages",
    errors=(404,),
    response={"type": "string", "format": "binary"},
    response_type=("application/octet-stream", "*/*"),
)
async def download(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    raw_index = request.match_info["index"]
    # A message has a handful of attachments; a longer number would overflow the database's integer.
    if not (raw_index.isascii() and raw_index.isdigit() and len(raw_index) <= 4):
        raise ApiError(404, "not_found", "no such attachment")
    att = await request.app[MESSAGES].attachment(actor, request.match_info["message_id"], int(raw_index))
    mime = att["mime_type"] if att["mime_type"] and _MIME.match(att["mime_type"]) else None
    mime = (mime or "application/octet-stream").lower()
    return web.FileResponse(
        att["path"],
        headers={
            hdrs.CONTENT_TYPE: mime,
            hdrs.CONTENT_DISPOSITION: _disposition(att["filename"], mime),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


class ContactPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=omit_null("labels", "custom_attributes")
    )

    name: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    labels: Labels | None = Field(default=None, description="label names: exactly these from now on")
    custom_attributes: Attributes | None = Field(
        default=None, description="the attributes to change (null removes one); others stay"
    )

    @field_validator("labels", "custom_attributes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class ContactMerge(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    contact_id: Id = Field(min_length=1, description="the contact folded into this one (then deleted)")


@routes.get("/api/v1/contacts")
@operation(
    "Contacts of your channels, newest first; search by name, email, phone or identity",
    "contacts",
    response=ContactPage,
    errors=(403,),
    query={
        "q": "a case-insensitive part of the name, email, phone or an identity",
        "label": "a label name (any case)",
        "cursor": "next_cursor of the previous page (any other value is 400)",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
)
async def list_contacts(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    items, nxt = await request.app[CONTACTS].list(
        actor,
        query=query_text(request, "q"),
        label=query_text(request, "label"),
        cursor=request.query.get("cursor"),
        limit=_limit(request),
    )
    return web.json_response({"contacts": items, "next_cursor": nxt})


@routes.get("/api/v1/contacts/{contact_id}")
@operation(
    "One contact with its identities on every channel (404 outside your channels)",
    "contacts",
    errors=(403, 404),
    response=ContactOut,
)
async def get_contact(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(await request.app[CONTACTS].get(actor, request.match_info["contact_id"]))


@routes.patch("/api/v1/contacts/{contact_id}")
@operation(
    "Change a contact's name, phone, email, labels or custom attributes",
    "contacts",
    body=ContactPatch,
    errors=(403, 404, 422),
    response=ContactOut,
)
async def patch_contact(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "contacts.update")
    patch = await _body(request, ContactPatch)
    out = await request.app[CONTACTS].update(
        actor, request.match_info["contact_id"], patch.model_dump(exclude_unset=True)
    )
    return web.json_response(out)


@routes.post("/api/v1/contacts/{contact_id}/merge")
@operation(
    "Merge another contact into this one: its conversations move, every identity is kept",
    "contacts",
    body=ContactMerge,
    errors=(403, 404, 422),
    response=ContactOut,
)
async def merge_contacts(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "contacts.merge")
    req = await _body(request, ContactMerge)
    out = await request.app[CONTACTS].merge(actor, request.match_info["contact_id"], req.contact_id)
    return web.json_response(out)
