"""Signing the hub's webhook deliveries to a bot: HMAC-SHA256 over the timestamp and the body.

The hub sends three headers with each delivery::

    X-Hub-Bot-Delivery: 42                 (the delivery's id: the same id on every retry)
    X-Hub-Bot-Timestamp: 1733540000        (Unix seconds when this attempt was signed)
    X-Hub-Bot-Signature: v1=<hex>          (HMAC-SHA256(signing_secret, f"{timestamp}." + body))

A bot recomputes the HMAC over the raw body bytes (never a re-serialised JSON), compares it in
constant time, and refuses a timestamp older than a few minutes, so a captured delivery cannot be
replayed later. ``verify`` does exactly that and is what the README's example uses.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "sign",
    "signed_headers",
    "verify",
]

SIGNATURE_HEADER = "X-Hub-Bot-Signature"
TIMESTAMP_HEADER = "X-Hub-Bot-Timestamp"
DELIVERY_HEADER = "X-Hub-Bot-Delivery"
TOLERANCE_SECONDS = 300
_VERSION = "v1="


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return _VERSION + mac.hexdigest()


def signed_headers(
    secret: str, delivery_id: int | str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``signature`` is the hub's over ``body`` and ``timestamp`` is recent."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
