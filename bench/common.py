"""What the benchmarks share: the hub process, an API client, signed WhatsApp webhooks, a load
driver, completion polling, RSS sampling and machine facts.

The hub is driven from the outside only (CLI, HTTP, WebSocket), as a provider and an app would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
HUB_BIN = str(Path(sys.executable).with_name("hub"))
# Set by ``python -m bench --profile DIR``: every hub process is sampled by py-spy into DIR.
PROFILE_ENV = "HUB_BENCH_PROFILE"
PG_URL = os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench-password-123"


class BenchError(Exception):
    """A benchmark could not run to the end (the hub died, timed out, answered errors)."""


# ---- machine --------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    git = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return {
        "loadavg_at_start": load_average(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mb": mem_kb // 1024,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": git,
    }


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# ---- statistics -----------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 for fewer than two)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / var


# ---- WhatsApp webhooks ----------------------------------------------------------------------------


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


_wa_numbers = itertools.count(int(time.time()) % 10_000 * 100_000)


def wa_ids(n: int) -> list[str]:
    """``n`` fresh WhatsApp ids (digits), distinct within this run."""
    return [f"1555{next(_wa_numbers):09d}" for _ in range(n)]


def text_webhook(phone_number_id: str, wa_id: str, text: str) -> tuple[bytes, str]:
    """A one-message text webhook in Meta's shape, serialized as Meta does; (body, wamid)."""
    wamid = "wamid.BENCH" + secrets.token_hex(12).upper()
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"wa_id": wa_id, "profile": {"name": f"Bench {wa_id[-4:]}"}}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return body, wamid


@dataclass
class Channel:
    id: str
    phone_number_id: str
    app_secret: str
    access_token: str

    def webhook(self, wa_id: str, text: str) -> tuple[bytes, dict[str, str], str]:
        """A signed webhook ready to POST: (body, headers, wamid)."""
        body, wamid = text_webhook(self.phone_number_id, wa_id, text)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, self.app_secret)}
        return body, headers, wamid


# ---- the hub process ------------------------------------------------------------------------------


class Hub:
    """A real ``hub serve`` on loopback with its own config, database (SQLite or PostgreSQL) and log."""

    def __init__(
        self, directory: Path, *, postgres: bool = False, workers: int = 4, secret_key: str | None = None
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.postgres = postgres
        self.database_url = PG_URL if postgres else f"sqlite:///{self.dir / 'hub.db'}"
        self.log_path = self.dir / "hub.log"
        self.config_path = self.dir / "hub.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        settings = {
            "database_url": self.database_url,
            "public_url": self.base_url,
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.dir / "data"),
            "workers": workers,
            "log_level": "WARNING",
        }
        if secret_key is not None:  # processes of one cluster open each other's channel secrets
            settings["secret_key"] = secret_key
        lines = ["[hub]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONUNBUFFERED="1", HUB_LOG_LEVEL="WARNING")

    async def cli(self, *args: str, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            HUB_BIN,
            *args,
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self.dir),
            env=self.env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
        if proc.returncode != 0:
            raise BenchError(f"`hub {' '.join(args)}` exited {proc.returncode}: {err.decode()[-2000:]}")
        return out.decode()

    async def start(self, within: float = 60.0) -> None:
        if self.postgres:
            await reset_postgres(self.database_url)
        await self.cli(
            "users",
            "create",
            ADMIN_EMAIL,
            "--role",
            "administrator",
            "--password-stdin",
            stdin=ADMIN_PASSWORD,
        )
        self.proc = self._spawn(self._serve_cmd())
        out = await self.cli("tokens", "create", ADMIN_EMAIL)
        self.token = out.strip().splitlines()[-1].strip()
        await self._wait_healthy(within)

    async def join(self, first: Hub, within: float = 60.0) -> None:
        """Serve the database ``first`` serves (PostgreSQL), as one more process of its cluster."""
        self.token = first.token
        self.proc = self._spawn(self._serve_cmd())
        await self._wait_healthy(within)

    def _serve_cmd(self, *extra: str) -> list[str]:
        return [HUB_BIN, "serve", "--config", str(self.config_path), "--port", str(self.port), *extra]

    async def restart(self, *extra: str, within: float = 60.0) -> None:
        """Stop the process and serve the same database again, with extra ``hub serve`` arguments
        (``--no-workers`` makes a web-only node that stores sends and deliveries but works none)."""
        await self.stop()
        self.proc = self._spawn(self._serve_cmd(*extra))
        await self._wait_healthy(within)

    async def _wait_healthy(self, within: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"hub serve exited {self.proc.returncode} at start:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(
                        f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise BenchError(f"the hub did not answer /healthz within {within:g} s")
                await asyncio.sleep(0.05)

    def _spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.dir), env=self.env()
            )
        if profile_dir := os.environ.get(PROFILE_ENV):
            # py-spy samples the process until it exits; raw output is one collapsed stack a line
            # (flamegraph.pl's input), which `python -m bench.profile` sums by stage.
            out = Path(profile_dir) / f"{self.dir.name}-{proc.pid}.txt"
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--pid",
                    str(proc.pid),
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return proc

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise BenchError(f"the hub process is gone (exit {code}):\n{self.log_tail()}")

    async def stop(self, within: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def reset_postgres(url: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=5)
    except Exception as exc:
        raise BenchError(f"PostgreSQL is not reachable at {url}: {type(exc).__name__}: {exc}") from None
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def analyze(hub: Hub) -> None:
    """PostgreSQL: refresh the planner's statistics, as autovacuum does in production (it is off on
    some machines, and every run starts from an empty schema). Without them the planner guessed
    a sequential scan for the echo check once ``messages`` had grown (177 ms a call against
    0.1 ms on its index, measured in a soak). A no-op on SQLite."""
    if not hub.postgres:
        return
    import asyncpg

    conn = await asyncpg.connect(hub.database_url, timeout=5)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def analyzing(hub: Hub, every: float, stop: asyncio.Event) -> None:
    """``analyze`` every ``every`` seconds until ``stop``: a long run's tables keep growing."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if not stop.is_set():
            await analyze(hub)


@contextlib.asynccontextmanager
async def running_hub(directory: Path, *, postgres: bool) -> AsyncIterator[Hub]:
    hub = Hub(directory, postgres=postgres)
    try:
        await hub.start()
        yield hub
    finally:
        await hub.stop()


# ---- API client -----------------------------------------------------------------------------------


class Api:
    """Admin/app calls to the hub; raises ``BenchError`` on an unexpected status."""

    def __init__(self, hub: Hub, session: aiohttp.ClientSession) -> None:
        self.hub = hub
        self.session = session
        self.auth = {"Authorization": f"Bearer {hub.token}"}

    async def call(self, method: str, path: str, *, json_body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(
            method,
            self.hub.base_url + path,
            json=json_body,
            headers=self.auth,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as resp:
            text = await resp.text()
            if resp.status != expect:
                raise BenchError(f"{method} {path}: HTTP {resp.status} (expected {expect}): {text[:500]}")
            return json.loads(text) if text else None

    async def last_seq(self) -> int:
        data = await self.call("GET", "/healthz")
        return int(data["last_seq"])

    async def create_whatsapp(self, api_base_url: str = "http://127.0.0.1:9/v26.0", **extra: Any) -> Channel:
        settings = {
            "phone_number_id": "pn" + secrets.token_hex(5),
            "access_token": "EAAG" + secrets.token_hex(16),
            "app_secret": secrets.token_hex(16),
            "verify_token": "verify-" + secrets.token_hex(4),
            "api_base_url": api_base_url,
            "messages_per_second": 1000,
        }
        settings.update(extra)
        created = await self.call(
            "POST",
            "/api/v1/admin/channels",
            json_body={"type": "whatsapp", "name": "bench", "settings": settings},
            expect=201,
        )
        return Channel(
            created["id"], settings["phone_number_id"], settings["app_secret"], settings["access_token"]
        )

    async def events_after(self, after: int, *, limit_total: int = 1_000_000) -> list[dict[str, Any]]:
        """Every event after ``after`` (paged, bounded)."""
        out: list[dict[str, Any]] = []
        cursor = after
        while len(out) < limit_total:
            page = await self.call("GET", f"/api/v1/events?after={cursor}&limit=500")
            out.extend(page["events"])
            if not page["events"]:
                break
            cursor = page["events"][-1]["seq"]
            if not page.get("has_more"):
                break
        return out


def event_time(ev: dict[str, Any]) -> float:
    """An event's ``created_at`` as a Unix timestamp (the hub's clock is this machine's clock)."""
    return datetime.fromisoformat(ev["created_at"]).timestamp()


async def wait_events(
    api: Api,
    after: int,
    want: int,
    *,
    match: Any,
    within: float,
    min_seq_per_item: int = 1,
) -> tuple[int, float | None]:
    """Wait until ``want`` events after ``after`` satisfy ``match``; (count, last created_at).

    Cheap while waiting (it polls ``/healthz`` for ``last_seq``); it reads the event log only once
    the log has grown far enough and stopped moving, or at the deadline.
    """
    deadline = time.monotonic() + within
    last_seen = -1
    still_since = time.monotonic()
    while True:
        api.hub.check_alive()
        seq = await api.last_seq()
        now = time.monotonic()
        if seq != last_seen:
            last_seen, still_since = seq, now
        grown = seq - after >= want * min_seq_per_item
        settled = seq - after >= want and now - still_since > 1.0
        if grown or settled or now > deadline:
            events = [e for e in await api.events_after(after) if match(e)]
            if len(events) >= want or now > deadline:
                last = max((event_time(e) for e in events), default=None)
                return len(events), last
            still_since = now  # not there yet: wait for more growth
        await asyncio.sleep(0.1)


async def wait_seq(api: Api, target: int, *, within: float, settle: float = 3.0) -> int:
    """Poll ``/healthz`` until ``last_seq`` reaches ``target`` or stops moving for ``settle`` s."""
    deadline = time.monotonic() + within
    last, still_since = -1, time.monotonic()
    while True:
        api.hub.check_alive()
        seq = await api.last_seq()
        now = time.monotonic()
        if seq != last:
            last, still_since = seq, now
        if seq >= target or now - still_since > settle or now > deadline:
            return seq
        await asyncio.sleep(0.2)


# ---- load driver ----------------------------------------------------------------------------------


@dataclass
class DriveResult:
    sent: int
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    start: float = 0.0  # time.time() at the first request
    elapsed: float = 0.0
    cpu_ms_per_request: float | None = None  # of the server driven, where it was measured

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


async def drive(
    url_for: Any,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    within: float,
    deadline: float | None = None,
) -> DriveResult:
    """POST every (body, headers) with ``concurrency`` keep-alive clients; bounded by ``within``.

    ``url_for(i)`` gives the URL of request ``i``. ``deadline`` (monotonic) stops early.
    """
    result = DriveResult(sent=0)
    counter = iter(range(len(requests)))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in counter:
                if deadline is not None and time.monotonic() > deadline:
                    return
                body, headers = requests[i]
                result.sent += 1
                try:
                    async with session.post(url_for(i), data=body, headers=headers) as resp:
                        await resp.read()
                        result.statuses[resp.status] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    result.errors[type(exc).__name__] += 1

        result.start = time.time()
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), within)
        except TimeoutError:
            result.errors["timeout"] += 1
        result.elapsed = time.perf_counter() - t0
    return result


@contextlib.asynccontextmanager
async def ceiling_server(pids: list[int] | None = None) -> AsyncIterator[str]:
    """The bare aiohttp server in a subprocess; yields its base URL (and adds its pid to ``pids``)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ceiling_server",
        str(port),
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if b"ready" not in line:
            raise BenchError("the ceiling server did not start")
        if pids is not None:
            pids.append(proc.pid)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ---- the hub's own stage timings (/metrics) -------------------------------------------------------

StageCounts = dict[str, list[tuple[float, float]]]  # stage -> cumulative (upper bound, count) buckets


async def stage_counts(session: aiohttp.ClientSession, hub: Hub) -> StageCounts:
    """The ``hub_inbound_stage_seconds`` histogram buckets from the hub's ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(f"{hub.base_url}/metrics") as resp:
        text = await resp.text()
    out: StageCounts = {}
    for family in text_string_to_metric_families(text):
        if family.name != "hub_inbound_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out.setdefault(sample.labels["stage"], []).append((float(sample.labels["le"]), sample.value))
    for buckets in out.values():
        buckets.sort()
    return out


def stage_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket the quantile falls in."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def stage_summary(before: StageCounts, after: StageCounts) -> dict[str, dict[str, float]]:
    """Per stage, over what happened between two readings: count, p50 and p99 in ms."""
    out = {}
    for stage, buckets in after.items():
        prior = dict(before.get(stage, []))
        diff = [(le, count - prior.get(le, 0.0)) for le, count in buckets]
        out[stage] = {
            "count": diff[-1][1] if diff else 0.0,
            "p50_ms": 1000 * stage_quantile(diff, 0.50),
            "p99_ms": 1000 * stage_quantile(diff, 0.99),
        }
    return out
