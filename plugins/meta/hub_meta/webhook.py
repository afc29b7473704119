"""Meta's webhook handshake and signature, the same for WhatsApp, Messenger and Instagram."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from hub.channel import constant_time_hmac_check

__all__ = ["SIGNATURE_HEADER", "check_signature", "verify_handshake"]

SIGNATURE_HEADER = "x-hub-signature-256"


def verify_handshake(query: Mapping[str, str], verify_token: str) -> str | None:
    """``hub.mode=subscribe`` with our verify token: the challenge exactly as given, else None.

    The challenge is returned as text, never cast to a number (Meta compares the string).
    """
    if query.get("hub.mode") != "subscribe":
        return None
    token = query.get("hub.verify_token") or ""
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    challenge = query.get("hub.challenge")
    return challenge if isinstance(challenge, str) else None


def check_signature(body: bytes, headers: Mapping[str, str], app_secret: str) -> None:
    """Check ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw bytes, keyed by the app secret).

    Raises ``hub.errors.BadSignature`` when it is missing, malformed or wrong.
    """
    signature = headers.get(SIGNATURE_HEADER)
    if signature is None:  # the contract promises lower-case keys; tolerate any case anyway
        signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
    constant_time_hmac_check(app_secret.encode(), body, signature)
