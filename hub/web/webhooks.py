"""``GET|POST /webhooks/{channel_id}``: the provider-facing door of push channels.

POST: authenticate the raw bytes, refuse a body that is not readable at all, store the delivery
durably, and only then answer 200. Processing happens after the answer. An overloaded hub (too many
deliveries waiting to be stored, or stored and waiting to be processed) stores nothing and answers
503 with ``Retry-After``: providers deliver again later.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from hub.appkeys import CHANNELS, METRICS, PROCESSOR, RAW_INBOX
from hub.channel import Channel, RawEvent
from hub.errors import BadPayload, BadSignature
from hub.inbound import Overloaded
from hub.web.errors import ApiError, error_response
from hub.web.openapi import operation

__all__ = ["routes"]

log = logging.getLogger("hub.webhooks")
# What an overloaded hub asks a provider to wait before delivering again (providers that ignore
# the header retry on their own schedule).
RETRY_AFTER_SECONDS = 5
routes = web.RouteTableDef()


def _channel(request: web.Request) -> Channel:
    cid = request.match_info["channel_id"]
    channel = request.app[CHANNELS].get(cid)
    if channel is None:
        # Unknown and disabled look the same to the outside: nothing to enumerate.
        raise ApiError(404, "not_found", f"no active channel {cid!r}")
    return channel


# Never kept with a stored delivery: credentials of the caller, and any header whose value holds
# one of the channel's secrets (some providers echo a shared secret in a header).
_DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization"}


def _storable(channel: Channel, headers: dict[str, str]) -> dict[str, str]:
    secrets = [s for s in channel.secret_values() if len(s) >= 4]
    out = {}
    for name, value in headers.items():
        if name in _DROPPED_HEADERS:
            continue
        out[name] = "[redacted]" if any(s in value for s in secrets) else value
    return out


@routes.get("/webhooks/{channel_id}")
@operation(
    "Provider subscription handshake",
    "webhooks",
    auth=None,
    errors=(403, 404),
    response={"type": "string"},
    response_type="text/plain",
)
async def handshake(request: web.Request) -> web.StreamResponse:
    channel = _channel(request)
    answer = channel.verify_handshake(dict(request.query))
    if answer is None:
        raise ApiError(403, "forbidden", "handshake refused: mode or verify token does not match")
    return web.Response(text=answer, content_type="text/plain")


@routes.post("/webhooks/{channel_id}")
@operation(
    "Receive a provider delivery",
    "webhooks",
    auth=None,
    errors=(401, 404, 413, 503),
    response={"type": "object", "properties": {"status": {"type": "string"}}},
)
async def receive(request: web.Request) -> web.StreamResponse:
    channel = _channel(request)
    metrics = request.app[METRICS]
    begun = time.perf_counter()
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        channel.authenticate(body, headers)
    except BadSignature as exc:
        metrics.webhook(channel.type_name, "bad_signature")
        raise ApiError(401, "bad_signature", str(exc)) from None
    raw = RawEvent(channel.channel_id, body, headers)
    parsed = None
    try:
        parsed = channel.parse(raw)
    except BadPayload as exc:
        metrics.webhook(channel.type_name, "bad_payload")
        raise ApiError(400, "bad_payload", str(exc)) from None
    except Exception:
        # A parser bug must not lose the delivery: store it; it fails in processing and a fixed
        # plugin replays it (`hub replay`).
        log.exception("channel %s parser raised; storing the delivery for replay", channel.channel_id)
    key = channel.delivery_key(body, headers)
    storing = time.perf_counter()
    metrics.stage("accept", storing - begun)
    try:
        rid = await request.app[RAW_INBOX].store_raw(
            channel.channel_id, key, body, _storable(channel, headers), received_at=raw.received_at
        )
    except Overloaded as exc:
        # Nothing was stored: the provider delivers again later, and meanwhile the heap and the
        # backlog stop growing.
        metrics.webhook(channel.type_name, "overloaded")
        log.warning("webhook for channel %s refused with 503: %s", channel.channel_id, exc)
        resp = error_response(503, "overloaded", f"the hub is overloaded ({exc}); retry later")
        resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return resp
    metrics.stage("group_commit", time.perf_counter() - storing)
    metrics.webhook(channel.type_name, "stored" if rid else "duplicate")
    if rid:
        processor = request.app[PROCESSOR]
        if parsed is not None:
            processor.offer(rid, parsed)  # parsing is pure: the processor need not do it again
        processor.notify()
    return web.json_response({"status": "ok" if rid else "duplicate"})
