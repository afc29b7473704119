"""Users and API tokens: argon2 password hashes, SHA-256 token hashes, never the values."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub import schema
from hub.access.permissions import BUILTIN_ROLES
from hub.db import Database, new_id
from hub.models import utcnow
from hub.security import hash_password, hash_token, new_token

__all__ = [
    "TokenCache",
    "authenticate_token",
    "create_token",
    "create_user",
    "list_users",
    "revoke_token",
    "token_expires_at",
]

U = schema.users
T = schema.api_tokens


class UserExists(Exception):
    pass


async def create_user(
    db: Database, email: str, role: str, password: str | None, name: str | None = None
) -> dict[str, Any]:
    if role not in BUILTIN_ROLES:
        # Custom roles are given through the admin API, which checks they exist.
        raise ValueError(f"role must be one of {', '.join(BUILTIN_ROLES)}")
    row = {
        "id": new_id("usr_"),
        "email": email.strip().lower(),
        "name": name,
        "role": role,
        "password_hash": hash_password(password) if password else None,
        "active": True,
        "created_at": utcnow(),
    }
    try:
        async with db.write() as conn:
            await conn.execute(U.insert().values(**row))
    except IntegrityError:
        raise UserExists(f"a user with email {row['email']} already exists") from None
    return row


async def list_users(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(U).order_by(U.c.created_at))).mappings().all()
    return [dict(r) for r in rows]


async def find_user(db: Database, email: str) -> dict[str, Any] | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(U).where(U.c.email == email.strip().lower()))).mappings().first()
    return dict(row) if row else None


async def create_token(db: Database, user_id: str, name: str | None = None) -> str:
    token = new_token()
    async with db.write() as conn:
        await conn.execute(
            T.insert().values(
                id=new_id("tok_"),
                user_id=user_id,
                token_hash=hash_token(token),
                name=name,
                created_at=utcnow(),
            )
        )
    return token


class TokenCache:
    """Tokens authenticated lately (by hash), so an app's every request is not a database read.

    A hit is trusted for ``ttl`` seconds. A token revoked through this process is dropped at once;
    one revoked, or a user deactivated, by another process (the CLI, a second hub) stops working
    within ``ttl``. Unknown tokens are never remembered, so a token just created elsewhere works
    at once.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, token_hash: str) -> dict[str, Any] | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[token_hash]
            return None
        return entry[1]

    def put(self, token_hash: str, user: dict[str, Any], expires_in: float | None = None) -> None:
        """Remember a token for ``ttl`` seconds, or until it expires (``expires_in``) if sooner."""
        if len(self._entries) >= self.max_entries:
            # Roughly expiry order (one ttl for all): the first entry expires first.
            del self._entries[next(iter(self._entries))]
        keep = self.ttl if expires_in is None else min(self.ttl, expires_in)
        self._entries[token_hash] = (time.monotonic() + keep, user)

    def drop(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)

    def drop_user(self, user_id: str) -> None:
        """Forget every token of one user (deactivated, or their role changed)."""
        for key in [k for k, (_, user) in self._entries.items() if user["id"] == user_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


_BY_TOKEN = (
    sa.select(U, T.c.expires_at.label("token_expires_at"))
    .join(T, T.c.user_id == U.c.id)
    .where(T.c.token_hash == sa.bindparam("token_hash"))
)


async def authenticate_token(
    db: Database, token: str, cache: TokenCache | None = None
) -> dict[str, Any] | None:
    """The active user a bearer token belongs to (without the password hash), or None."""
    token_hash = hash_token(token)
    if cache is not None and (user := cache.get(token_hash)) is not None:
        return user
    async with db.read() as conn:
        row = (await conn.execute(_BY_TOKEN, {"token_hash": token_hash})).mappings().first()
    if row is None or not row["active"]:
        return None
    expires = row["token_expires_at"]
    left = None if expires is None else (expires - utcnow()).total_seconds()
    if left is not None and left <= 0:
        return None
    user = {k: v for k, v in row.items() if k not in ("password_hash", "token_expires_at")}
    if cache is not None:
        cache.put(token_hash, user, left)
    return user


async def token_expires_at(db: Database, token: str) -> datetime | None:
    """When a token stops working; None when it never does (or is unknown)."""
    async with db.read() as conn:
        value: datetime | None = await conn.scalar(
            sa.select(T.c.expires_at).where(T.c.token_hash == hash_token(token))
        )
    return value


async def revoke_token(db: Database, token: str, cache: TokenCache | None = None) -> None:
    token_hash = hash_token(token)
    async with db.write() as conn:
        await conn.execute(T.delete().where(T.c.token_hash == token_hash))
    if cache is not None:
        cache.drop(token_hash)
