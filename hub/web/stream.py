"""The event log for the app: ``GET /api/v1/events?after=`` and the ``/api/v1/stream`` WebSocket.

The stream subscribes to live events first, then replays the log after the client's cursor, then
forwards live events it has not sent yet, so nothing falls between replay and live. A cursor older
than the retained log gets a ``resync`` answer: the app must refetch its state.

A client that does not keep up (a frame unwritten for ``stream_send_timeout`` seconds, or more
than ``stream_queue_bytes`` of events waiting for it) is closed with code 4429: the app reconnects
with ``after=`` the last seq it processed and loses nothing. The close code 4410 means resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import WSMsgType, web

from hub.appkeys import CONFIG, METRICS, STORE
from hub.events import Store
from hub.web.auth import STREAM_PATH, require_user
from hub.web.errors import ApiError, query_int
from hub.web.openapi import operation, query_integer
from hub.web.schemas import EventPage

__all__ = ["routes"]

routes = web.RouteTableDef()
PAGE = 500
RESYNC_CLOSE = 4410
# "You fell behind; reconnect with after=<the last seq you processed>": nothing is lost.
BEHIND_CLOSE = 4429
log = logging.getLogger("hub.stream")


def _after(request: web.Request) -> int:
    return query_int(request, "after", 0)


async def _too_old(store: Store, after: int) -> int | None:
    pruned = await store.pruned_through()
    return pruned + 1 if after < pruned else None


@routes.get("/api/v1/events")
@operation(
    "Events after a sequence number",
    "events",
    response=EventPage,
    query={
        "after": ("last seq seen (0 = all)", query_integer(0)),
        "limit": ("page size (over 500 gives 500)", query_integer(1)),
    },
    errors=(410,),
)
async def list_events(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    store = request.app[STORE]
    after = _after(request)
    limit = query_int(request, "limit", PAGE, minimum=1, maximum=PAGE)
    oldest = await _too_old(store, after)
    if oldest is not None:
        raise ApiError(
            410,
            "cursor_too_old",
            "events after this cursor are no longer kept; refetch conversations and continue from last_seq",
            {"oldest_seq": oldest, "last_seq": await store.last_seq()},
        )
    events = await store.events_after(after, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    last = events[-1][0] if events else max(after, await store.last_seq())
    # The events are JSON already: join them instead of decoding and encoding each one again.
    joined = ",".join(text for _, text in events)
    body = f'{{"events":[{joined}],"last_seq":{last},"has_more":{"true" if more else "false"}}}'
    return web.Response(text=body, content_type="application/json")


@routes.get(STREAM_PATH)
@operation(
    "WebSocket: replay events after a cursor, then stream live",
    "events",
    query={
        "after": ("last seq seen", query_integer(0)),
        "token": "bearer token, if headers cannot be set (a reverse proxy logs it: prefer the header)",
    },
)
async def stream(request: web.Request) -> web.StreamResponse:
    await require_user(request, "conversations.read")
    store = request.app[STORE]
    after = _after(request)
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    metrics = request.app[METRICS]
    metrics.stream_clients.inc()
    try:
        oldest = await _too_old(store, after)
        if oldest is not None:
            await ws.send_json(
                {
                    "type": "resync",
                    "oldest_seq": oldest,
                    "last_seq": await store.last_seq(),
                    "message": "cursor too old: refetch state, then reconnect with last_seq",
                }
            )
            await ws.close(code=RESYNC_CLOSE, message=b"resync")
            return ws
        await _pump(ws, store, after, request.app[CONFIG].hub.stream_send_timeout)
    except _Behind as exc:
        await _drop(request, ws, str(exc))
    except ConnectionError:  # the client went away mid-send: nothing to report
        pass
    finally:
        metrics.stream_clients.dec()
    return ws


def _frame(event_text: str) -> str:
    return f'{{"type":"event","event":{event_text}}}'


async def _replay(ws: web.WebSocketResponse, store: Store, cursor: int, send_within: float) -> int:
    while True:
        batch = await store.events_after(cursor, PAGE)
        for seq, text in batch:
            await _send(ws, _frame(text), send_within)
            cursor = seq
        if len(batch) < PAGE:
            return cursor


class _Behind(Exception):
    """The client stopped reading, or reads slower than events arrive."""


async def _send(ws: web.WebSocketResponse, text: str, send_within: float) -> None:
    # A client that never reads fills the socket's buffers, and then a send waits for ever: bound it.
    try:
        await asyncio.wait_for(ws.send_str(text), send_within)
    except TimeoutError:
        raise _Behind(f"a frame could not be written within {send_within:g} s") from None


async def _pump(ws: web.WebSocketResponse, store: Store, after: int, send_within: float) -> None:
    async with store.bus.subscribe() as sub:
        cursor = await _replay(ws, store, after, send_within)
        await _send(ws, json.dumps({"type": "live", "last_seq": cursor}), send_within)
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
                for seq, text in frames:
                    if seq <= cursor:
                        continue
                    if seq > cursor + 1:
                        # Another process committed events this one did not publish: read them.
                        cursor = await _replay(ws, store, cursor, send_within)
                        if seq <= cursor:
                            continue
                    await _send(ws, _frame(text), send_within)
                    cursor = seq
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


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
