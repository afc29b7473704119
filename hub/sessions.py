"""App sessions: an access token that expires, and a refresh token that is good for one use.

A login opens a session (a *family*): a bearer token valid for ``access_ttl`` and a refresh token
valid for ``refresh_ttl``. ``refresh`` trades the refresh token for a new pair; the old refresh
token is then spent. Presenting a spent refresh token again means it was copied: the whole
session is ended (every token of the family), and the caller is refused.

Ending a session (logout, a reused refresh token, an admin's revocation) deletes its tokens and
emits ``access.changed`` for the user in the same transaction, so every open stream re-checks its
own token at once and closes (4401) when it is gone, in every hub process. Tokens made with
``hub tokens create`` belong to no session and do not expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.db import new_id
from hub.events import Store, Tx
from hub.models import utcnow
from hub.security import hash_token, new_token
from hub.users import TokenCache

__all__ = ["SessionRefused", "SessionTokens", "Sessions"]

T = schema.api_tokens
RT = schema.refresh_tokens
U = schema.users


class SessionRefused(Exception):
    """A refresh token that is unknown, expired or already used (the session is then ended)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SessionTokens:
    token: str
    expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime

    def public(self) -> dict[str, Any]:
        now = utcnow()
        return {
            "token": self.token,
            "token_type": "bearer",
            "expires_at": self.expires_at.isoformat(),
            "expires_in": int((self.expires_at - now).total_seconds()),
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
        }


class Sessions:
    def __init__(self, store: Store, cache: TokenCache, access_ttl: float, refresh_ttl: float) -> None:
        self.store = store
        self.cache = cache
        self.access_ttl = timedelta(seconds=access_ttl)
        self.refresh_ttl = timedelta(seconds=refresh_ttl)

    async def open(self, user_id: str) -> SessionTokens:
        """A new session for a user who just proved who they are (a login)."""
        async with self.store.tx() as tx:
            return await self._issue(tx, user_id, new_id("ses_"))

    async def _issue(self, tx: Tx, user_id: str, family: str) -> SessionTokens:
        now = utcnow()
        token, refresh = new_token(), "rt_" + new_token()
        tokens = SessionTokens(token, now + self.access_ttl, refresh, now + self.refresh_ttl)
        await tx.conn.execute(
            T.insert().values(
                id=new_id("tok_"),
                user_id=user_id,
                token_hash=hash_token(token),
                name="login",
                created_at=now,
                expires_at=tokens.expires_at,
                family_id=family,
            )
        )
        await tx.conn.execute(
            RT.insert().values(
                token_hash=hash_token(refresh),
                user_id=user_id,
                family_id=family,
                expires_at=tokens.refresh_expires_at,
                created_at=now,
            )
        )
        return tokens

    async def refresh(self, refresh_token: str) -> tuple[dict[str, Any], SessionTokens]:
        """(user, a new pair) for a refresh token used for the first time, before it expires."""
        now = utcnow()
        reused: str | None = None
        async with self.store.tx() as tx:
            row = (
                (await tx.conn.execute(sa.select(RT).where(RT.c.token_hash == hash_token(refresh_token))))
                .mappings()
                .first()
            )
            if row is None:
                raise SessionRefused(
                    "invalid_refresh_token", "the refresh token is unknown or its session ended"
                )
            user = (await tx.conn.execute(sa.select(U).where(U.c.id == row["user_id"]))).mappings().first()
            if row["used_at"] is not None:
                # A spent token again: a copy is in someone else's hands. End the session.
                await self._end(tx, row["user_id"], family=row["family_id"], reason="refresh_token_reused")
                reused = row["family_id"]
            elif row["expires_at"] <= now or user is None or not user["active"]:
                raise SessionRefused("invalid_refresh_token", "the refresh token expired; log in again")
            else:
                spent = await tx.conn.execute(
                    RT.update()
                    .where(RT.c.token_hash == row["token_hash"], RT.c.used_at.is_(None))
                    .values(used_at=now)
                )
                if spent.rowcount != 1:  # spent meanwhile by a concurrent refresh
                    raise SessionRefused("invalid_refresh_token", "the refresh token was already used")
                tokens = await self._issue(tx, row["user_id"], row["family_id"])
        if reused is not None:
            self.cache.clear()
            raise SessionRefused(
                "refresh_token_reused",
                "this refresh token was already used: the session is ended; log in again",
            )
        assert user is not None
        return {k: v for k, v in user.items() if k != "password_hash"}, tokens

    async def logout(self, token: str) -> None:
        """End the session of ``token`` (or, for a token of no session, that token alone)."""
        token_hash = hash_token(token)
        async with self.store.tx() as tx:
            row = (await tx.conn.execute(sa.select(T).where(T.c.token_hash == token_hash))).mappings().first()
            if row is None:
                return
            if row["family_id"] is None:
                await tx.conn.execute(T.delete().where(T.c.id == row["id"]))
                await _announce(tx, row["user_id"], "logout")
            else:
                await self._end(tx, row["user_id"], family=row["family_id"], reason="logout")
        self.cache.drop(token_hash)
        self.cache.drop_user(row["user_id"])

    async def revoke_user(self, user_id: str) -> int:
        """End every session and delete every token of a user (an admin's revocation)."""
        async with self.store.tx() as tx:
            count = int(
                await tx.conn.scalar(sa.select(sa.func.count()).select_from(T).where(T.c.user_id == user_id))
                or 0
            )
            await self._end(tx, user_id, family=None, reason="tokens_revoked")
        self.cache.drop_user(user_id)
        return count

    async def _end(self, tx: Tx, user_id: str, *, family: str | None, reason: str) -> None:
        tokens = T.delete().where(T.c.user_id == user_id)
        refresh = RT.delete().where(RT.c.user_id == user_id)
        if family is not None:
            tokens = tokens.where(T.c.family_id == family)
            refresh = refresh.where(RT.c.family_id == family)
        await tx.conn.execute(tokens)
        await tx.conn.execute(refresh)
        await _announce(tx, user_id, reason)


async def _announce(tx: Tx, user_id: str, reason: str) -> None:
    # Streams of this user re-check their token now (hub.web.stream) and close with 4401 if it is gone.
    await tx.emit("access.changed", {"user_ids": [user_id], "reason": reason})
