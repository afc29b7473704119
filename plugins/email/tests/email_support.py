"""Shared helpers of the email plugin tests: settings, fixtures on disk, parsing one mail."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub_email.parse import parse_mail
from hub_email.settings import Settings

from hub.models import ParsedEvent

FIXTURES = Path(__file__).parent / "fixtures"
OWN = "support@example.com"
IMAP_PASSWORD = "imap-secret-4711"
SMTP_PASSWORD = "smtp-secret-0815"
RECEIVED = datetime(2026, 3, 1, tzinfo=UTC)
LOG = logging.getLogger("hub.channel.email")


def settings_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "imap_host": "127.0.0.1",
        "imap_port": 1143,
        "imap_security": "none",
        "imap_username": "support",
        "imap_password": IMAP_PASSWORD,
        "smtp_host": "127.0.0.1",
        "smtp_port": 1025,
        "smtp_security": "none",
        "smtp_username": None,
        "smtp_password": None,
        "from_address": OWN,
        "from_name": "Example Support",
    }
    base.update(overrides)
    return base


def make_settings(**overrides: Any) -> Settings:
    return Settings.model_validate(settings_dict(**overrides))


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def parse(body: bytes) -> list[ParsedEvent]:
    return parse_mail(body, own_address=OWN, received_at=RECEIVED, log=LOG)
