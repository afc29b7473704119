"""Webhook handshake and signature checks, over the bytes exactly as Meta sends them."""

from __future__ import annotations

import json

import pytest
from hub_whatsapp import WhatsAppChannel
from wa_support import APP_SECRET, VERIFY_TOKEN, load, sign

from hub.errors import BadSignature


def query(**overrides: str) -> dict[str, str]:
    q = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    q.update(overrides)
    return q


def test_handshake_answers_the_challenge_as_text(channel: WhatsAppChannel) -> None:
    answer = channel.verify_handshake(query())
    assert answer == "1158201444"
    assert isinstance(answer, str)


def test_handshake_keeps_the_challenge_verbatim(channel: WhatsAppChannel) -> None:
    assert channel.verify_handshake(query(**{"hub.challenge": "00042"})) == "00042"
    assert channel.verify_handshake(query(**{"hub.challenge": "abc-XYZ"})) == "abc-XYZ"


@pytest.mark.parametrize(
    "q",
    [
        query(**{"hub.verify_token": "wrong"}),
        query(**{"hub.mode": "unsubscribe"}),
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {},
    ],
)
def test_handshake_refused(channel: WhatsAppChannel, q: dict[str, str]) -> None:
    assert channel.verify_handshake(q) is None


def test_setup_instructions_show_the_verify_token(channel: WhatsAppChannel) -> None:
    info = channel.setup_instructions("https://hub.example.com/webhooks/wa-1")
    assert info == {
        "webhook_url": "https://hub.example.com/webhooks/wa-1",
        "verify_token": VERIFY_TOKEN,
    }


def test_signature_accepted(channel: WhatsAppChannel) -> None:
    body = load("text")
    channel.authenticate(body, {"x-hub-signature-256": sign(body)})


def test_signature_header_in_any_case(channel: WhatsAppChannel) -> None:
    body = load("text")
    channel.authenticate(body, {"X-Hub-Signature-256": sign(body)})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hub-signature-256": ""},
        {"x-hub-signature-256": "sha1=abc"},
        {"x-hub-signature-256": "sha256=nothex"},
        {"x-hub-signature-256": "sha256=" + "0" * 64},
        {"x-hub-signature": "sha1=" + "0" * 40},
    ],
)
def test_signature_refused(channel: WhatsAppChannel, headers: dict[str, str]) -> None:
    with pytest.raises(BadSignature):
        channel.authenticate(load("text"), headers)


def test_signature_with_another_secret_is_refused(channel: WhatsAppChannel) -> None:
    body = load("text")
    with pytest.raises(BadSignature):
        channel.authenticate(body, {"x-hub-signature-256": sign(body, "not-the-app-secret")})


def test_escaped_unicode_signature_is_over_the_received_bytes(channel: WhatsAppChannel) -> None:
    body = load("escaped_unicode")
    assert body.isascii()  # as Meta sends it: \\uXXXX escapes, emoji as surrogate pairs
    assert b"\\ud83d\\ude00" in body
    channel.authenticate(body, {"x-hub-signature-256": sign(body)})

    # The same document re-serialized (UTF-8 characters instead of escapes) is other bytes:
    # a signature computed over what Meta sent does not match them.
    reserialized = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    assert reserialized != body
    assert json.loads(reserialized) == json.loads(body)
    with pytest.raises(BadSignature):
        channel.authenticate(reserialized, {"x-hub-signature-256": sign(body)})
    pretty = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(BadSignature):
        channel.authenticate(pretty, {"x-hub-signature-256": sign(body)})


def test_bad_signature_message_has_no_secret(channel: WhatsAppChannel) -> None:
    with pytest.raises(BadSignature) as info:
        channel.authenticate(load("text"), {"x-hub-signature-256": "sha256=" + "1" * 64})
    assert APP_SECRET not in str(info.value)
