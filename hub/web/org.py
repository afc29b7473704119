"""The organisation over HTTP: users and invitations, roles and the permission catalogue, teams."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from hub.access import PERMISSIONS
from hub.appkeys import CONFIG, ORG, SESSIONS, TEAMS
from hub.limits import EMAIL_PATTERN
from hub.services.organisation import ROLE_NAME
from hub.web.auth import require_actor
from hub.web.config import config_response
from hub.web.errors import read_json
from hub.web.openapi import operation
from hub.web.schemas import (
    InvitationOut,
    InvitedUserOut,
    PermissionList,
    RevokedOut,
    RoleList,
    RoleOut,
    TeamList,
    TeamOut,
    UserList,
    UserOut,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    email: str = Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    role: str = Field(min_length=1, max_length=64, description="administrator, agent or a custom role")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, min_length=1, max_length=64)
    active: bool | None = Field(default=None, description="false deactivates: tokens revoked, streams closed")


class SetPassword(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    token: str = Field(min_length=1, max_length=200, description="the invitation token")
    password: str = Field(min_length=8, max_length=1000)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    permissions: list[str] = Field(
        max_length=200,
        description="names from GET /api/v1/permissions",
        # The catalogue is fixed by the hub's version: a generated client gets it as an enum.
        json_schema_extra={"items": {"type": "string", "enum": list[JsonValue](sorted(PERMISSIONS))}},
    )
    description: str | None = Field(default=None, max_length=1000)


class RoleCreate(RoleIn):
    name: str = Field(pattern=ROLE_NAME)


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    member_ids: list[str] = Field(default_factory=list, max_length=10_000)
    channel_ids: list[str] = Field(default_factory=list, max_length=1_000)


class TeamPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    member_ids: list[str] | None = Field(default=None, max_length=10_000, description="replaces the members")
    channel_ids: list[str] | None = Field(default=None, max_length=1_000, description="replaces the channels")


def _invitation(request: web.Request, invitation: dict[str, Any]) -> dict[str, Any]:
    base = request.app[CONFIG].hub.public_url
    return {**invitation, "url": f"{base}/api/v1/auth/set-password?token={invitation['token']}"}


# ---- permissions and roles --------------------------------------------------------------------


@routes.get("/api/v1/permissions")
@operation("The permission catalogue that roles are made of", "organisation", response=PermissionList)
async def permissions(request: web.Request) -> web.StreamResponse:
    await require_actor(request)
    return web.json_response({"permissions": [{"name": k, "description": v} for k, v in PERMISSIONS.items()]})


@routes.get("/api/v1/admin/roles")
@operation("Built-in and custom roles", "organisation", errors=(403,), response=RoleList)
async def list_roles(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    return web.json_response({"roles": await request.app[ORG].list_roles(actor)})


@routes.post("/api/v1/admin/roles")
@operation(
    "Create a custom role from the catalogue",
    "organisation",
    body=RoleCreate,
    status=201,
    errors=(403, 409, 422),
    response=RoleOut,
)
async def create_role(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = RoleCreate.model_validate(await read_json(request))
    role = await request.app[ORG].save_role(actor, req.name, req.permissions, req.description, create=True)
    return web.json_response(role, status=201)


@routes.put("/api/v1/admin/roles/{name}")
@operation(
    "Replace a custom role's permissions (applies to its holders at once)",
    "organisation",
    body=RoleIn,
    errors=(403, 404, 409, 422),
    response=RoleOut,
)
async def update_role(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = RoleIn.model_validate(await read_json(request))
    role = await request.app[ORG].save_role(
        actor, request.match_info["name"], req.permissions, req.description, create=False
    )
    return web.json_response(role)


@routes.delete("/api/v1/admin/roles/{name}")
@operation("Delete a custom role nobody holds", "organisation", status=204, errors=(403, 404, 409))
async def delete_role(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    await request.app[ORG].delete_role(actor, request.match_info["name"])
    return web.Response(status=204)


# ---- users ------------------------------------------------------------------------------------


@routes.get("/api/v1/users")
@operation("Active colleagues (to assign, to mention)", "organisation", response=UserList)
async def list_colleagues(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    users = [u for u in await request.app[ORG].list_users(actor) if u["active"]]
    return web.json_response({"users": users})


@routes.get("/api/v1/admin/users")
@operation("Every user, active or not", "organisation", errors=(403,), response=UserList)
async def list_users(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    return web.json_response({"users": await request.app[ORG].list_users(actor)})


@routes.post("/api/v1/admin/users")
@operation(
    "Create a user; the answer carries a one-time set-password invitation (no mail is sent)",
    "organisation",
    body=UserCreate,
    status=201,
    errors=(403, 409, 422),
    response=InvitedUserOut,
)
async def create_user(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = UserCreate.model_validate(await read_json(request))
    user, invitation = await request.app[ORG].create_user(actor, req.email, req.name, req.role)
    return web.json_response({"user": user, "invitation": _invitation(request, invitation)}, status=201)


@routes.get("/api/v1/admin/users/{user_id}")
@operation("One user", "organisation", errors=(403, 404), response=UserOut)
async def get_user(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    return web.json_response(await request.app[ORG].get_user(actor, request.match_info["user_id"]))


@routes.patch("/api/v1/admin/users/{user_id}")
@operation(
    "Rename, change role, deactivate or reactivate a user",
    "organisation",
    body=UserPatch,
    errors=(403, 404, 409, 422),
    response=UserOut,
)
async def patch_user(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = UserPatch.model_validate(await read_json(request))
    org, user_id = request.app[ORG], request.match_info["user_id"]
    user = await org.update_user(actor, user_id, role=req.role, name=req.name)
    if req.active is not None and req.active != user["active"]:
        user = await org.set_active(actor, user_id, req.active)
    return web.json_response(user)


@routes.post("/api/v1/admin/users/{user_id}/invitation")
@operation(
    "A new one-time set-password invitation (earlier ones stop working)",
    "organisation",
    status=201,
    errors=(403, 404, 409),
    response=InvitationOut,
)
async def reinvite(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    invitation = await request.app[ORG].invite(actor, request.match_info["user_id"])
    return web.json_response(_invitation(request, invitation), status=201)


@routes.post("/api/v1/admin/users/{user_id}/revoke-tokens")
@operation(
    "End every session of a user: their tokens and refresh tokens stop working and their open "
    "streams close (4401); the user stays active and may log in again",
    "organisation",
    operation_id="revoke_user_tokens",
    errors=(403, 404),
    response=RevokedOut,
)
async def revoke_tokens(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    user_id = request.match_info["user_id"]
    await request.app[ORG].get_user(actor, user_id)  # 404 for an unknown user
    revoked = await request.app[SESSIONS].revoke_user(user_id)
    return web.json_response({"user_id": user_id, "revoked": revoked})


@routes.post("/api/v1/auth/set-password")
@operation(
    "Set a password with an invitation token (once; then log in)",
    "auth",
    auth=None,
    body=SetPassword,
    errors=(404, 422),
    response=UserOut,
)
async def set_password(request: web.Request) -> web.StreamResponse:
    req = SetPassword.model_validate(await read_json(request))
    return web.json_response(await request.app[ORG].accept_invitation(req.token, req.password))


# ---- teams ------------------------------------------------------------------------------------


@routes.get("/api/v1/teams")
@operation(
    "Teams with their members and the channels they serve (cacheable)",
    "organisation",
    response=TeamList,
    etag=True,
)
async def list_teams(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "teams")


@routes.post("/api/v1/admin/teams")
@operation(
    "Create a team", "organisation", body=TeamCreate, status=201, errors=(403, 409, 422), response=TeamOut
)
async def create_team(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = TeamCreate.model_validate(await read_json(request))
    team = await request.app[TEAMS].create_team(actor, req.name, req.member_ids, req.channel_ids)
    return web.json_response(team, status=201)


@routes.patch("/api/v1/admin/teams/{team_id}")
@operation(
    "Rename a team or replace its members or channels (applies to open streams at once)",
    "organisation",
    body=TeamPatch,
    errors=(403, 404, 409, 422),
    response=TeamOut,
)
async def patch_team(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = TeamPatch.model_validate(await read_json(request))
    team = await request.app[TEAMS].update_team(
        actor,
        request.match_info["team_id"],
        name=req.name,
        member_ids=req.member_ids,
        channel_ids=req.channel_ids,
    )
    return web.json_response(team)


@routes.delete("/api/v1/admin/teams/{team_id}")
@operation("Delete a team", "organisation", status=204, errors=(403, 404))
async def delete_team(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    await request.app[TEAMS].delete_team(actor, request.match_info["team_id"])
    return web.Response(status=204)
