"""Messenger webhook bodies for tests that drive a whole hub, built as Meta shapes them."""

from __future__ import annotations

import json
import time
from typing import Any

from fb_support import PAGE_ID, PSID, sign


def now_ms() -> int:
    return int(time.time() * 1000)


def envelope(*events: dict[str, Any]) -> bytes:
    doc = {"object": "page", "entry": [{"id": PAGE_ID, "time": now_ms(), "messaging": list(events)}]}
    # Meta escapes "/" and non-ASCII; json.dumps escapes non-ASCII, and the signature covers the
    # bytes as sent either way.
    return json.dumps(doc).replace("/", "\\/").encode()


def from_customer(key: str, body: dict[str, Any], ms: int | None = None, psid: str = PSID) -> dict[str, Any]:
    return {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": ms if ms is not None else now_ms(),
        key: body,
    }


def echo(mid: str, text: str, ms: int, metadata: str | None = None, psid: str = PSID) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": mid, "is_echo": True, "app_id": 1517776481860111, "text": text}
    if metadata is not None:
        message["metadata"] = metadata
    return {"sender": {"id": PAGE_ID}, "recipient": {"id": psid}, "timestamp": ms, "message": message}


def signed(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
