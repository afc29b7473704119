"""A fake Meta Graph API on loopback, for testing real outbound code without the network.

``FakeGraph`` is an aiohttp server that answers like ``graph.facebook.com`` for the calls channel
plugins make, records every request, and can be scripted to fail, throttle or hang::

    async with FakeGraph() as graph:
        settings = Settings(..., api_base_url=graph.base_url)   # ".../v26.0"
        graph.fail("123/messages", 400, code=131047, message="Re-engagement message")
        ...
        assert graph.requests[-1].json["to"] == "15551234567"

What it answers by default (paths below are relative to ``base_url``):

* ``POST .../messages`` (WhatsApp ``/{phone-number-id}/messages``): a WhatsApp send receipt with a
  generated id ``wamid.<n>``; a body with ``"status": "read"`` gets ``{"success": true}``.
* ``POST /me/messages`` (Messenger Send API): ``{"recipient_id", "message_id": "mid.<n>"}``.
* ``POST .../media`` (multipart upload): stores the file and answers ``{"id": "<media id>"}``.
* ``GET /{media-id}`` for a stored media id: ``{"url", "mime_type", "sha256" (hex), "file_size",
  "id", "messaging_product"}``; the ``url`` points back at this server (``/_media/{id}``), which
  serves the bytes.
* Any other request: ``{"id": <last path segment>}`` with 200, unless ``respond`` set an answer.

With ``access_token`` given, every request (media downloads included) must carry
``Authorization: Bearer <access_token>`` or gets Meta's 401 / code 190 error.

It is deliberately generic over paths, so WhatsApp (``/{version}/{phone-number-id}/messages``) and
Messenger (``/{version}/me/messages``) tests share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = ["FakeGraph", "RecordedRequest", "ScriptedResponse"]

MEDIA_PREFIX = "/_media/"


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    json: Any = None
    """The decoded JSON body, when the body was JSON."""
    form: dict[str, Any] = field(default_factory=dict)
    """Multipart / urlencoded fields; a file part appears as ``{"filename", "content_type",
    "data"}``."""
    at: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``), for rate checks."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class ScriptedResponse:
    """An answer queued for a path: ``times`` calls get it, then the default behaviour resumes."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str | None = None
    delay: float = 0.0


@dataclass
class _Media:
    data: bytes
    mime_type: str
    sha256: str


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Decode a multipart/form-data body (from the bytes already read) into fields and files."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    form: dict[str, Any] = {}
    if not message.is_multipart():
        return form
    for part in message.iter_parts() if hasattr(message, "iter_parts") else []:
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            form[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "data": data,
            }
        else:
            form[name] = data.decode(part.get_content_charset() or "utf-8", "replace")
    return form


class FakeGraph:
    """A scriptable fake of Meta's Graph API. Use as ``async with FakeGraph() as graph``.

    ``version`` is the path prefix (``base_url`` ends with it); ``latency`` delays every answer
    (seconds), so a client timeout shorter than it fails as a timeout would.
    """

    def __init__(
        self,
        *,
        version: str = "v26.0",
        access_token: str | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.version = version
        self.access_token = access_token
        self.latency = latency
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.media: dict[str, _Media] = {}
        self._scripts: dict[str, deque[ScriptedResponse]] = {}
        self._fixed: dict[tuple[str, str], ScriptedResponse] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gave up (timeout tests) must not keep stop() waiting.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no version)."""
        if self._port is None:
            raise RuntimeError("FakeGraph is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The Graph API base URL to configure: ``http://127.0.0.1:<port>/<version>``."""
        return f"{self.root_url}/{self.version}"

    # ---- scripting -----------------------------------------------------------------------------

    def path(self, relative: str) -> str:
        """The absolute path for ``relative`` (``"123/messages"`` -> ``"/v26.0/123/messages"``).

        A path that already starts with ``/`` is taken as absolute.
        """
        if relative.startswith("/"):
            return relative
        return f"/{self.version}/{relative}"

    def script(
        self,
        path: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        method: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue an answer for the next ``times`` requests to ``path`` (optionally one ``method``).

        Answers queued for one path are used in order. ``delay`` adds latency to these answers.
        """
        self._scripts.setdefault(self.path(path), deque()).append(
            ScriptedResponse(status, body, dict(headers or {}), times, method, delay)
        )

    def fail(
        self,
        path: str,
        status: int,
        *,
        code: int,
        message: str = "",
        details: str | None = None,
        subcode: int | None = None,
        error_type: str = "OAuthException",
        headers: dict[str, str] | None = None,
        times: int = 1,
        method: str | None = None,
    ) -> None:
        """Queue Meta's error shape: ``{"error": {"message", "type", "code", ...}}``."""
        self.script(
            path,
            status,
            self.error_body(code, message, details=details, subcode=subcode, error_type=error_type),
            headers=headers,
            times=times,
            method=method,
        )

    def respond(self, method: str, path: str, status: int, body: Any) -> None:
        """Answer every ``method`` request to ``path`` with ``body`` (until changed)."""
        self._fixed[(method.upper(), self.path(path))] = ScriptedResponse(status, body)

    @staticmethod
    def error_body(
        code: int,
        message: str = "",
        *,
        details: str | None = None,
        subcode: int | None = None,
        error_type: str = "OAuthException",
    ) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": message or f"(#{code}) error",
            "type": error_type,
            "code": code,
            "fbtrace_id": "AfakeTraceId",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        if details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        return {"error": error}

    def add_media(
        self,
        data: bytes,
        mime_type: str = "application/octet-stream",
        *,
        media_id: str | None = None,
        sha256: str | None = None,
    ) -> str:
        """Store media for the two-step download; ``sha256`` overrides the advertised digest."""
        media_id = media_id or str(1_000_000 + next(self._ids))
        self.media[media_id] = _Media(data, mime_type, sha256 or hashlib.sha256(data).hexdigest())
        return media_id

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to ``path`` (relative or absolute), optionally by method."""
        full = self.path(path)
        return [r for r in self.requests if r.path == full and (method is None or r.method == method.upper())]

    # ---- serving -------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        ctype = request.content_type
        if ctype == "application/json" or (body[:1] in (b"{", b"[") and not ctype.startswith("multi")):
            try:
                recorded.json = json.loads(body)
            except ValueError:
                pass
        elif ctype.startswith("multipart/"):
            recorded.form = _parse_multipart(request.headers.get("Content-Type", ""), body)
        elif ctype == "application/x-www-form-urlencoded":
            recorded.form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        self.requests.append(recorded)
        return recorded

    def _take_script(self, method: str, path: str) -> ScriptedResponse | None:
        queue = self._scripts.get(path)
        if not queue:
            return None
        for scripted in queue:
            if scripted.method is None or scripted.method.upper() == method:
                scripted.times -= 1
                if scripted.times <= 0:
                    queue.remove(scripted)
                return scripted
        return None

    @staticmethod
    def _answer(scripted: ScriptedResponse) -> web.StreamResponse:
        if isinstance(scripted.body, bytes):
            return web.Response(status=scripted.status, body=scripted.body, headers=scripted.headers)
        if isinstance(scripted.body, str):
            return web.Response(status=scripted.status, text=scripted.body, headers=scripted.headers)
        return web.json_response(
            scripted.body if scripted.body is not None else {},
            status=scripted.status,
            headers=scripted.headers,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        scripted = self._take_script(recorded.method, recorded.path)
        if scripted is not None:
            if scripted.delay:
                await asyncio.sleep(scripted.delay)
            return self._answer(scripted)
        if self.access_token is not None:
            if recorded.header("authorization") != f"Bearer {self.access_token}":
                return web.json_response(
                    self.error_body(190, "Invalid OAuth access token - Cannot parse access token"),
                    status=401,
                )
        fixed = self._fixed.get((recorded.method, recorded.path))
        if fixed is not None:
            return self._answer(fixed)
        return self._default(recorded)

    def _default(self, r: RecordedRequest) -> web.StreamResponse:
        segments = [s for s in r.path.split("/") if s]
        if r.path.startswith(MEDIA_PREFIX):
            media = self.media.get(r.path[len(MEDIA_PREFIX) :])
            if media is None:
                return web.json_response(self.error_body(100, "Unknown media"), status=404)
            return web.Response(body=media.data, content_type=media.mime_type)
        if r.method == "POST" and segments[-1:] == ["messages"]:
            payload = r.json if isinstance(r.json, dict) else {}
            if payload.get("status") == "read":
                return web.json_response({"success": True})
            n = next(self._ids)
            if segments[-2:-1] == ["me"]:
                recipient = payload.get("recipient") or {}
                return web.json_response({"recipient_id": recipient.get("id"), "message_id": f"mid.{n}"})
            contact: dict[str, Any] = {}
            if payload.get("to"):
                contact = {"input": payload["to"], "wa_id": payload["to"]}
            elif payload.get("recipient"):
                contact = {"input": payload["recipient"], "user_id": payload["recipient"]}
            return web.json_response(
                {
                    "messaging_product": payload.get("messaging_product", "whatsapp"),
                    "contacts": [contact] if contact else [],
                    "messages": [{"id": f"wamid.{n}"}],
                }
            )
        if r.method == "POST" and segments[-1:] == ["media"]:
            file = r.form.get("file")
            if not isinstance(file, dict):
                return web.json_response(self.error_body(100, "file is required"), status=400)
            media_id = self.add_media(file["data"], str(r.form.get("type") or file.get("content_type") or ""))
            return web.json_response({"id": media_id})
        if r.method == "GET" and len(segments) == 2 and segments[1] in self.media:
            media_id = segments[1]
            media = self.media[media_id]
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{self.root_url}{MEDIA_PREFIX}{media_id}",
                    "mime_type": media.mime_type,
                    "sha256": media.sha256,
                    "file_size": len(media.data),
                    "id": media_id,
                }
            )
        return web.json_response({"id": segments[-1] if segments else ""})
