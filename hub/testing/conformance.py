"""A reusable conformance suite that every channel plugin runs against itself.

Subclass ``ChannelConformance`` in your plugin's tests, under a name pytest collects::

    from hub.testing.conformance import ChannelConformance, ParseCase, SendHarness

    class TestMyChannel(ChannelConformance):
        channel_cls = MyChannel
        settings = {"app_secret": "planted-secret-1234", "verify_token": "tok"}
        cases = [ParseCase.from_files(FIXTURES / "text_message")]
        batch = BatchCase(body=..., count=3)
        unknown = UnknownCase(body=...)
        handshake = HandshakeCase(query={...}, answer="challenge")

        def sign(self, body: bytes) -> dict[str, str] | None:
            return {"x-my-signature": "sha256=" + hmac_hex(b"planted-secret-1234", body)}

        @pytest.fixture
        async def send_harness(self, channel_context, respx_mock) -> SendHarness:
            ...

Every check whose inputs the subclass did not give is skipped with a reason saying what to add,
so a plugin can adopt the suite one piece at a time. The suite imports nothing of the hub but its
public plugin API (``hub.channel``, ``hub.models``, ``hub.errors``). Async checks are marked for
pytest-asyncio (installed with ``hub[test]``); under ``asyncio_mode = "strict"`` decorate an async
``send_harness`` with ``@pytest_asyncio.fixture``.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from hub.channel import SECRET_SETTING_NAMES, Capabilities, Channel, ChannelSettings, HealthState, RawEvent
from hub.errors import BadPayload, BadSignature, SendError, SendErrorClass
from hub.models import (
    InboundMessage,
    MessageDeletion,
    MessageEdit,
    MessageKind,
    OutboundMessage,
    ParsedEvent,
    SendReceipt,
)

__all__ = [
    "TRANSPORT_ERRORS",
    "BatchCase",
    "ChannelConformance",
    "HandshakeCase",
    "IngestHarness",
    "ParseCase",
    "SendHarness",
    "UnknownCase",
    "dump_events",
    "forbid_network",
]

_EVENTS: TypeAdapter[list[ParsedEvent]] = TypeAdapter(list[ParsedEvent])
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _diff(got: object, expected: object) -> str:
    """A unified diff of two JSON-ready values, for a failure message anyone can read."""

    def lines(value: object) -> list[str]:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()

    diff = difflib.unified_diff(lines(expected), lines(got), "expected", "parse() gave", lineterm="")
    return "\n".join(diff)


def dump_events(events: Sequence[BaseModel | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events as JSON-ready dicts, validating dicts through the ``ParsedEvent`` union first."""
    return [e.model_dump(mode="json") for e in _EVENTS.validate_python(list(events))]


@dataclass(frozen=True)
class ParseCase:
    """One delivery and the events ``parse`` must return for it, compared as ``model_dump()``.

    ``headers`` are sent as given; when the suite has a ``sign``, its headers are added first.
    """

    name: str
    body: bytes
    expected: Sequence[BaseModel | Mapping[str, Any]]
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_files(cls, stem: str | Path) -> ParseCase:
        """Load ``<stem>.json`` (the body, bytes as they are), ``<stem>.expected.json`` (a list of
        events) and the optional ``<stem>.headers.json``."""
        stem = Path(stem)
        body = stem.with_name(stem.name + ".json").read_bytes()
        expected = json.loads(stem.with_name(stem.name + ".expected.json").read_text("utf-8"))
        headers_file = stem.with_name(stem.name + ".headers.json")
        headers = json.loads(headers_file.read_text("utf-8")) if headers_file.exists() else {}
        return cls(name=stem.name, body=body, expected=expected, headers=headers)


@dataclass(frozen=True)
class BatchCase:
    """A delivery batching several elements, and how many events it must give."""

    body: bytes
    count: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnknownCase:
    """A well-formed delivery carrying an element of a type the channel does not know.

    ``placeholders`` is how many ``unsupported`` messages it must give (each keeping the element in
    ``data``); 0 for a channel that skips unknown elements, which must then say so in the log.
    """

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    placeholders: int = 1


@dataclass(frozen=True)
class HandshakeCase:
    """A subscription handshake that must be answered with ``answer``; ``refused`` queries get None."""

    query: Mapping[str, str]
    answer: str
    refused: Sequence[Mapping[str, str]] = ()


Script = Callable[[], Awaitable[object] | object]


@dataclass
class SendHarness:
    """A channel wired to a fake provider, and the means to make that provider misbehave.

    ``errors[cls]`` arranges that the next ``send`` fails in the way the provider signals ``cls``
    (an HTTP 429 for ``rate_limited``, ...). ``timeout`` arranges that the next call times out at
    the transport. Either may be async. Classes you cannot provoke are left out and skipped.
    """

    channel: Channel
    message: OutboundMessage
    errors: Mapping[SendErrorClass, Script] = field(default_factory=dict)
    timeout: Script | None = None
    bad_credentials: Script | None = None
    """Makes the provider refuse the channel's credentials from now on (the health check's 401)."""
    transport_error: Callable[[BaseException], Script] | None = None
    """For channels that do not use the lent HTTP client (SMTP, a socket): ``transport_error(exc)``
    arranges that the next provider call raises ``exc``. By default the suite makes the lent HTTP
    client itself fail, so a channel that uses ``self.context.http`` needs nothing here."""
    unreachable: Script | None = None
    """For channels that do not use the lent HTTP client: makes the provider unreachable from now
    on (nothing listening where the channel connects), for the health check's ``unreachable``."""


@dataclass
class IngestHarness:
    """A pull channel wired to a fake provider, for the checks of its ``ingest`` loop."""

    channel: Channel
    inbox: Any
    """An ``Inbox`` (``put``, ``get_cursor``, ``set_cursor``); ``RecordingInbox`` records puts."""


class RecordingInbox:
    """An in-memory ``Inbox`` that records what an ingest loop puts."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, Mapping[str, str] | None, str | None]] = []
        self.cursors: dict[str, str] = {}

    async def put(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> bool:
        if key is not None and any(k == key for _, _, k in self.items):
            return False
        self.items.append((body, headers, key))
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        return True

    async def get_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def set_cursor(self, name: str, value: str) -> None:
        self.cursors[name] = value


def _dns_failure() -> BaseException:
    return httpx.ConnectError("[Errno -2] Name or service not known")


# Every way a network lets a provider call down, as the lent HTTP client raises it. Each must
# surface from send() as SendError(RETRYABLE), never as the transport's own exception.
TRANSPORT_ERRORS: dict[str, Callable[[], BaseException]] = {
    "connection-refused": lambda: httpx.ConnectError("[Errno 111] Connection refused"),
    "dns-failure": _dns_failure,
    "connection-reset": lambda: httpx.ReadError("[Errno 104] Connection reset by peer"),
    "closed-without-answer": lambda: httpx.RemoteProtocolError("Server disconnected"),
    "connect-timeout": lambda: httpx.ConnectTimeout("timed out connecting"),
    "read-timeout": lambda: httpx.ReadTimeout("timed out reading"),
    "write-timeout": lambda: httpx.WriteTimeout("timed out writing"),
    "pool-timeout": lambda: httpx.PoolTimeout("no connection free in the pool"),
}
# The same failures as the standard library raises them, for channels that are not HTTP.
_OS_TRANSPORT_ERRORS: dict[str, Callable[[], BaseException]] = {
    "connection-refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "dns-failure": lambda: socket.gaierror(-2, "Name or service not known"),
    "connection-reset": lambda: ConnectionResetError(104, "Connection reset by peer"),
    "closed-without-answer": lambda: ConnectionAbortedError("the server closed the connection"),
    "connect-timeout": lambda: TimeoutError("timed out connecting"),
    "read-timeout": lambda: TimeoutError("timed out reading"),
    "write-timeout": lambda: TimeoutError("timed out writing"),
    "pool-timeout": lambda: TimeoutError("no connection free"),
}


class _FlakyTransport(httpx.AsyncBaseTransport):
    """Raises ``failure`` for the first ``times`` requests, then forwards to the harness's client."""

    def __init__(self, failure: Callable[[], BaseException], forward: httpx.AsyncClient, times: int) -> None:
        self.failure, self.forward, self.left = failure, forward, times
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left > 0:
            self.left -= 1
            self.failed += 1
            exc = self.failure()
            if isinstance(exc, httpx.RequestError):
                exc.request = request
            raise exc
        response = await self.forward.send(request)
        await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)


class _NoNetworkContext:
    """A ChannelContext whose HTTP client refuses every request: ``parse`` must not need one."""

    public_url = "https://hub.invalid"

    def __init__(self, http: httpx.AsyncClient | None = None, log: logging.Logger | None = None) -> None:
        self.http = http or httpx.AsyncClient(transport=httpx.MockTransport(_refuse_request))
        self.log = log or logging.getLogger("hub.testing.conformance")
        self.health: list[tuple[HealthState, str | None]] = []

    def set_health(self, state: HealthState, error: str | None = None) -> None:
        self.health.append((state, error))


def _refuse_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"network use during a pure step: {request.method} {request.url}")


class _NetworkUsed(AssertionError):
    pass


def _forbidden(*args: object, **kwargs: object) -> Any:
    raise _NetworkUsed(f"parse must be pure, but it opened a connection ({args[:2]!r})")


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection or DNS lookup made until ``monkeypatch`` is undone."""
    monkeypatch.setattr(socket.socket, "connect", _forbidden)
    monkeypatch.setattr(socket.socket, "connect_ex", _forbidden)
    monkeypatch.setattr(socket, "create_connection", _forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", _forbidden)


async def _run(script: Script) -> None:
    result = script()
    if inspect.isawaitable(result):
        await result


def _events(events: Sequence[BaseModel | Mapping[str, Any]]) -> list[Any]:
    return list(_EVENTS.validate_python(list(events)))


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as an admin would type them into the API (secrets as plain strings)."""
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in settings.items()}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _error_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *(str(a) for a in exc.args)]
    if isinstance(exc, SendError):
        texts += [json.dumps(exc.as_dict(), default=str), json.dumps(exc.details, default=str)]
    if exc.__cause__ is not None:
        texts += _error_texts(exc.__cause__)
    return texts


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _captured_logs:
    """Every log record written while it is open, whatever the logger's level or propagation."""

    def __enter__(self) -> list[logging.LogRecord]:
        self.handler = _Collect()
        self.root = logging.getLogger()
        self.level = self.root.level
        self.root.addHandler(self.handler)
        self.root.setLevel(logging.DEBUG)
        return self.handler.records

    def __exit__(self, *exc: object) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)


def _record_texts(records: Sequence[logging.LogRecord]) -> list[str]:
    """What a log handler would write for each record: the message, the traceback, the URL."""
    formatter = logging.Formatter("%(name)s %(message)s")
    return [formatter.format(r) for r in records]


_LENT_CLIENT_LOGGERS = ("httpx", "httpcore")


def _as_the_hub_logs(records: Sequence[logging.LogRecord], secrets: Sequence[str]) -> list[str]:
    """The log lines as they leave the hub: it masks channel secrets in what the lent HTTP client
    logs (a token in a URL path, ``hub.redact``); a line the plugin writes itself must not hold a
    secret in the first place."""
    from hub.redact import SecretRedactor

    redactor = SecretRedactor()
    redactor.set("conformance", secrets)
    texts = _record_texts(records)
    lent = [r.name.split(".")[0] in _LENT_CLIENT_LOGGERS for r in records]
    return [redactor.redact(t) if by_client else t for t, by_client in zip(texts, lent, strict=True)]


class ChannelConformance:
    """The checks every channel must pass. Subclass it as ``Test<YourChannel>`` and fill in:

    * ``channel_cls`` (required) and ``settings`` (a valid settings dict with planted secrets);
    * ``sign(body)``: the headers a genuine provider would send, or None for an unsigned channel;
    * ``cases``: ``ParseCase`` fixtures, ``batch``, ``unknown``, ``handshake``;
    * ``non_ascii_body``: a signed body with non-ASCII text (defaults to the first such case);
    * the ``send_harness`` fixture, for the send checks.
    """

    channel_cls: ClassVar[type[Channel] | None] = None
    settings: ClassVar[Mapping[str, Any]] = {}
    channel_id: ClassVar[str] = "conformance"
    cases: ClassVar[Sequence[ParseCase]] = ()
    batch: ClassVar[BatchCase | None] = None
    unknown: ClassVar[UnknownCase | None] = None
    handshake: ClassVar[HandshakeCase | None] = None
    non_ascii_body: ClassVar[bytes | None] = None
    garbage_body: ClassVar[bytes | None] = b"\x00\xff this is not a payload {"
    """A body the provider could never send; None where every byte string is readable (raw mail)."""
    edits: ClassVar[Sequence[ParseCase]] = ()
    """Deliveries carrying edits or deletions (``MessageEdit``, ``MessageDeletion``), where the
    provider has them."""
    signs_body: ClassVar[bool] = True
    """False for providers that authenticate with a fixed token header instead of a body signature:
    the checks that a signature binds the body are then skipped."""
    secret_settings: ClassVar[Sequence[str] | None] = None
    """Settings that must be ``SecretStr``; by default those whose name says secret/password/..."""

    # ---- what a plugin fills in or overrides ---------------------------------------------------

    def sign(self, body: bytes) -> Mapping[str, str] | None:
        """Headers that authenticate ``body`` as the provider would send them; None if unsigned."""
        return None

    @pytest.fixture
    def no_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        forbid_network(monkeypatch)

    @pytest.fixture
    def send_harness(self) -> SendHarness:
        pytest.skip("override the send_harness fixture to run the send checks")

    def make_channel(self, context: Any | None = None) -> Channel:
        cls = self._cls()
        return cls(
            self.channel_id, cls.Settings.model_validate(dict(self.settings)), context or _NoNetworkContext()
        )

    # ---- helpers -------------------------------------------------------------------------------

    def _cls(self) -> type[Channel]:
        if self.channel_cls is None:
            pytest.fail(f"{type(self).__name__} must set channel_cls")
        return self.channel_cls

    def _settings_or_skip(self) -> Mapping[str, Any]:
        if not self.settings:
            pytest.skip("set `settings` to a valid settings dict")
        return self.settings

    def _headers(self, body: bytes, extra: Mapping[str, str]) -> dict[str, str]:
        return {**_lower(self.sign(body) or {}), **_lower(extra)}

    def _parse(self, channel: Channel, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        if self.sign(body) is not None:
            channel.authenticate(body, headers)
        return list(channel.parse(RawEvent(channel.channel_id, body, headers)))

    def planted_secrets(self) -> list[str]:
        """The secret values in ``settings`` that no output may ever contain."""
        cls = self._cls()
        values = []
        for name in cls.Settings.secret_fields():
            value = self.settings.get(name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, str) and len(value) >= 6:
                values.append(value)
        return values

    def _non_ascii_body(self) -> bytes | None:
        if self.non_ascii_body is not None:
            return self.non_ascii_body
        for case in self.cases:
            if any(b >= 0x80 for b in case.body):
                return case.body
        return None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" in metafunc.fixturenames:
            cases: list[ParseCase | None] = [*self.cases] or [None]
            metafunc.parametrize("case", cases, ids=[c.name if c else "no-cases" for c in cases])
        if "error_class" in metafunc.fixturenames:
            metafunc.parametrize("error_class", list(SendErrorClass), ids=lambda c: c.value)

    # ---- class declaration ---------------------------------------------------------------------

    def test_type_name_and_display_name(self) -> None:
        cls = self._cls()
        assert _TYPE_NAME.match(cls.type_name), f"type_name {cls.type_name!r} must match {_TYPE_NAME.pattern}"
        assert cls.display_name, "set display_name: admins see it"
        assert cls.mode in ("push", "pull")

    def test_capabilities_are_valid(self) -> None:
        caps = self._cls().capabilities
        assert isinstance(caps, Capabilities)
        assert Capabilities.model_validate(caps.model_dump()) == caps
        assert caps.sendable_kinds(), "the channel can send nothing"
        assert caps.max_text_length is None or caps.max_text_length > 0
        assert set(caps.max_attachment_bytes) <= set(caps.media), "size limit for a kind not sent"
        assert caps.max_attachments >= (1 if caps.media else 0)

    def test_settings_accept_the_example(self) -> None:
        settings = self._settings_or_skip()
        model = self._cls().Settings
        assert issubclass(model, ChannelSettings)
        model.model_validate(dict(settings))

    def test_settings_refuse_unknown_fields(self) -> None:
        settings = self._settings_or_skip()
        model = self._cls().Settings
        assert model.model_config.get("extra") == "forbid"
        with pytest.raises(ValidationError):
            model.model_validate({**settings, "no_such_setting_conformance": "x"})
        # ... while settings stored by an older version, with a field since removed, stay readable.
        model.load_stored({**settings, "no_such_setting_conformance": "x"})

    def test_secrets_are_secretstr(self) -> None:
        model = self._cls().Settings
        names = self.secret_settings
        if names is None:
            names = [n for n in model.model_fields if any(s in n for s in SECRET_SETTING_NAMES)]
        not_secret = [n for n in names if n not in model.secret_fields()]
        assert not not_secret, f"type these settings as SecretStr: {not_secret}"

    def test_settings_never_show_secrets(self) -> None:
        self._settings_or_skip()
        secrets = self.planted_secrets()
        if not secrets:
            pytest.skip("put a secret value (6+ characters) in a SecretStr setting of `settings`")
        instance = self._cls().Settings.model_validate(dict(self.settings))
        channel = self.make_channel()
        shown = [repr(instance), str(instance), instance.model_dump_json(), repr(instance.model_dump())]
        shown += [json.dumps(channel.setup_instructions("https://hub.invalid/webhooks/x"))]
        for secret in secrets:
            assert not any(secret in text for text in shown), "a secret's value is shown"

    # ---- inbound -------------------------------------------------------------------------------

    def test_parse_case(self, case: ParseCase | None, no_network: None) -> None:
        if case is None:
            pytest.skip("add ParseCase fixtures to `cases`")
        self._settings_or_skip()
        channel = self.make_channel()
        headers = self._headers(case.body, case.headers)
        got = dump_events(self._parse(channel, case.body, headers))
        expected = dump_events(case.expected)
        assert got == expected, f"case {case.name!r}: parse() gave other events\n{_diff(got, expected)}"

    def test_parse_is_pure(self, case: ParseCase | None, no_network: None) -> None:
        if case is None:
            pytest.skip("add ParseCase fixtures to `cases`")
        self._settings_or_skip()
        headers = self._headers(case.body, case.headers)
        channel = self.make_channel()
        first = dump_events(self._parse(channel, case.body, headers))
        again = dump_events(self._parse(channel, case.body, headers))
        fresh = dump_events(self._parse(self.make_channel(), case.body, headers))
        assert first == again == fresh, "parse gave different events for the same delivery"

    def test_duplicate_delivery_has_the_same_key(self, case: ParseCase | None) -> None:
        if case is None:
            pytest.skip("add ParseCase fixtures to `cases`")
        self._settings_or_skip()
        headers = self._headers(case.body, case.headers)
        first = self.make_channel().delivery_key(case.body, headers)
        again = self.make_channel().delivery_key(bytes(case.body), dict(headers))
        assert isinstance(first, str) and first
        assert first == again

    def test_every_element_of_a_batch(self, no_network: None) -> None:
        if self.batch is None:
            pytest.skip("set `batch` to a BatchCase: a delivery with several elements")
        self._settings_or_skip()
        headers = self._headers(self.batch.body, self.batch.headers)
        events = self._parse(self.make_channel(), self.batch.body, headers)
        assert len(events) == self.batch.count, "an element of the batch was dropped"

    def test_unknown_type_is_a_placeholder(self, no_network: None) -> None:
        if self.unknown is None:
            pytest.skip("set `unknown` to an UnknownCase: a delivery with an unknown element type")
        self._settings_or_skip()
        headers = self._headers(self.unknown.body, self.unknown.headers)
        with _captured_logs() as records:
            events = self._parse(self.make_channel(), self.unknown.body, headers)
        unsupported = [
            e for e in events if isinstance(e, InboundMessage) and e.kind is MessageKind.UNSUPPORTED
        ]
        for message in unsupported:
            assert message.data, "keep the unknown element in the unsupported message's data"
        assert len(unsupported) == self.unknown.placeholders, (
            f"the unknown element gave {len(unsupported)} unsupported message(s), expected "
            f"{self.unknown.placeholders}: an agent must see a placeholder (or set placeholders=0 "
            f"and log the skip). parse() gave: {dump_events(events)}"
        )
        if self.unknown.placeholders == 0:
            assert records, "an unknown element was skipped without a log line"

    def test_garbage_body_is_bad_payload(self, no_network: None) -> None:
        if self.garbage_body is None:
            pytest.skip("garbage_body is None: every byte string is a readable delivery here")
        self._settings_or_skip()
        channel = self.make_channel()
        try:
            events = channel.parse(RawEvent(channel.channel_id, self.garbage_body, {}))
        except BadPayload:
            return
        pytest.fail(f"parse() of an unreadable body must raise BadPayload; it returned {events!r}"[:500])

    def test_handshake(self) -> None:
        if self.handshake is None:
            pytest.skip("no `handshake` given: set a HandshakeCase if the provider verifies subscriptions")
        self._settings_or_skip()
        channel = self.make_channel()
        assert channel.verify_handshake(dict(self.handshake.query)) == self.handshake.answer
        assert channel.verify_handshake({}) is None
        for query in self.handshake.refused:
            assert channel.verify_handshake(dict(query)) is None, f"accepted {query}"

    def test_edits_and_deletions_are_mapped(self, no_network: None) -> None:
        if not self.edits:
            pytest.skip("set `edits` to ParseCases of edits and deletions, where the provider has them")
        self._settings_or_skip()
        for case in self.edits:
            got = self._parse(self.make_channel(), case.body, self._headers(case.body, case.headers))
            changes = [e for e in got if isinstance(e, MessageEdit | MessageDeletion)]
            assert changes, (
                f"case {case.name!r} gave no MessageEdit or MessageDeletion: an edit is not a new "
                f"message. parse() gave: {dump_events(got)}"
            )
            expected = dump_events(case.expected)
            assert dump_events(got) == expected, f"case {case.name!r}\n{_diff(dump_events(got), expected)}"

    def test_inbound_attachments_can_be_fetched(self, no_network: None) -> None:
        self._settings_or_skip()
        attachments = [
            a
            for case in self.cases
            for e in self._parse(self.make_channel(), case.body, self._headers(case.body, case.headers))
            if isinstance(e, InboundMessage)
            for a in e.attachments
        ]
        if not attachments:
            pytest.skip("add a ParseCase with an inbound attachment (image, file, ...)")
        remote = [a for a in attachments if a.external_id or a.source_url]
        assert not remote or self._cls().supports("fetch_media"), (
            "parse() gives attachments with a provider id or URL, but the channel has no fetch_media: "
            "the hub can never download them"
        )

    # ---- signatures ----------------------------------------------------------------------------

    def _signed_body(self) -> bytes:
        if self.sign(b"{}") is None:
            pytest.skip("the channel is unsigned (override `sign` to run the signature checks)")
        self._settings_or_skip()
        body = self._non_ascii_body() or (self.cases[0].body if self.cases else None)
        if body is None:
            pytest.skip("add a ParseCase or set `non_ascii_body`")
        return body

    def test_signature_accepted(self) -> None:
        body = self._signed_body()
        self.make_channel().authenticate(body, self._headers(body, {}))

    def test_signature_missing_is_refused(self) -> None:
        body = self._signed_body()
        with pytest.raises(BadSignature):
            self.make_channel().authenticate(body, {"content-type": "application/json"})

    def test_signature_wrong_is_refused(self) -> None:
        body = self._signed_body()
        if self.signs_body:
            other = self._headers(body + b" ", {})
            with pytest.raises(BadSignature):
                self.make_channel().authenticate(body, other)
        mangled = {
            k: (v[:-4] + ("0000" if not v.endswith("0000") else "1111"))
            for k, v in self._headers(body, {}).items()
        }
        with pytest.raises(BadSignature):
            self.make_channel().authenticate(body, mangled)

    def test_signature_over_reserialized_json_is_refused(self) -> None:
        body = self._non_ascii_body()
        if body is None or self.sign(body) is None:
            pytest.skip("needs `sign` and a body with non-ASCII text (`non_ascii_body` or a case)")
        if not self.signs_body:
            pytest.skip("signs_body is False: the provider's token does not bind the body")
        self._settings_or_skip()
        reserialized = json.dumps(json.loads(body)).encode()
        assert reserialized != body
        # The provider signed the bytes it sent; a hub that re-serialized them must not pass...
        with pytest.raises(BadSignature):
            self.make_channel().authenticate(reserialized, self._headers(body, {}))
        # ... and a channel that re-serializes before hashing refuses the genuine bytes.
        self.make_channel().authenticate(body, self._headers(body, {}))

    # ---- outbound ------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_send_returns_a_receipt(self, send_harness: SendHarness) -> None:
        receipt = await send_harness.channel.send(send_harness.message)
        assert isinstance(receipt, SendReceipt)
        assert receipt.external_id

    @pytest.mark.asyncio
    async def test_send_error_is_classified(
        self, send_harness: SendHarness, error_class: SendErrorClass
    ) -> None:
        script = send_harness.errors.get(error_class)
        if script is None:
            pytest.skip(f"send_harness.errors has no script for {error_class.value!r}")
        await _run(script)
        with pytest.raises(SendError) as info:
            await send_harness.channel.send(send_harness.message)
        assert info.value.error_class is error_class
        if error_class is SendErrorClass.RATE_LIMITED:
            assert info.value.retry_after is None or info.value.retry_after >= 0

    @pytest.mark.asyncio
    async def test_timeout_is_retryable(self, send_harness: SendHarness) -> None:
        if send_harness.timeout is None:
            pytest.skip("set send_harness.timeout to make the next provider call time out")
        await _run(send_harness.timeout)
        with pytest.raises(SendError) as info:
            await send_harness.channel.send(send_harness.message)
        assert info.value.error_class is SendErrorClass.RETRYABLE

    @pytest.mark.asyncio
    async def test_planted_secret_never_in_errors(
        self, send_harness: SendHarness, caplog: pytest.LogCaptureFixture
    ) -> None:
        secrets = self.planted_secrets()
        if not secrets:
            pytest.skip("put a secret value (6+ characters) in a SecretStr setting of `settings`")
        caplog.set_level(logging.DEBUG)
        texts: list[str] = []
        if self.sign(b"{}") is not None:
            body = self._non_ascii_body() or b'{"conformance": true}'
            for headers in ({}, self._headers(body + b"x", {})):
                try:
                    send_harness.channel.authenticate(body, headers)
                except BadSignature as exc:
                    texts += _error_texts(exc)
        scripts = [*send_harness.errors.values(), *([send_harness.timeout] if send_harness.timeout else [])]
        with _captured_logs() as records:
            await send_harness.channel.send(send_harness.message)  # success logs too (URLs)
            for script in scripts:
                await _run(script)
                try:
                    await send_harness.channel.send(send_harness.message)
                except SendError as exc:
                    texts += _error_texts(exc)
            if send_harness.transport_error is None:
                for kind in ("connection-refused", "read-timeout"):
                    channel, _ = self._transport_channel(send_harness, TRANSPORT_ERRORS[kind])
                    try:
                        await channel.send(send_harness.message)
                    except Exception as exc:
                        texts += _error_texts(exc)
        texts += _as_the_hub_logs(records, secrets)
        for secret in secrets:
            leaks = [t for t in texts if secret in t]
            assert not leaks, f"a secret's value appears in: {leaks[0][:300]!r}"

    def _transport_channel(
        self, harness: SendHarness, failure: Callable[[], BaseException], times: int = 1
    ) -> tuple[Channel, _FlakyTransport | None]:
        """A fresh channel like the harness's whose first ``times`` provider calls fail."""
        if harness.transport_error is not None:
            return harness.channel, None
        flaky = _FlakyTransport(failure, harness.channel.context.http, times)
        client = httpx.AsyncClient(transport=flaky)
        context = _NoNetworkContext(http=client, log=harness.channel.context.log)
        cls = type(harness.channel)
        return cls(harness.channel.channel_id, harness.channel.settings, context), flaky

    async def _send_with_transport_failure(
        self, harness: SendHarness, kind: str
    ) -> tuple[Channel, _FlakyTransport | None, SendError]:
        table = TRANSPORT_ERRORS if harness.transport_error is None else _OS_TRANSPORT_ERRORS
        failure = table[kind]
        channel, flaky = self._transport_channel(harness, failure)
        if harness.transport_error is not None:
            await _run(harness.transport_error(failure()))
        try:
            receipt = await channel.send(harness.message)
        except SendError as exc:
            return channel, flaky, exc
        except BaseException as exc:
            pytest.fail(
                f"send() let {type(exc).__name__}({exc}) escape on a {kind}: catch it and raise "
                "SendError(SendErrorClass.RETRYABLE, ...)"
            )
        pytest.fail(
            f"send() returned {receipt!r} while its provider call failed with a {kind}: does it call "
            "the provider through self.context.http? (channels that do not use HTTP set "
            "SendHarness.transport_error)"
        )

    @pytest.mark.asyncio
    @pytest.mark.parametrize("kind", sorted(TRANSPORT_ERRORS))
    async def test_transport_error_is_retryable(self, send_harness: SendHarness, kind: str) -> None:
        _, _, error = await self._send_with_transport_failure(send_harness, kind)
        assert error.error_class is SendErrorClass.RETRYABLE, (
            f"a {kind} must be retryable (the outbox tries again), not {error.error_class.value}"
        )

    @pytest.mark.asyncio
    async def test_send_recovers_after_a_transport_error(self, send_harness: SendHarness) -> None:
        channel, _, _ = await self._send_with_transport_failure(send_harness, "connection-reset")
        receipt = await channel.send(send_harness.message)
        assert isinstance(receipt, SendReceipt) and receipt.external_id, (
            "the send after a dropped connection must go through on the same channel instance"
        )

    @pytest.mark.asyncio
    async def test_rate_limit_gives_retry_after(self, send_harness: SendHarness) -> None:
        script = send_harness.errors.get(SendErrorClass.RATE_LIMITED)
        if script is None:
            pytest.skip("send_harness.errors has no script for 'rate_limited' (an HTTP 429)")
        await _run(script)
        with pytest.raises(SendError) as info:
            await send_harness.channel.send(send_harness.message)
        assert info.value.error_class is SendErrorClass.RATE_LIMITED
        assert info.value.retry_after is not None and info.value.retry_after > 0, (
            "a throttled send must say how long to wait (retry_after, from the provider's Retry-After "
            "or its documented window)"
        )

    @pytest.mark.asyncio
    async def test_credentials_check(self, send_harness: SendHarness) -> None:
        if send_harness.bad_credentials is None:
            pytest.skip("set send_harness.bad_credentials to make the provider refuse the credentials")
        if not self._cls().supports("health_check"):
            pytest.fail("implement health_check: it tells an admin whether the credentials work")
        good = await send_harness.channel.health_check()
        assert good.state is HealthState.OK, f"good credentials gave {good.state.value}: {good.last_error}"
        await _run(send_harness.bad_credentials)
        bad = await send_harness.channel.health_check()
        assert bad.state is HealthState.AUTH_FAILED, (
            f"credentials the provider refuses gave {bad.state.value}, not auth_failed"
        )

    @pytest.mark.asyncio
    async def test_health_check_reports_an_unreachable_provider(self, send_harness: SendHarness) -> None:
        if not self._cls().supports("health_check"):
            pytest.skip("the channel has no health_check")
        if send_harness.transport_error is not None:
            if send_harness.unreachable is None:
                pytest.skip(
                    "the channel does not use the lent HTTP client: set send_harness.unreachable to "
                    "make its provider unreachable"
                )
            await _run(send_harness.unreachable)
            channel = send_harness.channel
        else:
            channel, _ = self._transport_channel(
                send_harness, TRANSPORT_ERRORS["connection-refused"], times=99
            )
        try:
            health = await channel.health_check()
        except Exception as exc:
            pytest.fail(f"health_check raised {type(exc).__name__} when the provider is unreachable")
        assert health.state is HealthState.UNREACHABLE, (
            f"an unreachable provider gave {health.state.value}, not unreachable"
        )

    @pytest.mark.asyncio
    async def test_send_never_blocks_the_loop(self, send_harness: SendHarness) -> None:
        gaps: list[float] = []
        loop = asyncio.get_running_loop()

        async def heartbeat() -> None:
            while True:
                before = loop.time()
                await asyncio.sleep(0.005)
                gaps.append(loop.time() - before)

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.02)
        try:
            for _ in range(3):
                await send_harness.channel.send(send_harness.message)
        finally:
            beat.cancel()
        # Generous: a loaded CI machine stalls a loop for a fraction of a second; a blocking call
        # (a synchronous HTTP client waiting on a slow provider, a time.sleep) for longer.
        assert max(gaps, default=0) < 1.0, f"the event loop stalled {max(gaps):.2f} s during send()"

    @pytest.fixture
    def ingest_harness(self) -> IngestHarness:
        pytest.skip("pull channels: override the ingest_harness fixture to run the ingest checks")

    @pytest.mark.asyncio
    async def test_ingest_stops_cleanly_when_disabled(self, ingest_harness: IngestHarness) -> None:
        before = asyncio.all_tasks()
        task = asyncio.create_task(ingest_harness.channel.ingest(ingest_harness.inbox))
        await asyncio.sleep(0.3)
        assert not task.done(), f"ingest() ended on its own: {task.exception() if task.done() else ''}"
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "ingest() did not stop within 5 s of being cancelled (channel disabled)"
        await asyncio.sleep(0.05)
        left = {t for t in asyncio.all_tasks() - before if not t.done()} - {asyncio.current_task()}
        assert not left, f"ingest() left tasks running after it was cancelled: {left}"

    @pytest.mark.asyncio
    async def test_duplicate_delivery_has_one_effect(
        self, aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first case with messages, delivered twice to an in-process hub, gives each message once.

        A push channel's delivery is posted to the webhook twice (the provider's retry); a pull
        channel's item is handed to the hub's inbox twice, keyed by ``delivery_key``, as its ingest
        loop does when it fetches it again (a lost cursor, a resync)."""
        cls = self._cls()
        self._settings_or_skip()
        for case in self.cases:
            messages = [e for e in _events(case.expected) if isinstance(e, InboundMessage)]
            if messages:
                break
        else:
            pytest.skip("add a ParseCase whose delivery carries a message")
        from hub.testing.pytest_plugin import start_hub  # the hub itself, only for this check

        hub = await start_hub(aiohttp_client, tmp_path, monkeypatch, cls)
        if cls.mode == "pull":
            await hub.stop_ingest()  # the check hands the item itself: no loop, no provider to reach
        await hub.create_channel(cls.type_name, _plain(self.settings), "kit-duplicate")
        headers = self._headers(case.body, case.headers)
        if cls.mode == "pull":
            for _ in range(2):  # fetched again by a restarted loop: the key is worked out again
                key = self.make_channel().delivery_key(case.body, headers)
                await hub.put_pulled("kit-duplicate", case.body, headers=headers, key=key)
        for _ in range(2 if cls.mode == "push" else 0):
            resp = await hub.post_webhook("kit-duplicate", case.body, headers)
            assert resp.status == 200, f"the hub answered {resp.status}: {await resp.text()}"
        want = len(messages)

        def created(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["type"] == "message.created"]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        got = created(await hub.events())
        while len(got) < want and loop.time() < deadline:
            await asyncio.sleep(0.05)
            got = created(await hub.events())
        await asyncio.sleep(0.3)  # time for a second effect to show, were there one
        # A replay re-parses the stored delivery: stable external ids keep it at one effect too.
        assert await hub.replay() >= 1
        got = created(await hub.events())
        ids = sorted(str(e["data"].get("external_id")) for e in got)
        assert len(got) == want, (
            f"one delivery, sent twice and replayed once, gave {len(got)} message.created event(s) "
            f"for {want} message(s): {ids}. Are external_id and delivery_key stable for one delivery?"
        )
