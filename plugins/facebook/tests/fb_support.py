"""Helpers for the Messenger/Instagram plugin tests: ids, settings, signing, loading fixtures.

Named uniquely (not ``conftest``/``helpers``) so it never clashes with other plugins' test helpers
when pytest puts every rootless test directory on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.channel import RawEvent

FIXTURES = Path(__file__).parent / "fixtures"
PAGE_ID = "107623345678901"
PSID = "6224516930963541"
IG_ID = "17841405309211844"
IGSID = "1289736458912345"
PAGE_TOKEN = "EAAPageTOKEN-planted-secret-4d5e6f"
APP_SECRET = "fb-app-secret-planted-9a8b7c"
VERIFY_TOKEN = "fb-verify-me"
RECEIVED_AT = datetime(2025, 12, 5, 16, 1, tzinfo=UTC)
TS = datetime(2025, 12, 5, 16, 0, 0, 123000, tzinfo=UTC)  # 1764950400123 ms


def messenger_settings(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "page_id": PAGE_ID,
        "page_access_token": PAGE_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "api_base_url": "https://graph.test/v26.0",
    }
    values.update(overrides)
    return values


def instagram_settings(**overrides: Any) -> dict[str, Any]:
    return messenger_settings(instagram_account_id=IG_ID, **overrides)


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def raw(name_or_body: str | bytes, channel_id: str = "fb-1") -> RawEvent:
    body = load(name_or_body) if isinstance(name_or_body, str) else name_or_body
    return RawEvent(
        channel_id=channel_id,
        body=body,
        headers={"x-hub-signature-256": sign(body), "content-type": "application/json"},
        received_at=RECEIVED_AT,
    )
