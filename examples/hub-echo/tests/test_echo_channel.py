"""Echo runs the hub's conformance suite against itself, plus a test of its own."""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from pathlib import Path

import httpx
import pytest
import respx
from hub_echo import EchoChannel

from hub.errors import SendErrorClass
from hub.models import ContactRef, MessageKind, OutboundMessage
from hub.testing.conformance import (
    BatchCase,
    ChannelConformance,
    ParseCase,
    SendHarness,
    UnknownCase,
)
from hub.testing.pytest_plugin import RecordingContext

FIXTURES = Path(__file__).parent / "fixtures"
API = "https://api.echo.test"
SETTINGS = {"api_token": "planted-token-5f1e", "signing_secret": "planted-signing-7c2a", "api_base": API}


class FakeEcho:
    """Echo's send API on respx: answers 200 unless a failure was queued for the next call."""

    def __init__(self) -> None:
        self.queued: deque[httpx.Response | Exception] = deque()
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.queued:
            failure = self.queued.popleft()
            if isinstance(failure, Exception):
                raise failure
            return failure
        return httpx.Response(200, json={"id": f"echo-{self.calls}"})

    def fail_next(self, status: int, code: str = "error", **headers: str) -> None:
        body = {"error": {"code": code, "message": f"failure {status}"}}
        self.queued.append(httpx.Response(status, json=body, headers=headers))


class TestEchoChannel(ChannelConformance):
    channel_cls = EchoChannel
    settings = SETTINGS
    cases = [ParseCase.from_files(FIXTURES / "text"), ParseCase.from_files(FIXTURES / "receipt")]
    batch = BatchCase(body=(FIXTURES / "batch.json").read_bytes(), count=3)
    unknown = UnknownCase(body=(FIXTURES / "unknown.json").read_bytes())
    # Echo has no subscription handshake: the handshake check is skipped, with its reason.

    def sign(self, body: bytes) -> dict[str, str]:
        digest = hmac.new(b"planted-signing-7c2a", body, hashlib.sha256).hexdigest()
        return {"X-Echo-Signature": f"v1={digest}"}

    @pytest.fixture
    async def send_harness(
        self, channel_context: RecordingContext, respx_mock: respx.MockRouter
    ) -> SendHarness:
        echo = FakeEcho()
        respx_mock.post(f"{API}/v1/messages").mock(side_effect=echo)
        channel = EchoChannel("echo-1", EchoChannel.Settings.model_validate(SETTINGS), channel_context)
        return SendHarness(
            channel=channel,
            message=OutboundMessage(
                id="m-1",
                channel_id="echo-1",
                conversation_id="c-1",
                recipient=ContactRef(ids=["echo:u42"]),
                kind=MessageKind.TEXT,
                text="hello",
            ),
            errors={
                SendErrorClass.RETRYABLE: lambda: echo.fail_next(503),
                SendErrorClass.RATE_LIMITED: lambda: echo.fail_next(429, **{"retry-after": "3"}),
                SendErrorClass.NEEDS_TEMPLATE: lambda: echo.fail_next(400, "window_closed"),
                SendErrorClass.AUTH: lambda: echo.fail_next(401),
                SendErrorClass.RECIPIENT: lambda: echo.fail_next(404),
                SendErrorClass.PERMANENT: lambda: echo.fail_next(400, "bad_request"),
            },
            timeout=lambda: echo.queued.append(httpx.ReadTimeout("timed out")),
        )


async def test_send_carries_the_token_and_client_ref(
    channel_context: RecordingContext, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(f"{API}/v1/messages").mock(
        return_value=httpx.Response(200, json={"id": "echo-99"})
    )
    channel = EchoChannel("echo-1", EchoChannel.Settings.model_validate(SETTINGS), channel_context)
    message = OutboundMessage(
        id="m-7",
        channel_id="echo-1",
        conversation_id="c-1",
        recipient=ContactRef(ids=["echo:u42"]),
        kind=MessageKind.TEXT,
        text="hi",
    )
    assert (await channel.send(message)).external_id == "echo-99"
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer planted-token-5f1e"
    assert request.read() == b'{"to":"u42","text":"hi","client_ref":"m-7"}'
