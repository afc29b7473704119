"""Users and API tokens: argon2 password hashes, SHA-256 token hashes, never the values."""

from __future__ import annotations

import functools
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub import schema
from hub.db import Database, new_id
from hub.models import utcnow
from hub.security import hash_password, hash_token, new_token, verify_password

__all__ = ["ROLES", "authenticate_token", "create_token", "create_user", "list_users", "login", "public_user"]

Role = Literal["administrator", "agent"]
ROLES: dict[str, list[str]] = {
    "administrator": [
        "channels.read",
        "channels.manage",
        "conversations.read",
        "conversations.update",
        "messages.send",
        "users.manage",
        "plugins.read",
    ],
    "agent": ["channels.read", "conversations.read", "conversations.update", "messages.send"],
}
U = schema.users
T = schema.api_tokens


class UserExists(Exception):
    pass


def public_user(row: dict[str, Any] | Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "permissions": ROLES.get(row["role"], []),
        "active": row["active"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_user(
    db: Database, email: str, role: str, password: str | None, name: str | None = None
) -> dict[str, Any]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
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


# Verified against when the email is unknown, so the answer takes as long as for a real user and
# does not tell which emails have accounts.
@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a real password")


async def login(db: Database, email: str, password: str) -> tuple[dict[str, Any], str] | None:
    user = await find_user(db, email)
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    if not user["active"] or not verify_password(user["password_hash"], password):
        return None
    return user, await create_token(db, user["id"], "login")


async def authenticate_token(db: Database, token: str) -> dict[str, Any] | None:
    async with db.read() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(U).join(T, T.c.user_id == U.c.id).where(T.c.token_hash == hash_token(token))
                )
            )
            .mappings()
            .first()
        )
    if row is None or not row["active"]:
        return None
    return dict(row)


async def revoke_token(db: Database, token: str) -> None:
    async with db.write() as conn:
        await conn.execute(T.delete().where(T.c.token_hash == hash_token(token)))
