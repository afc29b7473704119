"""The conformance suite run against FakeChannel, FakeChannel's own behaviour, and proof that the
suite's checks catch the mistakes they exist for."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from hub.channel import HealthState, RateLimit, RawEvent
from hub.errors import BadPayload, SendError, SendErrorClass
from hub.models import ContactRef, MessageKind, OutboundMessage
from hub.testing.conformance import (
    BatchCase,
    ChannelConformance,
    HandshakeCase,
    ParseCase,
    SendHarness,
    UnknownCase,
)
from hub.testing.fake_channel import FakeChannel, sign, webhook_body
from hub.testing.fake_provider import Answer, FakeProvider
from hub.testing.pytest_plugin import RecordingContext

pytest_plugins = ["pytester"]

SECRET = "planted-fake-secret-9f2c"
SETTINGS = {"secret": SECRET, "verify_token": "let-me-in"}
TS = 1_700_000_000
WHEN = datetime.fromtimestamp(TS, UTC).isoformat()


def _contact(who: str, name: str | None = None) -> dict[str, object]:
    return {"ids": [f"fake:{who}"], "name": name, "phone": None, "email": None}


def _message(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "message",
        "direction": "inbound",
        "subject": None,
        "attachments": [],
        "interactive": None,
        "reply_to_external_id": None,
        "thread_refs": [],
        "forwarded": False,
        "timestamp": WHEN,
        "data": {},
        "text": None,
    }
    return {**base, **kw}


TEXT = ParseCase(
    name="text_non_ascii",
    body=webhook_body(
        {"type": "message", "id": "m1", "from": "ana", "name": "Ana Núñez", "text": "olá 👋", "ts": TS}
    ),
    expected=[_message(external_id="m1", contact=_contact("ana", "Ana Núñez"), kind="text", text="olá 👋")],
)
IMAGE_REPLY = ParseCase(
    name="image_reply",
    body=webhook_body(
        {
            "type": "message",
            "id": "m2",
            "from": "bo",
            "reply_to": "m1",
            "ts": TS,
            "attachment": {"kind": "image", "url": "https://cdn.test/a.png", "mime_type": "image/png"},
        }
    ),
    expected=[
        {
            "type": "message",
            "external_id": "m2",
            "contact": {"ids": ["fake:bo"]},
            "kind": "image",
            "reply_to_external_id": "m1",
            "timestamp": WHEN,
            "attachments": [
                {"kind": "image", "source_url": "https://cdn.test/a.png", "mime_type": "image/png"}
            ],
        }
    ],
)
STATUS_AND_REACTION = ParseCase(
    name="status_and_reaction",
    body=webhook_body(
        {"type": "status", "id": "fake-out-1", "status": "read", "ts": TS},
        {"type": "reaction", "target": "fake-out-1", "from": "ana", "emoji": "", "ts": str(TS)},
    ),
    expected=[
        {"type": "status", "external_id": "fake-out-1", "status": "read", "timestamp": WHEN},
        {
            "type": "reaction",
            "target_external_id": "fake-out-1",
            "contact": {"ids": ["fake:ana"]},
            "emoji": None,
            "timestamp": WHEN,
        },
    ],
)
EDIT_AND_DELETION = ParseCase(
    name="edit_and_deletion",
    body=webhook_body(
        {"type": "edit", "target": "m1", "from": "ana", "text": "olá!", "ts": TS},
        {"type": "delete", "target": "m2", "from": "bo", "ts": TS},
    ),
    expected=[
        {
            "type": "edit",
            "target_external_id": "m1",
            "contact": {"ids": ["fake:ana"]},
            "text": "olá!",
            "timestamp": WHEN,
        },
        {"type": "deletion", "target_external_id": "m2", "contact": {"ids": ["fake:bo"]}, "timestamp": WHEN},
    ],
)
UNKNOWN_ELEMENT = {"type": "poll", "id": "p1", "from": "ana", "question": "¿sí?", "ts": TS}


def outbound(text: str = "hello", message_id: str = "msg-1") -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        channel_id="conformance",
        conversation_id="conv-1",
        recipient=ContactRef(ids=["fake:ana"]),
        kind=MessageKind.TEXT,
        text=text,
    )


class TestFakeChannel(ChannelConformance):
    channel_cls = FakeChannel
    settings = SETTINGS
    cases = (TEXT, IMAGE_REPLY, STATUS_AND_REACTION)
    edits = (EDIT_AND_DELETION,)
    batch = BatchCase(
        body=webhook_body(
            *({"type": "message", "id": f"b{i}", "from": "ana", "text": str(i), "ts": TS} for i in range(5)),
            {"type": "status", "id": "fake-out-1", "status": "delivered", "ts": TS},
            UNKNOWN_ELEMENT,
        ),
        count=7,
    )
    unknown = UnknownCase(body=webhook_body(UNKNOWN_ELEMENT, {"type": "typing"}))
    handshake = HandshakeCase(
        query={"mode": "subscribe", "verify_token": "let-me-in", "challenge": "0123"},
        answer="0123",
        refused=[
            {"mode": "subscribe", "verify_token": "nope", "challenge": "0123"},
            {"mode": "unsubscribe", "verify_token": "let-me-in", "challenge": "0123"},
        ],
    )

    def sign(self, body: bytes) -> dict[str, str]:
        return sign(SECRET, body)

    @pytest.fixture
    async def send_harness(self, channel_context: RecordingContext) -> AsyncIterator[SendHarness]:
        # channel_cls, not FakeChannel: the suite's own tests run broken subclasses through this.
        cls = cast(type[FakeChannel], self.channel_cls).isolated()
        provider = FakeProvider()
        provider.route("POST", "/messages", Answer(200, json={"ok": True}))
        provider.route("GET", "/me", Answer(200, json={"ok": True}))
        async with provider:
            settings = cls.Settings.model_validate({**SETTINGS, "api_base": provider.url})
            yield SendHarness(
                channel=cls("conformance", settings, channel_context),
                message=outbound(),
                errors={c: (lambda c=c: cls.script_errors(c)) for c in SendErrorClass},
                timeout=lambda: cls.script_errors(TimeoutError("read timed out")),
                bad_credentials=lambda: provider.route("GET", "/me", Answer(401)),
            )


# ---- FakeChannel beyond the suite ---------------------------------------------------------------


def make(context: RecordingContext | None = None, **settings: object) -> FakeChannel:
    cls = FakeChannel.isolated()
    ctx = context or RecordingContext(http=None)  # type: ignore[arg-type]
    return cls("ch-1", cls.Settings.model_validate({**SETTINGS, **settings}), ctx)


def parse(channel: FakeChannel, body: bytes) -> list[object]:
    return list(channel.parse(RawEvent("ch-1", body, {})))


def test_unknown_element_keeps_the_raw_element() -> None:
    [message] = parse(make(), webhook_body(UNKNOWN_ELEMENT))
    assert message.kind is MessageKind.UNSUPPORTED  # type: ignore[attr-defined]
    assert message.data["element"] == UNKNOWN_ELEMENT  # type: ignore[attr-defined]


def test_element_without_sender_is_skipped_and_id_is_deterministic() -> None:
    channel = make()
    assert parse(channel, webhook_body({"type": "typing"})) == []
    body = webhook_body({"type": "poll", "from": "ana", "ts": TS})
    assert parse(channel, body) == parse(make(), body)


def test_malformed_known_element_becomes_unsupported() -> None:
    [message] = parse(make(), webhook_body({"type": "message", "from": "ana", "ts": TS}))
    assert message.kind is MessageKind.UNSUPPORTED  # type: ignore[attr-defined]
    assert "KeyError" in message.data["reason"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": {}}', b"\xff"])
def test_unreadable_body_is_bad_payload(body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse(make(), body)


def test_delivery_header_keys_duplicates() -> None:
    channel = make()
    assert channel.delivery_key(b"a", {"x-fake-delivery": "d1"}) == "delivery:d1"
    assert channel.delivery_key(b"a", {}) == channel.delivery_key(b"a", {})
    assert channel.delivery_key(b"a", {}) != channel.delivery_key(b"b", {})


async def test_send_records_and_returns_deterministic_receipt(
    channel_context: RecordingContext,
) -> None:
    channel = make(channel_context)
    receipt = await channel.send(outbound(message_id="m-42"))
    assert receipt.external_id == "fake-out-m-42"
    assert [m.id for m in type(channel).sent] == ["m-42"]
    assert FakeChannel.sent == [], "isolated classes never touch the base class's list"
    assert channel_context.health == [(HealthState.OK, None)]


async def test_scripted_failures_are_consumed_in_order(channel_context: RecordingContext) -> None:
    channel = make(channel_context)
    custom = SendError(SendErrorClass.RECIPIENT, "blocked", provider_code=131)
    type(channel).script_errors("rate_limited", custom, SendErrorClass.AUTH)
    classes = []
    for _ in range(3):
        with pytest.raises(SendError) as info:
            await channel.send(outbound())
        classes.append(info.value.error_class)
    assert classes == [SendErrorClass.RATE_LIMITED, SendErrorClass.RECIPIENT, SendErrorClass.AUTH]
    assert (await channel.send(outbound())).external_id
    assert len(type(channel).sent) == 4
    assert [s for s, _ in channel_context.health] == [HealthState.AUTH_FAILED, HealthState.OK]


async def test_transport_errors_are_retryable(channel_context: RecordingContext) -> None:
    import httpx

    channel = make(channel_context)
    type(channel).script_errors(httpx.ConnectError("refused"), ConnectionResetError())
    for _ in range(2):
        with pytest.raises(SendError) as info:
            await channel.send(outbound())
        assert info.value.error_class is SendErrorClass.RETRYABLE


async def test_fail_with_setting_fails_every_send(channel_context: RecordingContext) -> None:
    channel = make(channel_context, fail_with="auth")
    for _ in range(2):
        with pytest.raises(SendError):
            await channel.send(outbound())
    assert (await channel.health_check()).state is HealthState.AUTH_FAILED


def test_rate_limits_are_configurable() -> None:
    assert make().rate_limits(outbound()) == []
    assert make(rate=5, burst=10).rate_limits(outbound()) == [RateLimit("channel:ch-1", 5, 10)]


def test_setup_instructions_show_the_verify_token_not_the_secret() -> None:
    info = make().setup_instructions("https://hub.test/webhooks/ch-1")
    assert info == {"webhook_url": "https://hub.test/webhooks/ch-1", "verify_token": "let-me-in"}


# ---- the suite has teeth ------------------------------------------------------------------------

# A pytester run has no pyproject.toml: give it the hub's asyncio settings.
INNER_PYTEST_ARGS = (
    "-p",
    "no:cacheprovider",
    "-o",
    "asyncio_mode=auto",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)

# One planted bug per check of the suite: each mutant of FakeChannel must fail that check (and pass
# none of its parametrized cases). Every check of ChannelConformance has at least one mutant here.
BROKEN: list[tuple[str, str, str]] = [
    ("test_type_name_and_display_name", "no-display-name", 'display_name = ""'),
    ("test_capabilities_are_valid", "sends-nothing", "capabilities = Capabilities(text=False)"),
    (
        "test_settings_accept_the_example",
        "needs-an-unknown-setting",
        """
        class Settings(FakeSettings):
            region: str
        """,
    ),
    (
        "test_settings_refuse_unknown_fields",
        "lax-settings",
        """
        class Settings(FakeSettings):
            model_config = ConfigDict(extra="ignore")
        """,
    ),
    (
        "test_secrets_are_secretstr",
        "plain-secret",
        """
        class Settings(FakeSettings):
            secret: str
        """,
    ),
    (
        "test_settings_never_show_secrets",
        "secret-in-setup",
        """
        def setup_instructions(self, webhook_url):
            return {"webhook_url": webhook_url, "secret": self.settings.secret.get_secret_value()}
        """,
    ),
    (
        "test_parse_case",
        "drops-the-last-event",
        """
        def parse(self, raw):
            return super().parse(raw)[:-1]
        """,
    ),
    (
        "test_parse_is_pure",
        "dns-lookup",
        """
        def parse(self, raw):
            import socket
            socket.getaddrinfo("provider.invalid", 443)
            return super().parse(raw)
        """,
    ),
    (
        "test_duplicate_delivery_has_the_same_key",
        "random-delivery-key",
        """
        def delivery_key(self, body, headers):
            import uuid
            return uuid.uuid4().hex
        """,
    ),
    (
        "test_duplicate_delivery_has_one_effect",
        "random-ids",
        """
        def delivery_key(self, body, headers):
            import uuid
            return uuid.uuid4().hex

        def parse(self, raw):
            import uuid
            events = super().parse(raw)
            for event in events:
                if event.type == "message":
                    event.external_id = uuid.uuid4().hex
            return events
        """,
    ),
    (
        "test_every_element_of_a_batch",
        "first-element-only",
        """
        def parse(self, raw):
            return super().parse(raw)[:1]
        """,
    ),
    (
        "test_unknown_type_is_a_placeholder",
        "raises-on-unknown",
        """
        def parse(self, raw):
            import json
            if any(e.get("type") == "poll" for e in json.loads(raw.body)["events"]):
                raise KeyError("poll")
            return super().parse(raw)
        """,
    ),
    (
        "test_unknown_type_is_a_placeholder",
        "silently-drops-unknown",
        """
        def _parse_element(self, element):
            if element.get("type") not in ("message", "status", "reaction", "edit", "delete"):
                return None
            return super()._parse_element(element)
        """,
    ),
    (
        "test_garbage_body_is_bad_payload",
        "garbage-is-empty",
        """
        def parse(self, raw):
            try:
                return super().parse(raw)
            except BadPayload:
                return []
        """,
    ),
    (
        "test_garbage_body_is_bad_payload",
        "garbage-raises-valueerror",
        """
        def parse(self, raw):
            import json
            json.loads(raw.body)
            return super().parse(raw)
        """,
    ),
    (
        "test_handshake",
        "answers-anyone",
        """
        def verify_handshake(self, query):
            return query.get("challenge")
        """,
    ),
    (
        "test_edits_and_deletions_are_mapped",
        "edits-lost",
        """
        def parse(self, raw):
            return [e for e in super().parse(raw) if e.type not in ("edit", "deletion")]
        """,
    ),
    ("test_inbound_attachments_can_be_fetched", "no-fetch-media", "fetch_media = Channel.fetch_media"),
    (
        "test_signature_accepted",
        "refuses-everything",
        """
        def authenticate(self, body, headers):
            raise BadSignature("no")
        """,
    ),
    (
        "test_signature_missing_is_refused",
        "unsigned-passes",
        """
        def authenticate(self, body, headers):
            if "x-fake-signature" in headers:
                super().authenticate(body, headers)
        """,
    ),
    (
        "test_signature_wrong_is_refused",
        "any-digest-passes",
        """
        def authenticate(self, body, headers):
            if not headers.get("x-fake-signature", "").startswith("sha256="):
                raise BadSignature("missing")
        """,
    ),
    (
        "test_signature_over_reserialized_json_is_refused",
        "hashes-reserialized-json",
        """
        def authenticate(self, body, headers):
            import json
            super().authenticate(json.dumps(json.loads(body)).encode(), headers)
        """,
    ),
    (
        "test_send_returns_a_receipt",
        "no-receipt",
        """
        async def send(self, message):
            await super().send(message)
        """,
    ),
    (
        "test_send_error_is_classified",
        "misclassified",
        """
        async def send(self, message):
            try:
                return await super().send(message)
            except SendError as exc:
                classes = list(SendErrorClass)
                wrong = classes[(classes.index(exc.error_class) + 1) % len(classes)]
                raise SendError(wrong, "misclassified") from None
        """,
    ),
    (
        "test_timeout_is_retryable",
        "timeout-escapes",
        """
        async def send(self, message):
            raise TimeoutError("read timed out")
        """,
    ),
    (
        "test_transport_error_is_retryable",
        "connect-error-escapes",
        """
        async def send(self, message):
            response = await self.context.http.post(f"{self.settings.api_base}/messages", json={})
            return SendReceipt(external_id=response.headers.get("x-id", "p-1"))
        """,
    ),
    (
        "test_transport_error_is_retryable",
        "transport-error-is-permanent",
        """
        async def send(self, message):
            try:
                await self.context.http.post(f"{self.settings.api_base}/messages", json={})
            except httpx.HTTPError:
                raise SendError("permanent", "the provider failed") from None
            return SendReceipt(external_id="p-1")
        """,
    ),
    (
        "test_transport_error_is_retryable",
        "bypasses-the-lent-client",
        """
        async def send(self, message):
            async with httpx.AsyncClient() as own:
                await own.post(f"{self.settings.api_base}/messages", json={})
            return SendReceipt(external_id="p-1")
        """,
    ),
    (
        "test_send_recovers_after_a_transport_error",
        "stays-broken",
        """
        down = False

        async def send(self, message):
            if self.down:
                raise SendError("retryable", "still marked down")
            try:
                return await super().send(message)
            except SendError:
                self.down = True
                raise
        """,
    ),
    (
        "test_rate_limit_gives_retry_after",
        "drops-retry-after",
        """
        async def send(self, message):
            try:
                return await super().send(message)
            except SendError as exc:
                raise SendError(exc.error_class, "failed") from None
        """,
    ),
    (
        "test_credentials_check",
        "always-ok",
        """
        async def health_check(self):
            return Health(state=HealthState.OK)
        """,
    ),
    (
        "test_health_check_reports_an_unreachable_provider",
        "health-check-raises",
        """
        async def health_check(self):
            response = await self.context.http.get(f"{self.settings.api_base}/me")
            return Health(state=HealthState.OK if response.is_success else HealthState.AUTH_FAILED)
        """,
    ),
    (
        "test_send_never_blocks_the_loop",
        "sleeps-on-the-loop",
        """
        async def send(self, message):
            import time
            time.sleep(1.2)
            return await super().send(message)
        """,
    ),
    (
        "test_planted_secret_never_in_errors",
        "secret-in-error",
        """
        async def send(self, message):
            key = self.settings.secret.get_secret_value()
            raise SendError("auth", f"token {key} was refused")
        """,
    ),
    (
        "test_planted_secret_never_in_errors",
        "plugin-logs-a-url-with-the-secret",
        """
        async def send(self, message):
            key = self.settings.secret.get_secret_value()
            self.context.log.debug("POST %s", f"{self.settings.api_base}/bot{key}/messages")
            return await super().send(message)
        """,
    ),
]

MUTANT_PREAMBLE = """
import httpx
from pydantic import ConfigDict

from hub.channel import Capabilities, Channel, Health, HealthState
from hub.errors import BadPayload, BadSignature, SendError, SendErrorClass
from hub.models import SendReceipt
from hub.testing.fake_channel import FakeChannel, FakeSettings
from test_conformance_fake import TestFakeChannel as Base
"""


def _mutant_module(code: str) -> str:
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    tail = "class TestBroken(Base):\n    channel_cls = Broken\n"
    return f"{MUTANT_PREAMBLE}\n\nclass Broken(FakeChannel):\n{body}\n\n\n{tail}"


@pytest.mark.parametrize(
    ("check", "code"), [(c, code) for c, _, code in BROKEN], ids=[n for _, n, _ in BROKEN]
)
def test_suite_catches_a_broken_channel(pytester: pytest.Pytester, check: str, code: str) -> None:
    pytester.makepyfile(test_broken=_mutant_module(code))
    pytester.syspathinsert(str(Path(__file__).parent))
    result = pytester.runpytest_inprocess(*INNER_PYTEST_ARGS, "-k", f"TestBroken and {check}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    assert outcomes.get("passed", 0) == 0, result.stdout.str()


def test_every_check_of_the_suite_has_a_mutant() -> None:
    checks = {n for n in dir(ChannelConformance) if n.startswith("test_")}
    # The ingest check needs a pull channel: its mutant is test_ingest_check_catches_a_loop_...
    covered = {c for c, _, _ in BROKEN} | {"test_ingest_stops_cleanly_when_disabled"}
    assert checks - covered == set(), f"plant a bug for: {sorted(checks - covered)}"


def test_a_failed_parse_case_shows_a_diff(pytester: pytest.Pytester) -> None:
    code = """
        def parse(self, raw):
            events = super().parse(raw)
            for event in events:
                if getattr(event, "text", None) == "olá 👋":
                    event.text = "hola"
            return events
    """
    pytester.makepyfile(test_broken=_mutant_module(code))
    pytester.syspathinsert(str(Path(__file__).parent))
    result = pytester.runpytest_inprocess(*INNER_PYTEST_ARGS, "-k", "TestBroken and test_parse_case")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*case 'text_non_ascii'*", '*-*"text": "olá 👋"*', '*+*"text": "hola"*'])


def test_suite_skips_what_a_plugin_did_not_provide(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_minimal="""
from hub.testing.conformance import ChannelConformance
from hub.testing.fake_channel import FakeChannel


class TestMinimal(ChannelConformance):
    channel_cls = FakeChannel
"""
    )
    result = pytester.runpytest_inprocess(*INNER_PYTEST_ARGS, "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 3 and outcomes["skipped"] >= 15
    result.stdout.fnmatch_lines(["*add ParseCase fixtures*", "*override the send_harness fixture*"])


# ---- the ingest check, on a pull channel ---------------------------------------------------------

PULL_MODULE = """
import asyncio

from hub.channel import Channel
from hub.testing.conformance import ChannelConformance, IngestHarness, RecordingInbox
import pytest


class PullFake(Channel):
    type_name = "pullfake"
    display_name = "Pull fake"
    mode = "pull"

    async def ingest(self, inbox):
{ingest}


class TestPullFake(ChannelConformance):
    channel_cls = PullFake

    @pytest.fixture
    def ingest_harness(self):
        return IngestHarness(PullFake("pull-1", PullFake.Settings(), None), RecordingInbox())
"""
GOOD_INGEST = """
        n = 0
        while True:
            n += 1
            await inbox.put(b"item", key=str(n), cursor=("uid", str(n)))
            await asyncio.sleep(0.02)
"""
LEAKY_INGEST = """
        async def poll_forever():
            while True:
                await asyncio.sleep(0.02)

        asyncio.get_running_loop().create_task(poll_forever())  # never cancelled with ingest
        await asyncio.Event().wait()
"""


@pytest.mark.parametrize(
    ("ingest", "passes"), [(GOOD_INGEST, True), (LEAKY_INGEST, False)], ids=["good", "leaky"]
)
def test_ingest_check_catches_a_loop_left_running(
    pytester: pytest.Pytester, ingest: str, passes: bool
) -> None:
    pytester.makepyfile(test_pull=PULL_MODULE.format(ingest=ingest.strip("\n")))
    result = pytester.runpytest_inprocess(*INNER_PYTEST_ARGS, "-k", "test_ingest_stops_cleanly_when_disabled")
    result.assert_outcomes(**({"passed": 1} if passes else {"failed": 1}))


def test_a_token_in_the_url_path_passes_as_the_hub_masks_the_lent_clients_log(
    pytester: pytest.Pytester,
) -> None:
    """Telegram puts the bot token in the URL path, and the lent client logs every URL: the hub
    masks that line (hub.redact), so the kit does not fail the plugin for it."""
    code = """
        async def send(self, message):
            key = self.settings.secret.get_secret_value()
            await self.context.http.post(f"{self.settings.api_base}/bot{key}/messages", json={})
            return await super().send(message)
    """
    pytester.makepyfile(test_broken=_mutant_module(code))
    pytester.syspathinsert(str(Path(__file__).parent))
    result = pytester.runpytest_inprocess(
        *INNER_PYTEST_ARGS, "-k", "TestBroken and test_planted_secret_never_in_errors"
    )
    result.assert_outcomes(passed=1)


# ---- the duplicate check on a pull channel, and health without the lent client ------------------

PULL_PARSE_MODULE = """
import asyncio
import time
from datetime import UTC, datetime

from hub.channel import Capabilities, Channel, ChannelSettings
from hub.models import ContactRef, InboundMessage, MessageKind
from hub.testing.conformance import ChannelConformance, ParseCase


class PullSettings(ChannelSettings):
    mailbox: str = "INBOX"


class PullParse(Channel):
    type_name = "pullparse"
    display_name = "Pull parse"
    mode = "pull"
    capabilities = Capabilities(text=True)
    Settings = PullSettings

    async def ingest(self, inbox):
        await asyncio.Event().wait()

    def delivery_key(self, body, headers):
{key}

    def parse(self, raw):
        item = raw.body.decode()
{external_id}
        return [
            InboundMessage(
                external_id=external_id,
                contact=ContactRef(ids=["pull:ana"]),
                kind=MessageKind.TEXT,
                text=item,
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            )
        ]


class TestPullParse(ChannelConformance):
    channel_cls = PullParse
    settings = {{"mailbox": "INBOX"}}
    cases = [
        ParseCase(
            "item",
            b"item-1",
            [
                InboundMessage(
                    external_id="item-1",
                    contact=ContactRef(ids=["pull:ana"]),
                    kind=MessageKind.TEXT,
                    text="item-1",
                    timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                )
            ],
        )
    ]
"""
STABLE = ("        return 'item:' + body.decode()", "        external_id = item")
# Fetched again (a lost cursor), the item gets a new key and a new id: the hub stores it twice.
UNSTABLE = (
    "        return f'item:{time.time_ns()}'",
    "        external_id = f'{item}@{raw.received_at.isoformat()}'",
)


@pytest.mark.parametrize(("code", "passes"), [(STABLE, True), (UNSTABLE, False)], ids=["stable", "unstable"])
def test_the_duplicate_check_hands_a_pull_channel_s_item_to_the_hub_twice(
    pytester: pytest.Pytester, code: tuple[str, str], passes: bool
) -> None:
    key, external_id = code
    pytester.makepyfile(test_pull=PULL_PARSE_MODULE.format(key=key, external_id=external_id))
    result = pytester.runpytest_inprocess(*INNER_PYTEST_ARGS, "-k", "test_duplicate_delivery_has_one_effect")
    result.assert_outcomes(**({"passed": 1} if passes else {"failed": 1}))


OWN_TRANSPORT_MODULE = """
from hub.channel import Health, HealthState
from hub.models import ContactRef, MessageKind, OutboundMessage
from hub.testing.conformance import ChannelConformance, SendHarness
from hub.testing.fake_channel import FakeChannel
from hub.testing.pytest_plugin import RecordingContext
import pytest


class OwnTransport(FakeChannel):
    \"\"\"A channel talking to its provider over a socket of its own, not the lent HTTP client.\"\"\"

    reachable = True

    async def health_check(self):
{health}


class TestOwnTransport(ChannelConformance):
    channel_cls = OwnTransport
    settings = {{"secret": "planted-fake-secret-9f2c", "verify_token": "let-me-in"}}

    @pytest.fixture
    def send_harness(self, channel_context):
        channel = OwnTransport("own-1", OwnTransport.Settings.model_validate(self.settings), channel_context)

        def unreachable():
            type(channel).reachable = False

        message = OutboundMessage(
            id="m1", channel_id="own-1", conversation_id="c1",
            recipient=ContactRef(ids=["fake:ana"]), kind=MessageKind.TEXT, text="hi",
        )
        return SendHarness(
            channel, message, transport_error=lambda exc: (lambda: None), unreachable=unreachable
        )
"""
HONEST_HEALTH = """
        state = HealthState.OK if type(self).reachable else HealthState.UNREACHABLE
        return Health(state=state)
"""
# Says ok whatever happens: an admin never learns the server went away.
ALWAYS_OK = """
        return Health(state=HealthState.OK)
"""


@pytest.mark.parametrize(
    ("health", "passes"), [(HONEST_HEALTH, True), (ALWAYS_OK, False)], ids=["honest", "always-ok"]
)
def test_the_unreachable_check_uses_the_harness_where_the_lent_client_is_not_used(
    pytester: pytest.Pytester, health: str, passes: bool
) -> None:
    pytester.makepyfile(test_own=OWN_TRANSPORT_MODULE.format(health=health.strip("\n")))
    result = pytester.runpytest_inprocess(
        *INNER_PYTEST_ARGS, "-k", "test_health_check_reports_an_unreachable_provider"
    )
    result.assert_outcomes(**({"passed": 1} if passes else {"failed": 1}))
