"""``FakeProvider``: any provider's HTTP API, faked, for any channel plugin's tests.

It is not tied to one provider: routes are declared by the test (``POST /bot{token}/sendMessage``,
``GET /v1/me``), each with a standing answer and a script of answers for the next calls. It records
every request, adds latency, and fails in the ways real providers and networks do: an HTTP error
with any body and headers, a connection dropped without an answer, an answer slower than the
client's timeout.

Two ways to use it, with the same routes and scripts:

* on loopback, a real HTTP server (``async with FakeProvider() as provider: provider.url``): point
  the plugin's API base URL setting at ``provider.url``;
* in-process, without a socket: ``provider.transport()`` is an ``httpx.MockTransport`` (mount it on
  a client, or hand ``provider.handle`` to respx as a ``side_effect``). There an answer may also be
  an exception (``httpx.ConnectError(...)``), raised where the transport would raise it.

Example::

    provider = FakeProvider()
    provider.route("POST", "/v1/messages", Answer(200, json={"id": "p-1"}))
    provider.script("POST", "/v1/messages", Answer(429, headers={"retry-after": "3"}), Answer.drop())
    async with provider:
        ...  # first send throttled, second connection reset, then the standing answer
    assert provider.requests[0].json()["to"] == "u42"
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from aiohttp import web

__all__ = ["Answer", "FakeProvider", "RecordedRequest"]


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status with a JSON or raw body and headers, after ``delay`` seconds.

    ``Answer.drop()`` closes the connection without answering (a connection reset);
    ``Answer.hang(seconds)`` answers only after ``seconds``, to make the client time out.
    """

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    dropped: bool = False

    @classmethod
    def drop(cls) -> Answer:
        return cls(dropped=True)

    @classmethod
    def hang(cls, seconds: float = 60.0) -> Answer:
        return cls(delay=seconds)

    def content(self) -> bytes:
        if self.body is not None:
            return self.body
        return b"" if self.json is None else json.dumps(self.json).encode()

    def all_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.json is not None and self.body is None:
            headers.setdefault("content-type", "application/json")
        return headers


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake provider received, as it received it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = Answer | BaseException | Callable[[RecordedRequest], Answer]


class _Route:
    def __init__(self, method: str, path: str, answer: Reply) -> None:
        self.method = method.upper()
        self.template = path
        # "{name}" matches one path segment; everything else literally.
        parts = re.split(r"(\{[^}/]+\})", path)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        self.regex = re.compile(f"^{pattern}$")
        self.answer = answer
        self.queued: deque[Reply] = deque()

    def matches(self, method: str, path: str) -> bool:
        return self.method == method.upper() and bool(self.regex.match(path))


class FakeProvider:
    """A scriptable provider API (see the module's docstring). Unrouted requests get ``default``."""

    def __init__(self, *, default: Answer | None = None, latency: float = 0.0) -> None:
        self.default = default or Answer(404, json={"error": "no such route on the fake provider"})
        self.latency = latency
        """Seconds added to every answer."""
        self.requests: list[RecordedRequest] = []
        self._routes: list[_Route] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- scripting -----------------------------------------------------------------------------

    def route(self, method: str, path: str, answer: Reply = Answer()) -> Self:
        """Answer ``method path`` (``{name}`` matches one segment) with ``answer`` from now on."""
        for existing in self._routes:
            if existing.method == method.upper() and existing.template == path:
                existing.answer = answer
                return self
        self._routes.append(_Route(method, path, answer))
        return self

    def script(self, method: str, path: str, *answers: Reply) -> Self:
        """Answer the next calls of ``method path`` with ``answers``, in order, then as routed."""
        route = next((r for r in self._routes if r.method == method.upper() and r.template == path), None)
        if route is None:
            route = _Route(method, path, self.default)
            self._routes.append(route)
        route.queued.extend(answers)
        return self

    def fail_next(self, *answers: Reply) -> Self:
        """Script ``answers`` for the next calls of every route (whatever the plugin calls next)."""
        for route in self._routes:
            route.queued.extend(answers)
        return self

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The recorded requests, optionally of one method and a path matching a route template."""
        found = self.requests
        if method is not None:
            found = [r for r in found if r.method == method.upper()]
        if path is not None:
            probe = _Route(method or "GET", path, self.default)
            found = [r for r in found if probe.regex.match(r.path)]
        return found

    def _reply(self, request: RecordedRequest) -> Answer | BaseException:
        self.requests.append(request)
        for route in self._routes:
            if route.matches(request.method, request.path):
                reply = route.queued.popleft() if route.queued else route.answer
                break
        else:
            reply = self.default
        if isinstance(reply, Answer | BaseException):
            return reply
        return reply(request)

    # ---- in-process ----------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """An httpx handler (``httpx.MockTransport(provider.handle)``, respx ``side_effect``)."""
        recorded = RecordedRequest(
            request.method,
            request.url.path,
            dict(request.url.params),
            {k.lower(): v for k, v in request.headers.items()},
            await request.aread(),
        )
        reply = self._reply(recorded)
        if isinstance(reply, BaseException):
            raise reply
        await asyncio.sleep(self.latency + reply.delay)
        if reply.dropped:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(reply.status, content=reply.content(), headers=reply.all_headers())

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake, with no socket."""
        return httpx.MockTransport(self.handle)

    # ---- on loopback ---------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
        )
        reply = self._reply(recorded)
        if isinstance(reply, BaseException):
            reply = Answer.drop()  # over a real socket, any failure is a connection closed unanswered
        await asyncio.sleep(self.latency + reply.delay)
        if reply.dropped:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the request without writing anything
        return web.Response(status=reply.status, body=reply.content(), headers=reply.all_headers())

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback; returns the base URL (also ``self.url``)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
