"""The app API (v1): auth, channels, conversations, messages, uploads and attachments."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub import schema
from hub.appkeys import CHANNELS, CONFIG, LOGINS, MEDIA, OUTBOX, SEND_WRITER, STORE, TOKEN_CACHE
from hub.db import new_id
from hub.limits import Attributes, Id, Labels, Name, omit_null
from hub.logins import LoginRefused, TooManyLogins
from hub.models import Conversation, Message, utcnow
from hub.outbound import cancel_message, enqueue, retry_message
from hub.records import fetch_conversation, fetch_conversations, message_dict
from hub.users import public_user, revoke_token
from hub.web.auth import bearer_token, require_user
from hub.web.errors import ApiError, json_problem, query_int, query_text, read_json
from hub.web.openapi import operation, query_integer
from hub.web.schemas import ChannelList, ConversationPage, LoginOut, MessagePage, UploadOut, UserOut
from hub.web.sends import SendRequest

__all__ = ["routes"]

log = logging.getLogger("hub.api")
routes = web.RouteTableDef()
C = schema.conversations
M = schema.messages


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class ConversationPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=omit_null("status", "labels", "custom_attributes")
    )

    # Omitted leaves a field unchanged; null is refused (except where it clears: assignee, team),
    # and the document says so.
    status: Literal["open", "pending", "resolved"] | None = None
    assignee_id: Id | None = None
    team: Name | None = None
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
    auth=None,
    body=LoginRequest,
    response=LoginOut,
    errors=(401, 422, 429),
)
async def auth_login(request: web.Request) -> web.StreamResponse:
    req = await _body(request, LoginRequest)
    try:
        user, token = await request.app[LOGINS].login(
            request.app[STORE].db, request.remote or "unknown", req.email, req.password
        )
    except LoginRefused as exc:
        raise ApiError(401, "invalid_credentials", str(exc)) from None
    except TooManyLogins as exc:
        wait = str(exc.retry_after)
        raise ApiError(
            429, "too_many_requests", str(exc), {"retry_after": exc.retry_after}, {"Retry-After": wait}
        ) from None
    return web.json_response({"token": token, "token_type": "bearer", "user": public_user(user)})


@routes.post("/api/v1/auth/logout")
@operation("Revoke the token used for this request", "auth", status=204)
async def auth_logout(request: web.Request) -> web.StreamResponse:
    await require_user(request)
    token = bearer_token(request)
    if token:
        await revoke_token(request.app[STORE].db, token, request.app[TOKEN_CACHE])
    return web.Response(status=204)


@routes.get("/api/v1/me")
@operation("The current user, role and effective permissions", "auth", response=UserOut)
async def me(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    return web.json_response(public_user(user))


@routes.get("/api/v1/channels")
@operation("Activated channels, with capabilities and health", "channels", response=ChannelList)
async def list_channels(request: web.Request) -> web.StreamResponse:
    await require_user(request, "channels.read")
    svc = request.app[CHANNELS]
    out = [svc.public_dict(row, admin=False) for cid, row in sorted(svc.rows.items()) if cid in svc.instances]
    return web.json_response({"channels": out})


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[datetime, str]:
    """The (activity time, conversation id) a cursor of ``_encode_cursor`` holds; else a 400."""
    try:
        at, cid = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        ts = datetime.fromisoformat(at)
        if not isinstance(cid, str) or json_problem(cid) is not None:
            raise ValueError(cid)
        return ts, cid
    except (ValueError, TypeError, RecursionError):  # also binascii.Error, JSONDecodeError
        raise ApiError(400, "bad_request", "cursor is not one this API returned") from None


@routes.get("/api/v1/conversations")
@operation(
    "Conversations, most recent first, with cursor pagination",
    "conversations",
    response=ConversationPage,
    query={
        "status": "open|pending|resolved",
        "channel_id": "filter",
        "assignee_id": "filter",
        "cursor": "next_cursor of the previous page (any other value is 400)",
        "limit": ("page size (over 200 gives 200)", query_integer(1)),
    },
)
async def list_conversations(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    q = request.query
    limit = _limit(request)
    activity = sa.func.coalesce(C.c.last_message_at, C.c.created_at)
    stmt = (
        sa.select(C.c.id, activity.label("activity"))
        .order_by(activity.desc(), C.c.id.desc())
        .limit(limit + 1)
    )
    for name in ("status", "channel_id", "assignee_id"):
        if value := query_text(request, name):
            stmt = stmt.where(getattr(C.c, name) == value)
    if q.get("cursor"):
        ts, cid = _decode_cursor(q["cursor"])
        stmt = stmt.where(sa.or_(activity < ts, sa.and_(activity == ts, C.c.id < cid)))
    async with request.app[STORE].db.read() as conn:
        rows = (await conn.execute(stmt)).all()
        items = await fetch_conversations(conn, [r.id for r in rows[:limit]])
    nxt = (
        _encode_cursor([rows[limit - 1].activity.isoformat(), rows[limit - 1].id])
        if len(rows) > limit
        else None
    )
    return web.json_response({"conversations": items, "next_cursor": nxt})


async def _conversation(request: web.Request) -> dict[str, Any]:
    cid = request.match_info["conversation_id"]
    async with request.app[STORE].db.read() as conn:
        conv = await fetch_conversation(conn, cid)
    if conv is None:
        raise ApiError(404, "not_found", f"conversation {cid} does not exist")
    svc = request.app[CHANNELS]
    inst = svc.get(conv["channel_id"])
    if inst is not None:
        last = conv["last_inbound_at"]
        window = inst.reply_window(datetime.fromisoformat(last) if last else None, utcnow())
        conv["reply_window"] = {
            "open": window.open,
            "closes_at": window.closes_at.isoformat() if window.closes_at else None,
            "outside": window.outside,
        }
    return conv


@routes.get("/api/v1/conversations/{conversation_id}")
@operation(
    "One conversation with its contact and reply window",
    "conversations",
    errors=(404,),
    response=Conversation,
)
async def get_conversation(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    return web.json_response(await _conversation(request))


@routes.patch("/api/v1/conversations/{conversation_id}")
@operation(
    "Change status, assignee, team, labels or custom attributes",
    "conversations",
    response=Conversation,
    body=ConversationPatch,
    errors=(404, 422),
)
async def patch_conversation(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.update")
    patch = await _body(request, ConversationPatch)
    cid = request.match_info["conversation_id"]
    changes = patch.model_dump(exclude_unset=True)
    store = request.app[STORE]
    async with store.tx() as tx:
        exists = await tx.conn.scalar(sa.select(C.c.id).where(C.c.id == cid))
        if exists is None:
            raise ApiError(404, "not_found", f"conversation {cid} does not exist")
        if changes.get("assignee_id") is not None:
            known = await tx.conn.scalar(
                sa.select(schema.users.c.id).where(schema.users.c.id == changes["assignee_id"])
            )
            if known is None:
                raise ApiError(
                    422,
                    "validation_failed",
                    "the request is invalid",
                    [{"field": "assignee_id", "message": "no such user"}],
                )
        if changes:
            changes["updated_at"] = utcnow()
            await tx.conn.execute(C.update().where(C.c.id == cid).values(**changes))
            conv = await fetch_conversation(tx.conn, cid)
            assert conv is not None
            await tx.emit("conversation.updated", conv, channel_id=conv["channel_id"], conversation_id=cid)
    return web.json_response(await _conversation(request))


@routes.post("/api/v1/conversations/{conversation_id}/read")
@operation(
    "Mark the conversation read by an agent (and tell the provider, where it can)",
    "conversations",
    response=Conversation,
    errors=(404,),
)
async def read_conversation(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    conv = await _conversation(request)
    store = request.app[STORE]
    async with store.tx() as tx:
        await tx.conn.execute(
            C.update().where(C.c.id == conv["id"]).values(unread_count=0, updated_at=utcnow())
        )
        last_in = (
            await tx.conn.execute(
                sa.select(M.c.external_id)
                .where(M.c.conversation_id == conv["id"], M.c.direction == "inbound")
                .order_by(M.c.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        fresh = await fetch_conversation(tx.conn, conv["id"])
        assert fresh is not None
        await tx.emit(
            "conversation.updated", fresh, channel_id=conv["channel_id"], conversation_id=conv["id"]
        )
    inst = request.app[CHANNELS].get(conv["channel_id"])
    if inst is not None and last_in and inst.capabilities.read_receipts:
        from hub.models import ContactRef

        ref = ContactRef(ids=conv["contact"]["identities"] or [conv["contact"]["id"]])
        try:
            await inst.mark_read(last_in, ref)
        except Exception as exc:  # best effort: the agent's read state is already stored
            log.warning("channel %s mark_read failed: %s", conv["channel_id"], exc)
    return web.json_response(fresh)


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
async def list_messages(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    cid = request.match_info["conversation_id"]
    limit = _limit(request)
    async with request.app[STORE].db.read() as conn:
        if await conn.scalar(sa.select(C.c.id).where(C.c.id == cid)) is None:
            raise ApiError(404, "not_found", f"conversation {cid} does not exist")
        stmt = sa.select(M).where(M.c.conversation_id == cid).order_by(M.c.id.desc()).limit(limit + 1)
        if before := query_text(request, "before"):
            stmt = stmt.where(M.c.id < before)
        rows = (await conn.execute(stmt)).mappings().all()
    page = [message_dict(r) for r in rows[:limit]]
    page.reverse()
    return web.json_response({"messages": page, "next_before": page[0]["id"] if len(rows) > limit else None})


def _uploads_dir(request: web.Request) -> Path:
    return Path(request.app[CONFIG].hub.data_dir) / "uploads"


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
    headers={"Idempotency-Key": "a unique key per message; the same key returns the same message"},
    errors=(404, 409, 422),
)
async def send_message(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, "messages.send")
    req = await _body(request, SendRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise ApiError(
            422,
            "validation_failed",
            "Idempotency-Key must be 1 to 200 characters",
            [{"field": "Idempotency-Key", "message": "length"}],
        )
    msg, created = await enqueue(
        request.app[STORE],
        request.app[CHANNELS],
        request.match_info["conversation_id"],
        user,
        req,
        key,
        await _load_uploads(request, req),
        writer=request.app[SEND_WRITER],
    )
    if created:
        request.app[OUTBOX].notify()
    resp = web.json_response(msg, status=202 if created else 200)
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@routes.get("/api/v1/messages/{message_id}")
@operation("One message", "messages", errors=(404,), response=Message)
async def get_message(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    mid = request.match_info["message_id"]
    async with request.app[STORE].db.read() as conn:
        row = (await conn.execute(sa.select(M).where(M.c.id == mid))).mappings().first()
    if row is None:
        raise ApiError(404, "not_found", f"message {mid} does not exist")
    return web.json_response(message_dict(row))


@routes.post("/api/v1/messages/{message_id}/retry")
@operation("Retry a failed outbound message", "messages", errors=(404, 409), response=Message, status=202)
async def retry(request: web.Request) -> web.StreamResponse:
    await require_user(request, "messages.send")
    msg = await retry_message(request.app[STORE], request.match_info["message_id"])
    request.app[OUTBOX].notify()
    return web.json_response(msg, status=202)


@routes.post("/api/v1/messages/{message_id}/cancel")
@operation("Cancel a queued outbound message", "messages", errors=(404, 409), response=Message)
async def cancel(request: web.Request) -> web.StreamResponse:
    await require_user(request, "messages.send")
    return web.json_response(await cancel_message(request.app[STORE], request.match_info["message_id"]))


@routes.post("/api/v1/uploads")
@operation(
    "Upload a file to attach to a message (raw body; ?filename=)",
    "messages",
    response=UploadOut,
    query={"filename": "the file's name"},
    headers={"Content-Type": "the file's MIME type"},
    status=201,
    errors=(413,),
    content_type="application/octet-stream",
    body_schema=lambda app: {"type": "string", "format": "binary", "minLength": 1},
)
async def upload(request: web.Request) -> web.StreamResponse:
    await require_user(request, "messages.send")
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
    "Download an attachment the hub stored",
    "messages",
    errors=(404,),
    response={"type": "string", "format": "binary"},
    response_type="application/octet-stream",
)
async def download(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    mid = request.match_info["message_id"]
    raw_index = request.match_info["index"]
    # A message has a handful of attachments; a longer number would overflow the database's integer.
    if not (raw_index.isascii() and raw_index.isdigit() and len(raw_index) <= 4):
        raise ApiError(404, "not_found", "no such attachment")
    idx = int(raw_index)
    path = await request.app[MEDIA].path_for(mid, idx)
    if path is None:
        raise ApiError(404, "not_found", "the attachment is not stored (yet)")
    return web.FileResponse(path)
