"""The conformance suite run against FakeChannel, FakeChannel's own behaviour, and proof that the
suite's checks catch the mistakes they exist for."""

from __future__ import annotations

import textwrap
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
    async def send_harness(self, channel_context: RecordingContext) -> SendHarness:
        # channel_cls, not FakeChannel: the suite's own tests run broken subclasses through this.
        cls = cast(type[FakeChannel], self.channel_cls).isolated()
        channel = cls("conformance", cls.Settings.model_validate(SETTINGS), channel_context)
        return SendHarness(
            channel=channel,
            message=outbound(),
            errors={c: (lambda c=c: cls.script_errors(c)) for c in SendErrorClass},
            timeout=lambda: cls.script_errors(TimeoutError("read timed out")),
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

BROKEN = {
    "test_signature_over_reserialized_json_is_refused": """
        def authenticate(self, body, headers):
            import json
            super().authenticate(json.dumps(json.loads(body)).encode(), headers)
    """,
    "test_every_element_of_a_batch": """
        def parse(self, raw):
            return super().parse(raw)[:1]
    """,
    "test_unknown_type_is_a_placeholder": """
        def parse(self, raw):
            import json
            if any(e.get("type") == "poll" for e in json.loads(raw.body)["events"]):
                raise KeyError("poll")
            return super().parse(raw)
    """,
    "test_parse_is_pure": """
        def parse(self, raw):
            import socket
            socket.getaddrinfo("provider.invalid", 443)
            return super().parse(raw)
    """,
    "test_timeout_is_retryable": """
        async def send(self, message):
            raise TimeoutError("read timed out")
    """,
    "test_planted_secret_never_in_errors": """
        async def send(self, message):
            key = self.settings.secret.get_secret_value()
            raise SendError("auth", f"token {key} was refused")
    """,
}


@pytest.mark.parametrize("check", sorted(BROKEN))
def test_suite_catches_a_broken_channel(pytester: pytest.Pytester, check: str) -> None:
    override = textwrap.indent(textwrap.dedent(BROKEN[check]).strip(), "    ")
    pytester.makepyfile(
        test_broken=f"""
from hub.errors import SendError
from hub.testing.fake_channel import FakeChannel
from test_conformance_fake import TestFakeChannel as Base


class Broken(FakeChannel):
{override}


class TestBroken(Base):
    channel_cls = Broken
"""
    )
    pytester.syspathinsert(str(Path(__file__).parent))
    result = pytester.runpytest_inprocess(
        *INNER_PYTEST_ARGS,
        "-k",
        f"TestBroken and {check}",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    assert outcomes.get("passed", 0) == 0, result.stdout.str()


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
