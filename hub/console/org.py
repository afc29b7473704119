"""The organisation: users and invitations, roles, teams, availability statuses and assignment
policies. Forms are validated by the admin API's own request models, then handed to the services.
The models are strict for the API's JSON; a form's numbers and flags arrive as text, so the console
validates them laxly (``strict=False``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.access import PERMISSIONS, Actor
from hub.appkeys import AVAILABILITY, CHANNEL_ADMIN, ORG, TEAMS
from hub.console.base import (
    PREFIX,
    action_route,
    form_data,
    form_list,
    need_actor,
    page_route,
    redirect,
    render,
    submit,
)
from hub.routing import POLICIES
from hub.web.org import RoleCreate, TeamCreate, UserCreate
from hub.web.routing import PolicyIn, StatusCreate

__all__ = ["routes"]

routes = web.RouteTableDef()


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


page_route(routes, "/users", "users.manage", _users_page)


@routes.post("/users")
async def create_user(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    shown = {k: form.get(k, "").strip() for k in ("email", "name", "role")}

    async def work() -> tuple[dict[str, Any], dict[str, Any]]:
        req = UserCreate.model_validate({**shown, "name": shown["name"] or None}, strict=False)
        return await request.config_dict[ORG].create_user(actor, req.email, req.name, req.role)

    async def invited(created: tuple[dict[str, Any], dict[str, Any]]) -> web.StreamResponse:
        return await _invitation_page(request, actor, *created)

    return await submit(request, actor, _users_page, shown, work, then=invited, field="email")


async def _invitation_page(
    request: web.Request, actor: Actor, user: dict[str, Any], inv: dict[str, Any]
) -> web.StreamResponse:
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


def _set_active(active: bool) -> Callable[[web.Request, Actor], Awaitable[Any]]:
    def act(request: web.Request, actor: Actor) -> Awaitable[Any]:
        return request.config_dict[ORG].set_active(actor, request.match_info["user_id"], active)

    return act


action_route(routes, "/users/{user_id}/deactivate", "users.manage", _set_active(False), then="/users")
action_route(routes, "/users/{user_id}/activate", "users.manage", _set_active(True), then="/users")


@routes.post("/users/{user_id}/invitation")
async def reinvite(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    org = request.config_dict[ORG]
    user = await org.get_user(actor, request.match_info["user_id"])
    return await _invitation_page(request, actor, user, await org.invite(actor, user["id"]))


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


page_route(routes, "/roles", "users.manage", _roles_page)


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

    async def work() -> None:
        req = RoleCreate.model_validate({**shown, "description": shown["description"] or None}, strict=False)
        await request.config_dict[ORG].save_role(
            actor, req.name, req.permissions, req.description, create=not existing
        )

    return await submit(request, actor, _roles_page, shown, work, then="/roles", field="name")


action_route(
    routes,
    "/roles/{name}/delete",
    "users.manage",
    lambda request, actor: request.config_dict[ORG].delete_role(actor, request.match_info["name"]),
    then="/roles",
)


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


page_route(routes, "/teams", "users.manage", _teams_page)


@routes.post("/teams")
async def create_team(request: web.Request) -> web.StreamResponse:
    actor = await need_actor(request, "users.manage")
    form = await form_data(request)
    shown = {
        "name": form.get("name", "").strip(),
        "member_ids": await form_list(request, "member_ids"),
        "channel_ids": await form_list(request, "channel_ids"),
    }

    async def work() -> None:
        req = TeamCreate.model_validate(shown, strict=False)
        await request.config_dict[TEAMS].create_team(actor, req.name, req.member_ids, req.channel_ids)

    return await submit(request, actor, _teams_page, shown, work, then="/teams", field="name")


action_route(
    routes,
    "/teams/{team_id}/delete",
    "users.manage",
    lambda request, actor: request.config_dict[TEAMS].delete_team(actor, request.match_info["team_id"]),
    then="/teams",
)


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


page_route(routes, "/availability", "config.manage", _availability_page)


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

    async def work() -> None:
        req = StatusCreate.model_validate(shown, strict=False)
        await request.config_dict[AVAILABILITY].create_status(
            actor, req.id, req.name, req.receives, req.push, req.shows_as
        )

    return await submit(request, actor, _availability_page, shown, work, then="/availability", field="id")


action_route(
    routes,
    "/availability/statuses/{status_id}/delete",
    "config.manage",
    lambda request, actor: request.config_dict[AVAILABILITY].delete_status(
        actor, request.match_info["status_id"]
    ),
    then="/availability",
)


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

    async def work() -> None:
        req = PolicyIn.model_validate({k: shown[k] for k in ("policy", "capacity", "team_id")}, strict=False)
        await request.config_dict[AVAILABILITY].set_policy(
            actor, scope_type, scope_id, req.policy, req.capacity, req.team_id
        )

    return await submit(request, actor, _availability_page, shown, work, then="/availability", field="scope")


action_route(
    routes,
    "/availability/policies/{scope_type}/{scope_id}/delete",
    "config.manage",
    lambda request, actor: request.config_dict[AVAILABILITY].delete_policy(
        actor, request.match_info["scope_type"], request.match_info["scope_id"]
    ),
    then="/availability",
)
