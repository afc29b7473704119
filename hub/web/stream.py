"""The event log for the app: ``GET /api/v1/events?after=`` and the ``/api/v1/stream`` WebSocket.

The stream subscribes to live events first, then replays the log after the client's cursor, then
forwards live events it has not sent yet, so nothing falls between replay and live. A cursor older
than the retained log gets a ``resync`` answer: the app must refetch its state.

Both hand out only the events the user may see (``EventService.visible``). An ``access.changed``
event naming the stream's user makes it re-read the user's scope before the next event, and
closes the stream when the user was deactivated or the token revoked.

A client that does not keep up (a frame unwritten for ``stream_send_timeout`` seconds, or more
than ``stream_queue_bytes`` of events waiting for it) is closed with code 4429: the app reconnects
with ``after=`` the last seq it processed and loses nothing. The close code 4410 means resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import NamedTuple

from aiohttp import WSMsgType, web

from hub.access import Actor
from hub.appkeys import CONFIG, CONNECTIONS, EVENTS, METRICS, ORG, STORE
from hub.events import Frame, Store
from hub.models import utcnow
from hub.users import authenticate_token, token_expires_at
from hub.web.asyncapi import HEARTBEAT_SECONDS
from hub.web.auth import STREAM_PATH, bearer_token, require_actor
from hub.web.errors import ApiError, query_int
from hub.web.event_catalogue import EventPage
from hub.web.openapi import operation, query_integer

__all__ = ["routes"]

routes = web.RouteTableDef()
PAGE = 500
RESYNC_CLOSE = 4410
REVOKED_CLOSE = 4401
# "You fell behind; reconnect with after=<the last seq you processed>": nothing is lost.
BEHIND_CLOSE = 4429
log = logging.getLogger("hub.stream")


def _after(request: web.Request) -> int:
    return query_int(request, "after", 0)


class _Resync(NamedTuple):
    reason: str  # "too_old" or "ahead"
    oldest_seq: int
    last_seq: int


async def _resync(store: Store, after: int) -> _Resync | None:
    """Why the app must refetch its state before streaming from ``after``, or None when it need not:
    the events after it are no longer kept (``too_old``), or the cursor is past the end of the log
    (``ahead``: a database restored from a backup, another hub) and would wait for ever."""
    pruned = await store.pruned_through()
    # The horizon, not the newest seq: an app told to continue from last_seq must not skip an
    # event still in flight below it (PostgreSQL, several writers).
    last = max(await store.horizon(), pruned)
    if after < pruned:
        return _Resync("too_old", pruned + 1, last)
    if after > last:
        return _Resync("ahead", pruned + 1, last)
    return None


_RESYNC_TEXT = {
    "too_old": "events after this cursor are no longer kept",
    "ahead": "this cursor is ahead of the event log (restored or replaced database)",
}


@routes.get("/api/v1/events")
@operation(
    "Events after a sequence number that this user may see (last_seq moves past the others)",
    "events",
    response=EventPage,
    query={
        "after": ("last seq seen (0 = all)", query_integer(0)),
        "limit": ("page size (over 500 gives 500)", query_integer(1)),
    },
    errors=(410,),
)
async def list_events(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    store = request.app[STORE]
    after = _after(request)
    limit = query_int(request, "limit", PAGE, minimum=1, maximum=PAGE)
    resync = await _resync(store, after)
    if resync is not None:
        raise ApiError(
            410,
            "cursor_too_old" if resync.reason == "too_old" else "cursor_ahead",
            f"{_RESYNC_TEXT[resync.reason]}: refetch conversations and continue from last_seq",
            resync._asdict(),
        )
    events, last, more = await request.app[EVENTS].page(actor, after, limit)
    # The events are JSON already: join them instead of decoding and encoding each one again.
    joined = ",".join(frame.text for frame in events)
    body = f'{{"events":[{joined}],"last_seq":{last},"has_more":{"true" if more else "false"}}}'
    return web.Response(text=body, content_type="application/json")


@routes.get(STREAM_PATH)
@operation(
    "WebSocket: replay events after a cursor, then stream live (frames and close codes: /asyncapi.json)",
    "events",
    query={
        "after": ("last seq seen", query_integer(0)),
        "token": "bearer token, if headers cannot be set (a reverse proxy logs it: prefer the header)",
    },
)
async def stream(request: web.Request) -> web.StreamResponse:
    viewer = _Viewer(request, await require_actor(request))
    store = request.app[STORE]
    after = _after(request)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
    await ws.prepare(request)
    metrics = request.app[METRICS]
    metrics.stream_clients.inc()
    connections = request.app[CONNECTIONS]
    await connections.opened(viewer.actor.id)
    try:
        resync = await _resync(store, after)
        if resync is not None:
            await ws.send_json(
                {
                    "type": "resync",
                    **resync._asdict(),
                    "message": f"{_RESYNC_TEXT[resync.reason]}: refetch state, then reconnect with last_seq",
                }
            )
            await ws.close(code=RESYNC_CLOSE, message=b"resync")
            return ws
        expiry = asyncio.create_task(_close_at_expiry(ws, store, viewer.token))
        try:
            await _pump(ws, store, viewer, after)
        except _Revoked:
            await ws.close(code=REVOKED_CLOSE, message=b"access revoked")
        except _Behind as exc:
            await _drop(request, ws, str(exc))
        except ConnectionError:  # the client went away mid-send: nothing to report
            pass
        finally:
            expiry.cancel()
    finally:
        metrics.stream_clients.dec()
        await connections.closed(viewer.actor.id)
    return ws


async def _close_at_expiry(ws: web.WebSocketResponse, store: Store, token: str) -> None:
    """Close the stream (4401) when its token expires; a logout or a revocation closes it sooner
    (through ``access.changed``)."""
    expires = await token_expires_at(store.db, token)
    if expires is None:
        return
    await asyncio.sleep(max(0.0, (expires - utcnow()).total_seconds()))
    await ws.close(code=REVOKED_CLOSE, message=b"token expired")


def _frame(event_text: str) -> str:
    return f'{{"type":"event","event":{event_text}}}'


class _Revoked(Exception):
    """The stream's user was deactivated or its token revoked."""


class _Viewer:
    """The stream's user and scope, re-read when an ``access.changed`` event names them."""

    def __init__(self, request: web.Request, actor: Actor) -> None:
        self.app = request.app
        self.token = bearer_token(request) or ""
        self.actor = actor
        self.send_within = request.app[CONFIG].hub.stream_send_timeout

    def concerned(self, frame: Frame) -> bool:
        if frame.type != "access.changed":
            return False
        user_ids = json.loads(frame.text)["data"].get("user_ids")
        return user_ids is None or self.actor.id in user_ids

    async def refresh(self) -> None:
        # Past every cache: the change may have been made by another process.
        user = await authenticate_token(self.app[STORE].db, self.token)
        if user is None:
            raise _Revoked
        self.actor = await self.app[ORG].actor_for(user, fresh=True)


async def _deliver(ws: web.WebSocketResponse, viewer: _Viewer, frames: list[Frame]) -> None:
    """Send the frames the viewer may see, in order, applying access changes as they come."""
    events = viewer.app[EVENTS]
    start = 0
    for i, frame in enumerate(frames):
        if viewer.concerned(frame):
            visible = await events.visible(viewer.actor, frames[start : i + 1])
            await _send(ws, [_frame(f.text) for f in visible], viewer.send_within)
            start = i + 1
            await viewer.refresh()
    visible = await events.visible(viewer.actor, frames[start:])
    await _send(ws, [_frame(f.text) for f in visible], viewer.send_within)


class _Behind(Exception):
    """The client stopped reading, or reads slower than events arrive."""


async def _send(ws: web.WebSocketResponse, texts: list[str], send_within: float) -> None:
    """Write frames in order. A client that never reads fills the socket's buffers, and then a
    write waits for ever: each frame must be written within ``send_within``, under one timeout
    moved on after each frame (``wait_for`` per frame cost a task per frame)."""
    if not texts:
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            for text in texts:
                deadline.reschedule(loop.time() + send_within)
                await ws.send_str(text)
    except TimeoutError:
        raise _Behind(f"a frame could not be written within {send_within:g} s") from None


async def _drop(request: web.Request, ws: web.WebSocketResponse, why: str) -> None:
    """Close a client that fell behind with BEHIND_CLOSE; cut the connection if even the close frame
    cannot be written. The app reconnects with ``after=`` its last seq and loses nothing."""
    log.info("stream client %s fell behind (%s): closing with %d", request.remote, why, BEHIND_CLOSE)
    try:
        await asyncio.wait_for(ws.close(code=BEHIND_CLOSE, message=b"behind: reconnect with after="), 2)
    except (TimeoutError, ConnectionError):
        pass
    if request.transport is not None and not request.transport.is_closing():
        request.transport.abort()


async def _replay(
    ws: web.WebSocketResponse, store: Store, viewer: _Viewer, cursor: int, upto: int | None = None
) -> int:
    while True:
        batch = await store.events_after(cursor, PAGE, upto)
        await _deliver(ws, viewer, batch)
        if batch:
            cursor = batch[-1].seq
        if len(batch) < PAGE:
            return cursor


async def _pump(ws: web.WebSocketResponse, store: Store, viewer: _Viewer, after: int) -> None:
    metrics = viewer.app[METRICS]
    async with store.bus.subscribe() as sub:
        # With a feed (PostgreSQL), every event after ``live_from`` reaches ``sub`` in seq order:
        # replay up to it and not beyond, where an event may still be in flight.
        cursor = await _replay(ws, store, viewer, after, store.live_from())
        live = json.dumps({"type": "live", "last_seq": cursor})
        await _send(ws, [live], viewer.send_within)
        reader = asyncio.create_task(_read_until_closed(ws))
        try:
            while not ws.closed:
                getter = asyncio.create_task(sub.next_frames())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                # Every frame already waiting, not one per wake-up: on a busy loop each wake-up
                # costs a few turns of the loop, and one frame per turn let a client fall seconds
                # behind at a few hundred events per second (measured).
                frames = getter.result()
                if sub.lagging:
                    raise _Behind(f"more than {sub.max_bytes} bytes or {sub.queue.maxsize} events waiting")
                pending: list[Frame] = []
                for frame in frames:
                    if frame.seq <= cursor:
                        continue
                    if frame.seq > cursor + 1 and store.feed is None:
                        # Committed elsewhere and not published here (no feed): read them.
                        await _deliver(ws, viewer, pending)
                        pending = []
                        cursor = await _replay(ws, store, viewer, cursor, frame.seq - 1)
                        if frame.seq <= cursor:
                            continue
                    pending.append(frame)
                    cursor = frame.seq
                await _deliver(ws, viewer, pending)
                if pending and sub.batch_since is not None:
                    metrics.stage("fanout", time.monotonic() - sub.batch_since)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            try:
                data = json.loads(msg.data)
            except (ValueError, RecursionError):
                await ws.send_json(
                    {"type": "error", "error": {"code": "bad_request", "message": "frames must be JSON"}}
                )
                continue
            if isinstance(data, dict) and data.get("type") == "ping":
                await ws.send_json({"type": "pong"})
        elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return
