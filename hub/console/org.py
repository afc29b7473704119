"""The organisation: users and invitations, roles, teams, availability statuses and assignment
policies. Forms are validated by the admin API's own request models, then handed to the services."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hub.access import PERMISSIONS, Actor
from hub.appkeys import AVAILABILITY, CHANNEL_ADMIN, ORG, TEAMS
from hub.console.base import PREFIX, form_data, form_list, need_actor, redirect, render
from hub.routing import POLICIES
from hub.services.errors import Conflict, Invalid, NotFound
from hub.web.org import RoleCreate, TeamCreate, UserCreate
from hub.web.routing import PolicyIn, StatusCreate

__all__ = ["routes"]

routes = web.RouteTableDef()


def _field_errors(exc: ValidationError | Invalid | Conflict, default: str = "(form)") -> dict[str, str]:
    if isinstance(exc, ValidationError):
        return {str(e["loc"][0]) if e["loc"] else default: e["msg"] for e in exc.errors()}
    if isinstance(exc, Invalid):
        return {str(d["field"]): str(d["message"]) for d in exc.details}
    return {default: exc.message}


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    # Lax: a form's numbers arrive as text (the API's JSON bodies are validated strictly).
    return model.model_validate(data, strict=False)


# ---- users --------------------------------------------------------------------------------------


def invitation_url(request: web.Request, token: str) -> str:
    return f"{request.url.origin()}{PREFIX}/set-password?token={token}"


async def _users_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    invitation: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    users = await request.config_dict[ORG].list_users(actor)
    roles = await request.config_dict[ORG].list_roles(actor)
    ctx = {
        "users": users,
        "roles": [r["name"] for r in roles],
        "errors": errors or {},
        "form": form or {"email": "", "name": "", "role": "agent"},
        "invitation": invitation,
    }
    return await render(request, "org/users.html", ctx, status=status)


@routes.get("/users")
async def users(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    return await _users_page(request, actor)


@routes.post("/users")
async def create_user(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    shown = {k: form.get(k, "").strip() for k in ("email", "name", "role")}
    try:
        req = _validate(UserCreate, {**shown, "name": shown["name"] or None})
        user, inv = await request.config_dict[ORG].create_user(actor, req.email, req.name, req.role)
    except (ValidationError, Invalid, Conflict) as exc:
        return await _users_page(request, actor, errors=_field_errors(exc, "email"), form=shown, status=422)
    invitation = {"user": user, "url": invitation_url(request, inv["token"]), "expires_at": inv["expires_at"]}
    return await _users_page(request, actor, invitation=invitation, status=201)


@routes.post("/users/{user_id}/role")
async def change_role(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    await request.config_dict[ORG].update_user(
        actor, request.match_info["user_id"], role=form.get("role", "")
    )
    return redirect(request, "/users")


async def _set_active(request: web.Request, active: bool) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    await request.config_dict[ORG].set_active(actor, request.match_info["user_id"], active)
    return redirect(request, "/users")


@routes.post("/users/{user_id}/deactivate")
async def deactivate(request: web.Request) -> web.StreamResponse:
    return await _set_active(request, False)


@routes.post("/users/{user_id}/activate")
async def activate(request: web.Request) -> web.StreamResponse:
    return await _set_active(request, True)


@routes.post("/users/{user_id}/invitation")
async def reinvite(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    org = request.config_dict[ORG]
    user = await org.get_user(actor, request.match_info["user_id"])
    inv = await org.invite(actor, user["id"])
    invitation = {"user": user, "url": invitation_url(request, inv["token"]), "expires_at": inv["expires_at"]}
    return await _users_page(request, actor, invitation=invitation, status=201)


# ---- roles --------------------------------------------------------------------------------------


async def _roles_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    ctx = {
        "roles": await request.config_dict[ORG].list_roles(actor),
        "permissions": PERMISSIONS,
        "errors": errors or {},
        "form": form or {"name": "", "description": "", "permissions": []},
    }
    return await render(request, "org/roles.html", ctx, status=status)


@routes.get("/roles")
async def roles(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    return await _roles_page(request, actor)


@routes.post("/roles")
async def save_role(request: web.Request) -> web.StreamResponse:
    """Create a role, or replace an existing custom role's permissions (``existing`` set)."""
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    perms = await form_list(request, "permissions")
    shown = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip(),
        "permissions": perms,
    }
    existing = form.get("existing") == "1"
    try:
        req = _validate(RoleCreate, {**shown, "description": shown["description"] or None})
        await request.config_dict[ORG].save_role(
            actor, req.name, req.permissions, req.description, create=not existing
        )
    except (ValidationError, Invalid, Conflict, NotFound) as exc:
        errors = {"name": exc.message} if isinstance(exc, NotFound) else _field_errors(exc, "name")
        return await _roles_page(request, actor, errors=errors, form=shown, status=422)
    return redirect(request, "/roles")


@routes.post("/roles/{name}/delete")
async def delete_role(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    await request.config_dict[ORG].delete_role(actor, request.match_info["name"])
    return redirect(request, "/roles")


# ---- teams --------------------------------------------------------------------------------------


async def _teams_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    users = [u for u in await request.config_dict[ORG].list_users(actor) if u["active"]]
    channels = request.config_dict[CHANNEL_ADMIN].visible(actor)
    if actor.can("channels.manage"):
        channels = request.config_dict[CHANNEL_ADMIN].all(actor)["channels"]
    ctx = {
        "teams": await request.config_dict[TEAMS].list_teams(actor),
        "users": users,
        "names": {u["id"]: u["name"] or u["email"] for u in users},
        "channels": channels,
        "errors": errors or {},
        "form": form or {"name": "", "member_ids": [], "channel_ids": []},
    }
    return await render(request, "org/teams.html", ctx, status=status)


@routes.get("/teams")
async def teams(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    return await _teams_page(request, actor)


@routes.post("/teams")
async def create_team(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    shown = {
        "name": form.get("name", "").strip(),
        "member_ids": await form_list(request, "member_ids"),
        "channel_ids": await form_list(request, "channel_ids"),
    }
    try:
        req = _validate(TeamCreate, shown)
        await request.config_dict[TEAMS].create_team(actor, req.name, req.member_ids, req.channel_ids)
    except (ValidationError, Invalid, Conflict) as exc:
        return await _teams_page(request, actor, errors=_field_errors(exc, "name"), form=shown, status=422)
    return redirect(request, "/teams")


@routes.post("/teams/{team_id}/delete")
async def delete_team(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    await request.config_dict[TEAMS].delete_team(actor, request.match_info["team_id"])
    return redirect(request, "/teams")


# ---- availability statuses and assignment policies ----------------------------------------------


async def _availability_page(
    request: web.Request,
    actor: Actor,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    svc = request.config_dict[AVAILABILITY]
    ctx = {
        "statuses": await svc.statuses(),
        "policies": await svc.policies(actor),
        "channels": request.config_dict[CHANNEL_ADMIN].all(actor)["channels"]
        if actor.can("channels.manage")
        else request.config_dict[CHANNEL_ADMIN].visible(actor),
        "teams": await request.config_dict[TEAMS].list_teams(actor),
        "policy_names": POLICIES,
        "errors": errors or {},
        "form": form or {},
    }
    return await render(request, "org/availability.html", ctx, status=status)


@routes.get("/availability")
async def availability(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    return await _availability_page(request, actor)


@routes.post("/availability/statuses")
async def create_status(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    form = await form_data(request)
    shown = {
        "id": form.get("id", "").strip(),
        "name": form.get("name", "").strip(),
        "receives": "receives" in form,
        "push": "push" in form,
        "shows_as": form.get("shows_as", ""),
    }
    try:
        req = _validate(StatusCreate, shown)
        await request.config_dict[AVAILABILITY].create_status(
            actor, req.id, req.name, req.receives, req.push, req.shows_as
        )
    except (ValidationError, Invalid, Conflict) as exc:
        return await _availability_page(
            request, actor, errors=_field_errors(exc, "id"), form=shown, status=422
        )
    return redirect(request, "/availability")


@routes.post("/availability/statuses/{status_id}/delete")
async def delete_status(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    await request.config_dict[AVAILABILITY].delete_status(actor, request.match_info["status_id"])
    return redirect(request, "/availability")


@routes.post("/availability/policies")
async def set_policy(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    form = await form_data(request)
    scope = form.get("scope", "")
    scope_type, _, scope_id = scope.partition(":")
    shown = {
        "scope": scope,
        "policy": form.get("policy", ""),
        "capacity": form.get("capacity", "").strip() or None,
        "team_id": form.get("team_id", "").strip() or None,
    }
    try:
        req = _validate(PolicyIn, {k: shown[k] for k in ("policy", "capacity", "team_id")})
        await request.config_dict[AVAILABILITY].set_policy(
            actor, scope_type, scope_id, req.policy, req.capacity, req.team_id
        )
    except (ValidationError, Invalid, Conflict, NotFound) as exc:
        errors = {"scope": exc.message} if isinstance(exc, NotFound) else _field_errors(exc, "policy")
        return await _availability_page(request, actor, errors=errors, form=shown, status=422)
    return redirect(request, "/availability")


@routes.post("/availability/policies/{scope_type}/{scope_id}/delete")
async def delete_policy(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "config.manage")
    await request.config_dict[AVAILABILITY].delete_policy(
        actor, request.match_info["scope_type"], request.match_info["scope_id"]
    )
    return redirect(request, "/availability")
