"""Secrets at rest and credentials: Fernet for channel secrets, argon2 for passwords,
SHA-256 for API tokens (high-entropy random values, so a fast hash is the right one)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from hub.errors import ConfigError

__all__ = [
    "SecretBox",
    "hash_password",
    "hash_token",
    "load_secret_key",
    "new_token",
    "verify_password",
]

log = logging.getLogger("hub.security")
_hasher = PasswordHasher()
TOKEN_PREFIX = "hub_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret_key(configured: str, data_dir: str) -> str:
    """The key for channel secrets: the configured one, else a key file created once in data_dir."""
    if configured:
        if len(configured) < 16:
            raise ConfigError("hub.secret_key (HUB_SECRET_KEY) must be at least 16 characters")
        return configured
    path = Path(data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    log.warning("no hub.secret_key configured: created %s; back it up with the database", path)
    return key


class SecretBox:
    """Encrypts a JSON object of secret values with a key derived from the hub's secret key."""

    def __init__(self, secret_key: str) -> None:
        derived = hashlib.sha256(b"hub-channel-secrets:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise ConfigError(
                "channel secrets cannot be decrypted: hub.secret_key differs from the key they "
                "were stored with"
            ) from exc
        return data
