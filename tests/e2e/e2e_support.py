"""Helpers for the end-to-end suite: a real ``hub serve`` process, an HTTP/WebSocket client that
talks to it as the mobile app would, a threaded FakeGraph, and WhatsApp webhook payloads built from
Meta's documented shapes.

Everything here drives the hub from the outside (CLI, HTTP, WebSocket); nothing imports the hub's
internals except ``hub.testing.fake_graph``, the provider fake the hub ships for this purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from hub.testing.fake_graph import FakeGraph, RecordedRequest

ROOT = Path(__file__).resolve().parents[2]
_VENV_HUB = ROOT / ".venv" / "bin" / "hub"
HUB_BIN = str(_VENV_HUB if _VENV_HUB.exists() else Path(sys.executable).with_name("hub"))
DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"
PG_HELP = (
    "PostgreSQL is not reachable at {url} ({error}). Start one, e.g. "
    "`apt-get install postgresql` or `docker run --rm -e POSTGRES_HOST_AUTH_METHOD=trust "
    "-e POSTGRES_DB=test -p 5432:5432 postgres:16`, "
    "or set HUB_TEST_POSTGRES_URL. The tests use (and wipe) a database of their own run, hub_e2e_<pid>_<hex>."
)
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct-horse-battery-staple"
WA_OBJECT = "whatsapp_business_account"
# The small body limit the shared hubs run with, for the 413 scenario (the hub's minimum is 1024).
MAX_BODY_BYTES = 65536

T = TypeVar("T")

# Hubs that have not been closed yet: the failure hook shows their logs.
LIVE_HUBS: list[HubProcess] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str = "") -> str:
    return prefix + secrets.token_hex(6)


_numbers = itertools.count(int(time.time()) % 100_000 * 1000)


def phone() -> str:
    """A fresh E.164-looking WhatsApp id (digits only), distinct within this test run."""
    return f"1555{next(_numbers):07d}"


# ---- PostgreSQL ---------------------------------------------------------------------------------


def postgres_url() -> str:
    return os.environ.get("HUB_TEST_POSTGRES_URL") or DEFAULT_PG_URL


async def postgres_problem(url: str) -> str | None:
    """None when a server answers at ``url``, else why not."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


# One database per test run (this process): several runs on one server (engineers sharing a
# machine, CI beside a benchmark) each wipe their own, never another run's.
E2E_DATABASE = f"hub_e2e_{os.getpid()}_{secrets.token_hex(4)}"
_e2e_created: list[str] = []


async def e2e_database(url: str) -> str:
    """The database the e2e hubs use on the server at ``url``: ``E2E_DATABASE``, this run's own,
    created on first use (``drop_e2e_database`` removes it at the end), so that the core tests
    and benchmarks, which wipe ``url`` itself, and other runs can go on at the same time. Falls
    back to ``url`` when the role may not create databases."""
    import asyncpg

    parts = urlsplit(url)
    conn = await asyncpg.connect(url, timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", E2E_DATABASE):
            try:
                await conn.execute(f'CREATE DATABASE "{E2E_DATABASE}"')
                _e2e_created.append(url)
            except asyncpg.DuplicateDatabaseError:
                pass
            except asyncpg.InsufficientPrivilegeError:
                return url
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path="/" + E2E_DATABASE))


async def drop_e2e_database() -> None:
    """Drop this run's e2e database, if it made one (its hubs must have stopped)."""
    import asyncpg

    for url in _e2e_created:
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(url, timeout=5)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{E2E_DATABASE}" WITH (FORCE)')
            finally:
                await conn.close()
    _e2e_created.clear()


async def reset_postgres(url: str) -> None:
    """Wipe the database the hub will use: ``DROP SCHEMA public CASCADE; CREATE SCHEMA public``."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


# ---- waiting ------------------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    within: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        last = result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}; last value: {last!r}")
        await asyncio.sleep(interval)


# ---- signing and WhatsApp payloads ----------------------------------------------------------------


def sign(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` value: ``sha256=`` + lower-case hex HMAC-SHA256 of the raw bytes."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: dict[str, Any]) -> bytes:
    """Serialize as Meta does: compact, non-ASCII as ``\\uXXXX`` escapes (emoji as surrogate pairs)."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def wamid() -> str:
    return "wamid.HBgL" + secrets.token_hex(12).upper()


def wa_contact(wa_id: str, name: str | None = "Test Customer") -> dict[str, Any]:
    contact: dict[str, Any] = {"wa_id": wa_id}
    if name is not None:
        contact["profile"] = {"name": name}
    return contact


def wa_text(from_: str, text: str, *, msg_id: str | None = None, ts: int | None = None) -> dict[str, Any]:
    """One element of ``value.messages`` of type text (Meta's documented shape)."""
    return {
        "from": from_,
        "id": msg_id or wamid(),
        "timestamp": str(int(time.time()) if ts is None else ts),
        "type": "text",
        "text": {"body": text},
    }


def wa_status(msg_id: str, status: str, recipient: str, *, ts: int | None = None) -> dict[str, Any]:
    """One element of ``value.statuses`` (sent/delivered/read), with the optional pricing object."""
    st: dict[str, Any] = {
        "id": msg_id,
        "status": status,
        "timestamp": str(int(time.time()) if ts is None else ts),
        "recipient_id": recipient,
    }
    if status != "read":
        st["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
        st["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service", "type": "regular"}
    return st


def wa_value(
    phone_number_id: str,
    *,
    messages: Iterable[dict[str, Any]] = (),
    contacts: Iterable[dict[str, Any]] = (),
    statuses: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
    }
    contacts, messages, statuses = list(contacts), list(messages), list(statuses)
    if contacts:
        value["contacts"] = contacts
    if messages:
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return value


def wa_webhook(*entries: list[dict[str, Any]], waba_id: str = "102290129340398") -> dict[str, Any]:
    """The envelope: each argument is one entry's list of ``value`` objects (one change each)."""
    return {
        "object": WA_OBJECT,
        "entry": [
            {"id": waba_id, "changes": [{"value": value, "field": "messages"} for value in values]}
            for values in entries
        ],
    }


def wa_text_webhook(
    phone_number_id: str,
    from_: str,
    text: str,
    *,
    msg_id: str | None = None,
    ts: int | None = None,
    name: str | None = "Test Customer",
) -> tuple[dict[str, Any], str]:
    """A one-message text webhook; returns (payload, the message's wamid)."""
    msg = wa_text(from_, text, msg_id=msg_id, ts=ts)
    payload = wa_webhook([wa_value(phone_number_id, contacts=[wa_contact(from_, name)], messages=[msg])])
    return payload, msg["id"]


def wa_status_webhook(phone_number_id: str, *statuses: dict[str, Any]) -> dict[str, Any]:
    return wa_webhook([wa_value(phone_number_id, statuses=statuses)])


# ---- the hub process ----------------------------------------------------------------------------


class HubProcess:
    """A real ``hub serve`` process on loopback, with its own config, database, data dir and log.

    ``start``/``restart`` keep the database, port and log file; ``kill`` is SIGKILL (a crash),
    ``stop`` is SIGTERM (a graceful shutdown).
    """

    def __init__(
        self,
        directory: Path,
        *,
        database_url: str | None = None,
        max_body_bytes: int | None = None,
        extra_hub_settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        extra_toml: str = "",
    ) -> None:
        """``extra_toml`` is appended to the config file (sections other than ``[hub]``)."""
        self.dir = directory
        self.env = dict(env or {})
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.database_url = database_url or f"sqlite:///{self.dir / 'hub.db'}"
        self.log_path = self.dir / "hub.log"
        self.config_path = self.dir / "hub.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None
        self.workers = True
        settings: dict[str, Any] = {
            "database_url": self.database_url,
            "public_url": self.base_url,
            "secret_key": "",
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.dir / "data"),
            "run_workers": True,
            # Every event emitted must match its schema in the catalogue (hub/web/event_catalogue.py).
            "check_events": True,
        }
        if max_body_bytes is not None:
            settings["max_body_bytes"] = max_body_bytes
        settings.update(extra_hub_settings or {})
        lines = ["[hub]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n" + extra_toml, encoding="utf-8")
        LIVE_HUBS.append(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- CLI ----------------------------------------------------------------------------------

    async def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``hub ARGS --config <this hub's file>``; its stdout, or an error with all output."""
        proc = await asyncio.create_subprocess_exec(
            HUB_BIN,
            *args,
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self.dir),
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
        if proc.returncode != 0:
            raise AssertionError(
                f"`hub {' '.join(args)}` exited {proc.returncode}\nstdout:\n{out.decode()}\n"
                f"stderr:\n{err.decode()}"
            )
        return out.decode()

    async def create_admin(self) -> None:
        """``hub users create admin@example.com --role administrator --password-stdin``."""
        await self.cli(
            "users",
            "create",
            ADMIN_EMAIL,
            "--role",
            "administrator",
            "--password-stdin",
            stdin=ADMIN_PASSWORD,
        )

    async def create_token(self, email: str = ADMIN_EMAIL) -> str:
        """``hub tokens create EMAIL``: the token is the last line of its output."""
        out = await self.cli("tokens", "create", email)
        token = out.strip().splitlines()[-1].strip()
        assert token and " " not in token, f"no token in `hub tokens create` output: {out!r}"
        return token

    async def bootstrap(self, *, workers: bool = True) -> HubProcess:
        """Create the admin (this migrates the database), then its token and the server together."""
        await self.create_admin()
        token, _ = await asyncio.gather(self.create_token(), self.start(workers=workers))
        self.token = token
        return self

    # ---- process ------------------------------------------------------------------------------

    def _spawn(self, workers: bool) -> None:
        cmd = [HUB_BIN, "serve", "--config", str(self.config_path), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port)]
        if not workers:
            cmd.append("--no-workers")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(cmd)} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.dir), env=env, start_new_session=True
            )

    async def start(self, *, workers: bool = True, within: float = 30.0) -> None:
        assert not self.running, "the hub is already running"
        self.workers = workers
        self._spawn(workers)
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"hub serve exited with {self.proc.returncode} during start-up:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(
                        f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200 and (await resp.json()).get("status") == "ok":
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"hub did not answer /healthz within {within:g} s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def _wait_exit(self, seconds: float) -> int | None:
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, seconds)
        return self.proc.poll()

    async def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, as in a crash or an OOM kill."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            assert await self._wait_exit(10) is not None, "hub did not die on SIGKILL"

    async def stop(self, within: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await self._wait_exit(within)
        if code is None:
            await self.kill()
            raise AssertionError(f"hub did not exit within {within:g} s of SIGTERM:\n{self.log_tail()}")
        return code

    async def restart(self, *, workers: bool = True) -> None:
        """Start again on the same database, port and log (stopping it first if it still runs)."""
        if self.running:
            await self.stop()
        await self.start(workers=workers)

    async def close(self) -> None:
        try:
            if self.running:
                await self.stop()
        finally:
            if self.running:
                await self.kill()
            if self in LIVE_HUBS:
                LIVE_HUBS.remove(self)

    # ---- logs ---------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


HubFactory = Callable[..., Awaitable[HubProcess]]
"""The ``hub_factory`` fixture: ``await hub_factory(backend="sqlite", workers=True, ...)``."""


# ---- the app's client -----------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError as exc:
            raise AssertionError(f"HTTP {self.status}: body is not JSON: {self.text[:500]!r}") from exc

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.text[:300]!r}>"


def assert_error(resp: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the one error shape ``{"error": {"code", "message", "details"}}``."""
    assert resp.status == status, f"expected HTTP {status}, got {resp!r}"
    body = resp.json
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


@dataclass
class Api:
    """HTTP against one hub, as the app does; every response body is kept for secret scans."""

    session: aiohttp.ClientSession
    base_url: str
    token: str | None = None
    bodies: list[str] = field(default_factory=list)

    def _headers(self, headers: dict[str, str] | None, auth: bool) -> dict[str, str]:
        out = dict(headers or {})
        if auth and self.token:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        params: dict[str, str] | None = None,
    ) -> Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        kwargs: dict[str, Any] = {"headers": self._headers(headers, auth), "params": params}
        if json_body is not None:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        async with self.session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            self.bodies.append(text)
            return Response(resp.status, dict(resp.headers), text)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, json_body=json_body, **kw)

    async def patch(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, json_body=json_body, **kw)

    # ---- conveniences ---------------------------------------------------------------------------

    async def ok(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kw: Any) -> Any:
        resp = await self.request(method, path, **kw)
        allowed = (expect,) if isinstance(expect, int) else expect
        assert resp.status in allowed, f"{method} {path}: expected {allowed}, got {resp!r}"
        return resp.json

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        """Every event after ``after`` from ``GET /api/v1/events``, following ``has_more``."""
        out: list[dict[str, Any]] = []
        while True:
            page = await self.ok("GET", f"/api/v1/events?after={after}&limit=500")
            out.extend(page["events"])
            if not page["has_more"]:
                return out
            # last_seq, not the last event's: it moves past events this user may not see.
            after = page["last_seq"]

    async def last_seq(self) -> int:
        """The newest sequence number in the event log (``/healthz`` reports it)."""
        health = await self.ok("GET", "/healthz", auth=False)
        return int(health["last_seq"])

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        data = await self.ok("GET", f"/api/v1/conversations/{conversation_id}/messages?limit=200")
        return list(data["messages"])

    async def message(self, message_id: str) -> dict[str, Any]:
        return dict(await self.ok("GET", f"/api/v1/messages/{message_id}"))

    async def channels(self) -> list[dict[str, Any]]:
        return list((await self.ok("GET", "/api/v1/channels"))["channels"])

    async def webhook(
        self, channel_id: str, payload: dict[str, Any] | bytes, app_secret: str | None
    ) -> Response:
        """POST a webhook body, signed with ``app_secret`` (unsigned when None)."""
        body = payload if isinstance(payload, bytes) else encode(payload)
        headers = {"Content-Type": "application/json"}
        if app_secret is not None:
            headers["X-Hub-Signature-256"] = sign(body, app_secret)
        return await self.request("POST", f"/webhooks/{channel_id}", data=body, headers=headers, auth=False)


# ---- the WebSocket stream -------------------------------------------------------------------------


class EventStream:
    """``/api/v1/stream?after=N`` read in the background: ``events`` in arrival order, ``frames`` all."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, after: int) -> None:
        self.session = session
        self.url = f"{base_url}/api/v1/stream?after={after}"
        self.token = token
        self.frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed: asyncio.Event = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        self.ws = await self.session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"})
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    self.frames.append(frame)
                    if frame.get("type") == "event":
                        self.events.append(frame["event"])
                    self._changed.set()
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    break
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def live(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == "live"), None)

    async def wait(
        self, check: Callable[[EventStream], T | None], *, within: float = 15.0, what: str = ""
    ) -> T:
        """Wait until ``check(self)`` is truthy (re-checked on every frame)."""
        deadline = time.monotonic() + within
        while True:
            result = check(self)
            if result:
                return result
            if self.closed.is_set():
                raise AssertionError(
                    f"the stream closed while waiting for {what or 'a frame'}: {self.frames[-3:]}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting for {what or 'a frame'}; last frames: {self.frames[-5:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_live(self, within: float = 15.0) -> dict[str, Any]:
        return await self.wait(lambda s: s.live, within=within, what="the live frame")

    def find(self, type_: str, **data: Any) -> list[dict[str, Any]]:
        """Events of ``type_`` whose ``data`` has every given key/value."""
        return [
            e
            for e in self.events
            if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
        ]

    async def wait_event(self, type_: str, *, within: float = 15.0, **data: Any) -> dict[str, Any]:
        found = await self.wait(lambda s: s.find(type_, **data), within=within, what=f"{type_} {data}")
        return found[0]


# ---- FakeGraph on a thread of its own ---------------------------------------------------------------


class ThreadedFakeGraph:
    """``FakeGraph`` served from its own thread and event loop, so it answers the hub at any time
    (also between tests, when the test loop is idle) and can outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.graph = FakeGraph()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-graph", daemon=True)

    def start(self) -> ThreadedFakeGraph:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.graph.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.graph.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the fake's loop (scripting must not race its request handler)."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    @property
    def base_url(self) -> str:
        return self.graph.base_url

    @property
    def version(self) -> str:
        return self.graph.version

    def fail(self, path: str, status: int, **kwargs: Any) -> None:
        self.call(self.graph.fail, path, status, **kwargs)

    def sends(self, phone_number_id: str) -> list[RecordedRequest]:
        """The POST /{version}/{phone_number_id}/messages requests received so far."""
        return self.call(self.graph.requests_to, f"{phone_number_id}/messages", "POST")


# ---- channels -----------------------------------------------------------------------------------


@dataclass
class WaChannel:
    """A WhatsApp channel created through the admin API, with the values the tests planted."""

    id: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    created: dict[str, Any]


async def create_wa_channel(
    api: Api, graph_base_url: str, *, name: str = "WhatsApp e2e", **settings: Any
) -> WaChannel:
    values = {
        "phone_number_id": unique("pn"),
        "access_token": "EAAG" + secrets.token_hex(16) + "PLANTEDTOKEN",
        "app_secret": secrets.token_hex(16) + "plantedsecret",
        "verify_token": unique("verify-"),
        "api_base_url": graph_base_url,
        "messages_per_second": 1000,
        "pair_burst": 1000,
    }
    values.update(settings)
    created = await api.ok(
        "POST",
        "/api/v1/admin/channels",
        expect=201,
        json_body={"type": "whatsapp", "name": name, "settings": values},
    )
    return WaChannel(
        created["id"],
        values["phone_number_id"],
        values["access_token"],
        values["app_secret"],
        values["verify_token"],
        created,
    )


async def deliver_text(
    api: Api,
    ch: WaChannel,
    from_: str,
    text: str,
    *,
    ts: int | None = None,
    name: str | None = "Test Customer",
) -> str:
    """POST a signed one-message text webhook (expects 200); returns the wamid."""
    payload, msg_id = wa_text_webhook(ch.phone_number_id, from_, text, ts=ts, name=name)
    resp = await api.webhook(ch.id, payload, ch.app_secret)
    assert resp.status == 200, resp
    return msg_id


async def wait_message_event(api: Api, after: int, external_id: str, within: float = 15.0) -> dict[str, Any]:
    """The ``message.created`` event (from the log) of the message with provider id ``external_id``."""

    async def find() -> dict[str, Any] | None:
        for ev in await api.events(after):
            if ev["type"] == "message.created" and ev["data"].get("external_id") == external_id:
                return ev
        return None

    return await wait_until(find, within=within, what=f"message.created of {external_id}")


async def settle(api: Api, ch: WaChannel, after: int = 0) -> dict[str, Any]:
    """Deliver a sentinel message and wait for it: the processor works in arrival order, so every
    delivery stored before it has been applied by then. Returns the sentinel's event."""
    msg_id = await deliver_text(api, ch, phone(), "sentinel " + unique())
    return await wait_message_event(api, after, msg_id)


async def inbound_conversation(api: Api, ch: WaChannel, wa_id: str, *, ts: int | None = None) -> str:
    """Make a conversation through an inbound text webhook; returns its id."""
    after = await api.last_seq()
    msg_id = await deliver_text(api, ch, wa_id, "hello " + unique(), ts=ts)
    ev = await wait_message_event(api, after, msg_id)
    return str(ev["conversation_id"])


async def wait_status(api: Api, message_id: str, status: str, within: float = 20.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        msg = await api.message(message_id)
        return msg if msg["status"] == status else None

    return await wait_until(check, within=within, what=f"message {message_id} to reach {status}")


async def send_text(api: Api, conversation_id: str, text: str) -> dict[str, Any]:
    """An agent's text send with a fresh Idempotency-Key (expects 202); returns the queued message."""
    msg: dict[str, Any] = await api.ok(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        expect=202,
        json_body={"text": text},
        headers={"Idempotency-Key": unique("k-")},
    )
    return msg
