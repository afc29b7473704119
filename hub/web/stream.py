"""The event log for the app: ``GET /api/v1/events?after=`` and the ``/api/v1/stream`` WebSocket.

The stream subscribes to live events first, then replays the log after the client's cursor, then
forwards live events it has not sent yet, so nothing falls between replay and live. A cursor older
than the retained log gets a ``resync`` answer: the app must refetch its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import WSMsgType, web

from hub.appkeys import METRICS, STORE
from hub.events import Store
from hub.web.auth import require_user
from hub.web.errors import ApiError, query_int
from hub.web.openapi import operation
from hub.web.schemas import EventPage

__all__ = ["routes"]

routes = web.RouteTableDef()
PAGE = 500
RESYNC_CLOSE = 4410


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
    query={"after": "last seq seen (0 = all)", "limit": "page size, up to 500"},
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


@routes.get("/api/v1/stream")
@operation(
    "WebSocket: replay events after a cursor, then stream live",
    "events",
    query={"after": "last seq seen", "token": "bearer token, if headers cannot be set"},
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
        await _pump(ws, store, after)
    finally:
        metrics.stream_clients.dec()
    return ws


def _frame(event_text: str) -> str:
    return f'{{"type":"event","event":{event_text}}}'


async def _replay(ws: web.WebSocketResponse, store: Store, cursor: int) -> int:
    while True:
        batch = await store.events_after(cursor, PAGE)
        for seq, text in batch:
            await ws.send_str(_frame(text))
            cursor = seq
        if len(batch) < PAGE:
            return cursor


async def _pump(ws: web.WebSocketResponse, store: Store, after: int) -> None:
    async with store.bus.subscribe() as sub:
        cursor = await _replay(ws, store, after)
        await ws.send_json({"type": "live", "last_seq": cursor})
        reader = asyncio.create_task(_read_until_closed(ws))
        try:
            while not ws.closed:
                getter = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                # Take every frame already waiting, not one per wake-up: on a busy loop each
                # wake-up costs a few turns of the loop, and one frame per turn let a client fall
                # seconds behind at a few hundred events per second (measured).
                frames = [getter.result()]
                while not sub.queue.empty():
                    frames.append(sub.queue.get_nowait())
                if sub.lagging:
                    # The client fell behind the in-memory queue: catch up from the log.
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.lagging = False
                    cursor = await _replay(ws, store, cursor)
                    continue
                for seq, text in frames:
                    if seq <= cursor:
                        continue
                    if seq > cursor + 1:
                        # Another process committed events this one did not publish: read them.
                        cursor = await _replay(ws, store, cursor)
                        if seq <= cursor:
                            continue
                    await ws.send_str(_frame(text))
                    cursor = seq
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                await ws.send_json(
                    {"type": "error", "error": {"code": "bad_request", "message": "frames must be JSON"}}
                )
                continue
            if isinstance(data, dict) and data.get("type") == "ping":
                await ws.send_json({"type": "pong"})
        elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return
