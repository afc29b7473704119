"""The app API (v1): auth, channels, conversations, messages, uploads and attachments.

Handlers parse and render; the services (``hub.services``) read and write with the acting user's
scope and permissions applied.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from hub.appkeys import (
    CHANNEL_ADMIN,
    CHANNELS,
    CONFIG,
    CONTACTS,
    CONVERSATIONS,
    LOGINS,
    MESSAGES,
    ORG,
    OUTBOX,
    SESSIONS,
    STORE,
    TEAMS,
)
from hub.db import new_id
from hub.limits import Attributes, Id, Labels, Name, omit_null
from hub.logins import LoginRefused, TooManyLogins
from hub.models import Contact, Conversation, Message
from hub.outreach import start_conversation
from hub.services.organisation import public_user
from hub.sessions import SessionRefused, SessionTokens
from hub.web.auth import bearer_token, require_actor
from hub.web.errors import ApiError, query_int, query_text, read_json
from hub.web.openapi import operation, query_integer, with_seq
from hub.web.schemas import ChannelList, ConversationPage, LoginOut, MeOut, MessagePage, UploadOut
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
    "Activated channels this user serves, with capabilities and health", "channels", response=ChannelList
)
async def list_channels(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response({"channels": request.app[CHANNEL_ADMIN].visible(actor)})


@routes.get("/api/v1/conversations")
@operation(
    "Conversations this user may read, most recent first, with cursor pagination",
    "conversations",
    response=ConversationPage,
    query={
        "status": "open|pending|resolved|snoozed",
        "channel_id": "filter",
        "assignee_id": "filter",
        "team": "filter (a team id)",
        "priority": "filter",
        "cursor": "next_cursor of the previous page (any other value is 400)",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
)
@with_seq
async def list_conversations(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    items, nxt = await request.app[CONVERSATIONS].list(
        actor,
        filters={n: v for n in ("status", "channel_id", "assignee_id") if (v := query_text(request, n))},
        cursor=request.query.get("cursor"),
        limit=_limit(request),
    )
    return web.json_response({"conversations": items, "next_cursor": nxt})


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


@routes.get("/api/v1/conversations/{conversation_id}")
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


@routes.patch("/api/v1/conversations/{conversation_id}")
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
    "Mark the conversation read by an agent (and tell the provider, where it can)",
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
    "Message history, oldest first within a page; page backwards with before",
    "messages",
    response=MessagePage,
    query={
        "before": "a message id: return messages older than it",
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
        limit=_limit(request),
    )
    return web.json_response({"messages": page, "next_before": before})


def _uploads_dir(request: web.Request) -> Path:
    return request.app[CONFIG].hub.uploads_dir


def _read_uploads(folder: Path, upload_ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for uid in upload_ids:
        if uid.replace("_", "").isalnum():
            meta = folder / f"{uid}.json"
            if meta.exists():
                out[uid] = json.loads(meta.read_text())
    return out


async def _load_uploads(request: web.Request, req: SendRequest) -> dict[str, dict[str, Any]]:
    ids = [att.upload_id for att in req.attachments if att.upload_id]
    if not ids:
        return {}
    return await asyncio.to_thread(_read_uploads, _uploads_dir(request), ids)


def _write_upload(folder: Path, uid: str, data: bytes, meta: dict[str, Any]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / uid
    path.write_bytes(data)
    meta = {**meta, "path": str(path.resolve())}
    (folder / f"{uid}.json").write_text(json.dumps(meta))
    return str(path)


@routes.post("/api/v1/conversations/{conversation_id}/messages")
@operation(
    "Send a message (queued; 202). Idempotency-Key makes retries safe",
    "messages",
    body=SendRequest,
    response=Message,
    status=202,
    also={
        200: "A replay: the message an earlier request with this Idempotency-Key stored "
        "(Idempotent-Replayed: true)"
    },
    headers={"Idempotency-Key": "a unique key per message; the same key returns the same message"},
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
    msg, created = await request.app[MESSAGES].send(
        actor, request.match_info["conversation_id"], req, key, await _load_uploads(request, req)
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


@routes.post("/api/v1/uploads")
@operation(
    "Upload a file to attach to a message (raw body; ?filename=)",
    "messages",
    response=UploadOut,
    query={"filename": "the file's name"},
    headers={"Content-Type": "the file's MIME type"},
    status=201,
    errors=(403, 413),
    content_type="application/octet-stream",
    body_schema=lambda app: {"type": "string", "format": "binary", "minLength": 1},
)
async def upload(request: web.Request) -> web.StreamResponse:
    await require_actor(request, "messages.send")
    data = await request.read()
    if not data:
        raise ApiError(422, "validation_failed", "the upload is empty")
    uid = new_id("up_")
    meta = {
        "upload_id": uid,
        "size": len(data),
        "mime_type": request.content_type or "application/octet-stream",
        "filename": Path(query_text(request, "filename") or "file").name,
    }
    # In a thread: a file of megabytes written on the event loop would hold every request meanwhile.
    await asyncio.to_thread(_write_upload, _uploads_dir(request), uid, data, meta)
    return web.json_response(meta, status=201)


@routes.get("/api/v1/attachments/{message_id}/{index}")
@operation(
    "Download an attachment the hub stored (404 outside your scope)",
    "messages",
    errors=(404,),
    response={"type": "string", "format": "binary"},
    response_type="application/octet-stream",
)
async def download(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    raw_index = request.match_info["index"]
    # A message has a handful of attachments; a longer number would overflow the database's integer.
    if not (raw_index.isascii() and raw_index.isdigit() and len(raw_index) <= 4):
        raise ApiError(404, "not_found", "no such attachment")
    idx = int(raw_index)
    path = await request.app[MESSAGES].attachment_path(actor, request.match_info["message_id"], idx)
    return web.FileResponse(path)


class ContactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)


@routes.get("/api/v1/contacts/{contact_id}")
@operation("One contact (404 outside your channels)", "contacts", errors=(403, 404), response=Contact)
async def get_contact(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(await request.app[CONTACTS].get(actor, request.match_info["contact_id"]))


@routes.patch("/api/v1/contacts/{contact_id}")
@operation(
    "Change a contact's name, phone or email",
    "contacts",
    body=ContactPatch,
    errors=(403, 404, 422),
    response=Contact,
)
async def patch_contact(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "contacts.update")
    patch = await _body(request, ContactPatch)
    out = await request.app[CONTACTS].update(
        actor, request.match_info["contact_id"], patch.model_dump(exclude_unset=True)
    )
    return web.json_response(out)
