"""Availability and assignment over HTTP: statuses, an agent's own status, policies."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.appkeys import AVAILABILITY
from hub.web.auth import require_actor
from hub.web.config import config_response
from hub.web.errors import read_json
from hub.web.openapi import operation
from hub.web.schemas import (
    AvailabilityList,
    AvailabilityStatusOut,
    PolicyList,
    PolicyOut,
    PresenceOut,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: str = Field(
        min_length=1, max_length=64, description="online, busy, offline or a custom status id"
    )


class StatusCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    receives: bool = Field(description="agents in it receive new conversations")
    push: bool = Field(description="agents in it get push notifications")
    shows_as: Literal["online", "away", "offline"]


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    policy: Literal["manual", "round_robin", "balanced"]
    capacity: int | None = Field(default=None, ge=1, le=10_000, description="open conversations per agent")
    team_id: str | None = Field(
        default=None, description="channel policies: only this team's members receive"
    )

    @field_validator("capacity", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        # JSON Schema counts 312.0 as an integer; strict mode alone would refuse it.
        return int(value) if isinstance(value, float) and value.is_integer() else value


@routes.get("/api/v1/availability-statuses")
@operation(
    "Availability statuses: built-in and admin-defined (cacheable)",
    "availability",
    response=AvailabilityList,
    etag=True,
)
async def list_statuses(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "availability_statuses")


@routes.post("/api/v1/admin/availability-statuses")
@operation(
    "Define an availability status",
    "availability",
    body=StatusCreate,
    status=201,
    errors=(403, 409, 422),
    response=AvailabilityStatusOut,
)
async def create_status(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    req = StatusCreate.model_validate(await read_json(request))
    out = await request.app[AVAILABILITY].create_status(
        actor, req.id, req.name, req.receives, req.push, req.shows_as
    )
    return web.json_response(out, status=201)


@routes.delete("/api/v1/admin/availability-statuses/{status_id}")
@operation("Delete an availability status nobody is in", "availability", status=204, errors=(403, 404, 409))
async def delete_status(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    await request.app[AVAILABILITY].delete_status(actor, request.match_info["status_id"])
    return web.Response(status=204)


@routes.put("/api/v1/me/availability")
@operation(
    "Set your availability (teammates get presence.updated)",
    "availability",
    body=AvailabilityIn,
    errors=(422,),
    response=PresenceOut,
)
async def set_mine(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = AvailabilityIn.model_validate(await read_json(request))
    return web.json_response(await request.app[AVAILABILITY].set_availability(actor, actor.id, req.status))


@routes.put("/api/v1/admin/users/{user_id}/availability")
@operation(
    "Set a user's availability",
    "availability",
    body=AvailabilityIn,
    errors=(403, 404, 422),
    response=PresenceOut,
)
async def set_theirs(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "users.manage")
    req = AvailabilityIn.model_validate(await read_json(request))
    out = await request.app[AVAILABILITY].set_availability(actor, request.match_info["user_id"], req.status)
    return web.json_response(out)


@routes.get("/api/v1/admin/assignment-policies")
@operation("Assignment policies of channels and teams", "availability", errors=(403,), response=PolicyList)
async def list_policies(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    return web.json_response({"policies": await request.app[AVAILABILITY].policies(actor)})


@routes.put("/api/v1/admin/assignment-policies/{scope_type}/{scope_id}")
@operation(
    "Set how a channel's (or a team's) new conversations are assigned; scope_type is channel or team",
    "availability",
    body=PolicyIn,
    errors=(403, 404, 422),
    response=PolicyOut,
)
async def set_policy(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    req = PolicyIn.model_validate(await read_json(request))
    out = await request.app[AVAILABILITY].set_policy(
        actor,
        request.match_info["scope_type"],
        request.match_info["scope_id"],
        req.policy,
        req.capacity,
        req.team_id,
    )
    return web.json_response(out)


@routes.delete("/api/v1/admin/assignment-policies/{scope_type}/{scope_id}")
@operation("Remove a policy (back to manual)", "availability", status=204, errors=(403, 404))
async def delete_policy(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    await request.app[AVAILABILITY].delete_policy(
        actor, request.match_info["scope_type"], request.match_info["scope_id"]
    )
    return web.Response(status=204)
