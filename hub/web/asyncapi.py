"""The AsyncAPI document of ``/api/v1/stream``, served at ``/asyncapi.json``.

The frames are pydantic models (the ``event`` frame carries the event catalogue's union), so the
document is generated from the same types the tests validate the hub's frames with; the close
codes are the stream module's own constants.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from hub import __version__
from hub.web.event_catalogue import AnyEvent

__all__ = [
    "CLOSE_CODES",
    "FRAMES",
    "HEARTBEAT_SECONDS",
    "ErrorFrame",
    "EventFrame",
    "LiveFrame",
    "PingFrame",
    "PongFrame",
    "ResyncFrame",
    "build_asyncapi",
]

# The server pings (a WebSocket protocol ping) every HEARTBEAT_SECONDS and closes a connection whose
# pong has not come back within half of it.
HEARTBEAT_SECONDS = 30.0


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventFrame(_Frame):
    """One event of the log, replayed or live, in seq order; its ``data`` schema follows its type."""

    type: Literal["event"]
    event: AnyEvent  # type: ignore[valid-type]


class LiveFrame(_Frame):
    """The replay is done: what follows is live. Sent once, after the missed events."""

    type: Literal["live"]
    last_seq: int = Field(description="the last seq the replay reached")


class ResyncFrame(_Frame):
    """The cursor cannot be resumed from; the stream then closes with 4410. Refetch the state
    (conversations, messages), then reconnect with ``after=last_seq``."""

    type: Literal["resync"]
    reason: Literal["too_old", "ahead"] = Field(
        description="too_old: the events after the cursor are no longer kept; ahead: the cursor is "
        "past the end of the log (a restored or replaced database)"
    )
    oldest_seq: int = Field(description="the oldest seq still kept")
    last_seq: int = Field(description="the newest seq: reconnect with after= it once refetched")
    message: str


class PongFrame(_Frame):
    """The answer to a ``ping`` frame."""

    type: Literal["pong"]


class FrameError(_Frame):
    code: str
    message: str


class ErrorFrame(_Frame):
    """A frame the client sent could not be read (it is ignored; the stream goes on)."""

    type: Literal["error"]
    error: FrameError


class PingFrame(_Frame):
    """Client to server: ask for a ``pong`` (an application-level liveness check)."""

    type: Literal["ping"]


# Server-to-client frames, then the one client-to-server frame.
FRAMES: dict[str, type[_Frame]] = {
    "event": EventFrame,
    "live": LiveFrame,
    "resync": ResyncFrame,
    "pong": PongFrame,
    "error": ErrorFrame,
}
CLIENT_FRAMES: dict[str, type[_Frame]] = {"ping": PingFrame}

# WebSocket close codes the hub uses, and what the app does on each.
CLOSE_CODES: dict[int, str] = {
    1000: "normal closure (the client closed)",
    1006: "no close frame: the connection dropped, or no pong came back within "
    f"{HEARTBEAT_SECONDS / 2:g} s of a protocol ping; reconnect with after=",
    4401: "the token is no longer valid (logged out, expired, revoked by an admin, or the user "
    "deactivated): get a new token (refresh or log in), then reconnect with after=",
    4410: "resync: the cursor cannot be resumed from (a resync frame came first): refetch state, then "
    "reconnect with after= its last_seq",
    4429: "the client fell behind (a frame unwritten for stream_send_timeout seconds, or more than "
    "stream_queue_bytes waiting): reconnect with after= the last seq processed; nothing is lost",
}
# Any other code (a restart of the hub, a proxy's timeout): reconnect with after=, with backoff.


def build_asyncapi(public_url: str) -> dict[str, Any]:
    parts = urlsplit(public_url)
    every = {**FRAMES, **CLIENT_FRAMES}
    _, top = models_json_schema(
        [(model, "validation") for model in every.values()], ref_template="#/components/schemas/{model}"
    )
    schemas = top.get("$defs", {})
    messages = {
        name: {
            "name": name,
            "title": f"{name} frame",
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
        for name, model in every.items()
    }
    codes = "\n".join(f"* **{code}**: {text}" for code, text in sorted(CLOSE_CODES.items()))
    codes += (
        "\n* any other code (the hub restarting, a proxy's idle timeout): reconnect with after=, backing off"
    )
    description = (
        "The app's realtime feed. Connect to `/api/v1/stream?after=SEQ` with `Authorization: Bearer "
        "TOKEN` (or `?token=` where headers cannot be set). The hub first replays every event after "
        "SEQ that the user may see (`event` frames, in seq order), then sends one `live` frame, "
        "then streams new events as they are committed. Keep the seq of the last event processed "
        "and reconnect with `after=` it: nothing is lost or repeated. A list answered with "
        "`X-Hub-Seq: N` is up to date through event N: stream from `after=N`.\n\n"
        f"Liveness: the hub sends a WebSocket protocol ping every {HEARTBEAT_SECONDS:g} s and drops "
        f"a connection whose pong is not back within {HEARTBEAT_SECONDS / 2:g} s (browsers and "
        "WebSocket libraries answer pings by themselves). An app that wants its own check sends the "
        'text frame `{"type": "ping"}` at any time and gets `{"type": "pong"}`; when none comes '
        "back within a few seconds, it reconnects.\n\nClose codes:\n" + codes
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Channel hub event stream",
            "version": __version__,
            "description": description,
        },
        "defaultContentType": "application/json",
        "servers": {
            "hub": {
                "host": parts.netloc,
                "protocol": "wss" if parts.scheme == "https" else "ws",
                "pathname": parts.path or "/",
                "security": [{"$ref": "#/components/securitySchemes/bearer"}],
            }
        },
        "channels": {
            "stream": {
                "address": "/api/v1/stream",
                "title": "The event stream",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in every},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "after": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "the last seq processed (0: from the start)",
                                },
                                "token": {
                                    "type": "string",
                                    "description": "the bearer token, when headers cannot be set",
                                },
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "receiveFrames": {
                "action": "receive",
                "channel": {"$ref": "#/channels/stream"},
                "summary": "Frames the hub sends",
                "messages": [{"$ref": f"#/channels/stream/messages/{name}"} for name in FRAMES],
            },
            "sendPing": {
                "action": "send",
                "channel": {"$ref": "#/channels/stream"},
                "summary": "Frames the app may send",
                "messages": [{"$ref": f"#/channels/stream/messages/{name}"} for name in CLIENT_FRAMES],
            },
        },
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "x-close-codes": {str(code): text for code, text in sorted(CLOSE_CODES.items())},
    }
