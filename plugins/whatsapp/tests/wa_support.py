"""Helpers for the WhatsApp plugin tests: constants, the test channel context, loading, signing.

Named uniquely (not ``conftest``/``helpers``) so it never clashes with other plugins' test helpers
when pytest puts every rootless test directory on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub_whatsapp import Settings

from hub.channel import RawEvent

FIXTURES = Path(__file__).parent / "fixtures"
PNID = "106540352242922"
WA = "16315551181"
ACCESS_TOKEN = "EAAGtestTOKEN-planted-secret-7f3a9c"
APP_SECRET = "app-secret-planted-1b2c3d4e"
VERIFY_TOKEN = "verify-me-please"
BASE_URL = "https://graph.test/v26.0"
RECEIVED_AT = datetime(2025, 6, 9, 12, 0, tzinfo=UTC)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "phone_number_id": PNID,
        "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "business_account_id": "102290129340398",
        "api_base_url": BASE_URL,
    }
    values.update(overrides)
    return Settings(**values)


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def raw(name_or_body: str | bytes) -> RawEvent:
    body = load(name_or_body) if isinstance(name_or_body, str) else name_or_body
    return RawEvent(
        channel_id="wa-1",
        body=body,
        headers={"x-hub-signature-256": sign(body), "content-type": "application/json"},
        received_at=RECEIVED_AT,
    )
