"""The organisation: who the acting user is (``actor_for``), users, invitations and roles.

Every change is an action that takes the acting ``Actor``, checks its permission, writes, and emits
its event in one transaction. A change that alters what someone may see also emits
``access.changed`` naming the users concerned, so their open streams re-read their scope at once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema
from hub.access import BUILTIN_ROLES, PERMISSIONS, Actor, system_actor
from hub.db import new_id
from hub.events import Frame, Store, Tx
from hub.models import utcnow
from hub.security import hash_password, hash_token, new_token
from hub.services.errors import Conflict, Invalid, NotFound
from hub.users import TokenCache

__all__ = ["OrgService", "access_changed", "load_actor", "public_user"]

U = schema.users
R = schema.roles
INVITATION_TTL = timedelta(days=7)
ROLE_NAME = r"^[a-z][a-z0-9_.-]{1,63}$"


def public_user(row: Any) -> dict[str, Any]:
    """A user as every API answer and event shows it: never the password hash."""
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "active": row["active"],
        "availability": row.get("availability") or "online",
        "created_at": row["created_at"].isoformat(),
    }


class OrgService:
    """Users, roles and the actor behind a request. Teams and membership: ``hub.services.teams``."""

    def __init__(self, store: Store, tokens: TokenCache, ttl: float = 5.0) -> None:
        self.store = store
        self.tokens = tokens
        self.ttl = ttl
        # user id -> (expiry, Actor). Cleared by every change this process makes; a change made by
        # another process applies within ``ttl`` (and at once on streams, through access.changed).
        self._actors: dict[str, tuple[float, Actor]] = {}

    # ---- the actor ------------------------------------------------------------------------------

    def invalidate(self) -> None:
        self._actors.clear()

    def follow(self, frames: list[Frame]) -> None:
        """Feed observer (``Feed.on_remote``): another process changed users, roles or scopes; a
        deactivated user's token stops working here too, as soon as the event arrives."""
        if any(f.type == "access.changed" for f in frames):
            self._actors.clear()
            self.tokens.clear()

    async def actor_for(self, user: dict[str, Any], *, fresh: bool = False) -> Actor:
        cached = None if fresh else self._actors.get(user["id"])
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.store.db.read() as conn:
            actor = await load_actor(conn, user)
        self._actors[user["id"]] = (time.monotonic() + self.ttl, actor)
        return actor

    # ---- users ----------------------------------------------------------------------------------

    async def has_users(self) -> bool:
        async with self.store.db.read() as conn:
            return await conn.scalar(sa.select(U.c.id).limit(1)) is not None

    async def create_first_admin(self, email: str, name: str | None, password: str) -> dict[str, Any]:
        """The first administrator of a hub that has no user yet (the console's first-run page,
        which only the holder of the link ``hub serve`` printed can open); Conflict once any user
        exists."""
        pw_hash = await asyncio.to_thread(hash_password, password)
        async with self.store.tx() as tx:
            if await tx.conn.scalar(sa.select(U.c.id).limit(1)) is not None:
                raise Conflict("the hub has users already; log in, or ask an administrator")
            row: dict[str, Any] = {
                "id": new_id("usr_"),
                "email": email.strip().lower(),
                "name": name,
                "role": "administrator",
                "password_hash": pw_hash,
                "active": True,
                "created_at": utcnow(),
                "availability": "online",
            }
            await tx.conn.execute(U.insert().values(**row))
            await tx.emit("user.updated", {**public_user(row), "by": system_actor("setup").ref})
        return public_user(row)

    async def list_users(self, actor: Actor) -> list[dict[str, Any]]:
        # Every user sees their colleagues (to assign, to mention); only admins see inactive ones.
        stmt = sa.select(U).order_by(U.c.created_at, U.c.id)
        if not actor.can("users.manage"):
            stmt = stmt.where(U.c.active.is_(True))
        async with self.store.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [public_user(r) for r in rows]

    async def get_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(U).where(U.c.id == user_id))).mappings().first()
        if row is None or (not row["active"] and not actor.can("users.manage")):
            raise NotFound(f"user {user_id} does not exist")
        return public_user(row)

    async def create_user(
        self, actor: Actor, email: str, name: str | None, role: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new active user without a password, and a one-time set-password invitation."""
        actor.require("users.manage")
        try:
            return await self._create_user(actor, email, name, role)
        except IntegrityError:  # two admins creating the same email at once
            raise Conflict(f"a user with email {email.strip().lower()} already exists") from None

    async def _create_user(
        self, actor: Actor, email: str, name: str | None, role: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        async with self.store.tx() as tx:
            await _check_role(tx.conn, role)
            now = utcnow()
            row: dict[str, Any] = {
                "id": new_id("usr_"),
                "email": email.strip().lower(),
                "name": name,
                "role": role,
                "password_hash": None,
                "active": True,
                "created_at": now,
                "availability": "online",
            }
            if await tx.conn.scalar(sa.select(U.c.id).where(U.c.email == row["email"])) is not None:
                raise Conflict(f"a user with email {row['email']} already exists")
            await tx.conn.execute(U.insert().values(**row))
            invitation = await _invite(tx, str(row["id"]))
            await tx.emit("user.updated", {**public_user(row), "by": actor.ref})
        return public_user(row), invitation

    async def update_user(
        self, actor: Actor, user_id: str, *, role: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        actor.require("users.manage")
        async with self.store.tx() as tx:
            row = await _user_row(tx.conn, user_id)
            changes: dict[str, Any] = {}
            if role is not None and role != row["role"]:
                await _check_role(tx.conn, role)
                changes["role"] = role
            if name is not None:
                changes["name"] = name
            if changes:
                await tx.conn.execute(U.update().where(U.c.id == user_id).values(**changes))
                row = {**row, **changes}
                await tx.emit("user.updated", {**public_user(row), "by": actor.ref})
                if "role" in changes:
                    await access_changed(tx, [user_id], "role")
        self._after_access_change(user_id if role else None)
        return public_user(row)

    async def set_active(self, actor: Actor, user_id: str, active: bool) -> dict[str, Any]:
        """Deactivating revokes every token at once; the user's open streams close."""
        actor.require("users.manage")
        if not active and user_id == actor.id:
            raise Conflict("you cannot deactivate yourself")
        async with self.store.tx() as tx:
            row = await _user_row(tx.conn, user_id)
            await tx.conn.execute(U.update().where(U.c.id == user_id).values(active=active))
            if not active:
                await tx.conn.execute(
                    schema.api_tokens.delete().where(schema.api_tokens.c.user_id == user_id)
                )
                await tx.conn.execute(
                    schema.invitations.delete().where(schema.invitations.c.user_id == user_id)
                )
            row = {**row, "active": active}
            await tx.emit("user.updated", {**public_user(row), "by": actor.ref})
            await access_changed(tx, [user_id], "activated" if active else "deactivated")
        self._after_access_change(user_id)
        return public_user(row)

    async def invite(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """A new one-time set-password token for an active user (earlier ones stop working)."""
        actor.require("users.manage")
        async with self.store.tx() as tx:
            row = await _user_row(tx.conn, user_id)
            if not row["active"]:
                raise Conflict("the user is deactivated; activate them first")
            return await _invite(tx, user_id)

    async def accept_invitation(self, token: str, password: str) -> dict[str, Any]:
        """Set the password an invitation was for; the token is spent whatever happens next."""
        I = schema.invitations  # noqa: E741
        pw_hash = await asyncio.to_thread(hash_password, password)
        async with self.store.tx() as tx:
            inv = (
                (await tx.conn.execute(sa.select(I).where(I.c.token_hash == hash_token(token))))
                .mappings()
                .first()
            )
            if inv is None or inv["expires_at"] < utcnow():
                raise NotFound("the invitation is unknown, used or expired; ask an admin for a new one")
            await tx.conn.execute(I.delete().where(I.c.user_id == inv["user_id"]))
            row = await _user_row(tx.conn, inv["user_id"])
            if not row["active"]:
                raise NotFound("the invitation is unknown, used or expired; ask an admin for a new one")
            await tx.conn.execute(U.update().where(U.c.id == row["id"]).values(password_hash=pw_hash))
        return public_user(row)

    def _after_access_change(self, user_id: str | None) -> None:
        self.invalidate()
        if user_id is not None:
            self.tokens.drop_user(user_id)

    # ---- roles ----------------------------------------------------------------------------------

    async def list_roles(self, actor: Actor) -> list[dict[str, Any]]:
        out = [
            {"name": name, "description": None, "permissions": sorted(perms), "builtin": True}
            for name, perms in BUILTIN_ROLES.items()
        ]
        async with self.store.db.read() as conn:
            for r in (await conn.execute(sa.select(R).order_by(R.c.name))).mappings():
                out.append(
                    {
                        "name": r["name"],
                        "description": r["description"],
                        "permissions": sorted(r["permissions"]),
                        "builtin": False,
                    }
                )
        return out

    async def save_role(
        self,
        actor: Actor,
        name: str,
        permissions: list[str],
        description: str | None,
        *,
        create: bool,
    ) -> dict[str, Any]:
        actor.require("users.manage")
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role and cannot be changed")
        unknown = sorted(set(permissions) - set(PERMISSIONS))
        if unknown:
            raise Invalid(
                "permissions", f"not in the catalogue (GET /api/v1/permissions): {', '.join(unknown)}"
            )
        now = utcnow()
        perms = sorted(set(permissions))
        async with self.store.tx() as tx:
            exists = await tx.conn.scalar(sa.select(R.c.name).where(R.c.name == name))
            if create and exists is not None:
                raise Conflict(f"a role named {name!r} already exists")
            if not create and exists is None:
                raise NotFound(f"role {name!r} does not exist")
            values = {"permissions": perms, "description": description, "updated_at": now}
            if create:
                await tx.conn.execute(R.insert().values(name=name, created_at=now, **values))
            else:
                await tx.conn.execute(R.update().where(R.c.name == name).values(**values))
            role = {"name": name, "description": description, "permissions": perms, "builtin": False}
            await tx.emit("role.updated", {**role, "by": actor.ref})
            holders = list(await tx.conn.scalars(sa.select(U.c.id).where(U.c.role == name)))
            if holders:
                await access_changed(tx, holders, "role")
        self.invalidate()
        return role

    async def delete_role(self, actor: Actor, name: str) -> None:
        actor.require("users.manage")
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role and cannot be deleted")
        async with self.store.tx() as tx:
            if await tx.conn.scalar(sa.select(R.c.name).where(R.c.name == name)) is None:
                raise NotFound(f"role {name!r} does not exist")
            held = await tx.conn.scalar(sa.select(sa.func.count()).where(U.c.role == name))
            if held:
                raise Conflict(f"{held} user(s) hold the role {name!r}; give them another role first")
            await tx.conn.execute(R.delete().where(R.c.name == name))
            await tx.emit("role.updated", {"name": name, "deleted": True, "by": actor.ref})


# ---- helpers shared with the team service ------------------------------------------------------


async def load_actor(conn: AsyncConnection, user: dict[str, Any]) -> Actor:
    """The user's permissions, teams and channels (direct and through teams), read now."""
    role = user["role"]
    if role in BUILTIN_ROLES:
        perms = BUILTIN_ROLES[role]
    else:
        stored = await conn.scalar(sa.select(R.c.permissions).where(R.c.name == role))
        perms = frozenset(stored or ())
    TM, CM, TC = schema.team_members, schema.channel_members, schema.team_channels
    teams = frozenset(await conn.scalars(sa.select(TM.c.team_id).where(TM.c.user_id == user["id"])))
    all_channels = role == "administrator"
    channels: frozenset[str] = frozenset()
    if not all_channels:
        direct = sa.select(CM.c.channel_id).where(CM.c.user_id == user["id"])
        via_team = (
            sa.select(TC.c.channel_id)
            .join(TM, TM.c.team_id == TC.c.team_id)
            .where(TM.c.user_id == user["id"])
        )
        channels = frozenset(await conn.scalars(sa.union(direct, via_team)))
    public = {k: v for k, v in user.items() if k != "password_hash"}
    return Actor(
        id=user["id"],
        kind="user",
        role=role,
        permissions=perms,
        all_channels=all_channels,
        channel_ids=channels,
        team_ids=teams,
        user=public,
    )


async def access_changed(tx: Tx, user_ids: list[str] | None, reason: str) -> None:
    """Tell every open stream whose user is named (None: everyone) to re-read its scope, and their
    apps that the per-user configuration resources it decides (``permissions``, ``channels``)
    may have changed."""
    await tx.emit("access.changed", {"user_ids": user_ids, "reason": reason})
    for resource in ("permissions", "channels"):
        await tx.emit("config.updated", {"resource": resource, "etag": None, "user_ids": user_ids})


async def _user_row(conn: AsyncConnection, user_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(U).where(U.c.id == user_id))).mappings().first()
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    return dict(row)


async def _check_role(conn: AsyncConnection, role: str) -> None:
    if role in BUILTIN_ROLES:
        return
    if await conn.scalar(sa.select(R.c.name).where(R.c.name == role)) is None:
        raise Invalid("role", f"no role {role!r}; built-in: {', '.join(BUILTIN_ROLES)}, or create it first")


async def _invite(tx: Tx, user_id: str) -> dict[str, Any]:
    """A one-time set-password token (its hash stored); earlier ones for the user stop working."""
    I = schema.invitations  # noqa: E741
    token = "inv_" + new_token()
    now = utcnow()
    expires = now + INVITATION_TTL
    await tx.conn.execute(I.delete().where(I.c.user_id == user_id))
    await tx.conn.execute(
        I.insert().values(token_hash=hash_token(token), user_id=user_id, expires_at=expires, created_at=now)
    )
    return {"token": token, "expires_at": expires.isoformat()}
