"""The configuration the app caches (``hub.services.config``): the ``GET /api/v1/config`` bundle and
the answer every cacheable resource route gives: the body with its ``ETag``, or ``304 Not
Modified`` when the request's ``If-None-Match`` names the current one."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from aiohttp import web
from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    field_validator,
)

from hub.appkeys import ATTRIBUTES, CONFIG_REGISTRY, LABELS
from hub.limits import Label, Name, Text, omit_null
from hub.services.attributes import KEY
from hub.services.labels import BLANK, COLOUR
from hub.web.auth import require_actor
from hub.web.errors import read_json
from hub.web.etag import config_response, view_response
from hub.web.notifications import PreferencesOut
from hub.web.openapi import operation
from hub.web.schemas import (
    AttributeDefinitionOut,
    AttributeDefinitions,
    AvailabilityList,
    ChannelList,
    LabelList,
    LabelOut,
    OwnPermissions,
    ScheduleList,
    TeamList,
)
from hub.web.workspace import MacroList, QuickReplyList

__all__ = ["ConfigBundle", "config_response", "routes", "view_response"]


class ConfigBundle(BaseModel):
    """``GET /api/v1/config``: each resource exactly as its own route answers it, and its ETag.
    Resources a plugin or a later feature registers appear under their names too."""

    model_config = ConfigDict(extra="allow")

    channels: ChannelList
    teams: TeamList
    availability_statuses: AvailabilityList
    labels: LabelList
    custom_attributes: AttributeDefinitions
    permissions: OwnPermissions
    quick_replies: QuickReplyList
    macros: MacroList
    notification_preferences: PreferencesOut
    business_hours: ScheduleList
    etags: dict[str, str] = Field(description="resource name -> the ETag its own route sends (unquoted)")


routes = web.RouteTableDef()


@routes.get("/api/v1/config")
@operation(
    "Every configuration resource the app caches, in one answer, with each one's ETag",
    "config",
    response=ConfigBundle,
    etag=True,
)
async def get_config(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return view_response(request, await request.app[CONFIG_REGISTRY].bundle(actor))


# ---- the resources this module owns ------------------------------------------------------------


@routes.get("/api/v1/labels")
@operation("Label definitions (cacheable: ETag / If-None-Match)", "config", response=LabelList, etag=True)
async def list_labels(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "labels")


@routes.get("/api/v1/custom-attributes")
@operation(
    "Custom attribute definitions of contacts and of conversations (cacheable)",
    "config",
    response=AttributeDefinitions,
    etag=True,
)
async def list_attributes(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "custom_attributes")


@routes.get("/api/v1/business-hours")
@operation(
    "When each channel and team answers: weekly hours in a time zone, and holidays (cacheable)",
    "config",
    response=ScheduleList,
    etag=True,
)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "business_hours")


@routes.get("/api/v1/me/permissions")
@operation("Your role and effective permissions (cacheable)", "config", response=OwnPermissions, etag=True)
async def own_permissions(request: web.Request) -> web.StreamResponse:
    return await config_response(request, "permissions")


# A label's name has a character other than ASCII white space (the document says so exactly).
LabelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    Field(json_schema_extra={"pattern": "^[^\\u0000]*[^\\u0000\\t\\n\\r\\f\\v ][^\\u0000]*$"}),
]


def _has_text(value: str | None) -> str | None:
    if value is not None and not value.strip(BLANK):
        raise ValueError("must have a character other than white space")
    return value


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: LabelName
    colour: str | None = Field(default=None, pattern=COLOUR, description="#rrggbb")
    description: Text | None = None

    _name = field_validator("name")(_has_text)


class LabelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=omit_null("name", "colour"))

    name: LabelName | None = Field(default=None, description="a rename: every application stays")
    colour: str | None = Field(default=None, pattern=COLOUR, description="#rrggbb")
    description: Text | None = Field(default=None, description="null clears it")

    @field_validator("name", "colour", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value

    _name = field_validator("name")(_has_text)


@routes.post("/api/v1/admin/labels")
@operation("Define a label", "config", body=LabelIn, status=201, errors=(403, 409, 422), response=LabelOut)
async def create_label(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "labels.manage")
    req = LabelIn.model_validate(await read_json(request))
    out = await request.app[LABELS].create(actor, req.name, req.colour, req.description)
    return web.json_response(out, status=201)


@routes.patch("/api/v1/admin/labels/{label_id}")
@operation(
    "Rename, recolour or describe a label (it stays applied everywhere)",
    "config",
    body=LabelPatch,
    errors=(403, 404, 409, 422),
    response=LabelOut,
)
async def patch_label(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "labels.manage")
    req = LabelPatch.model_validate(await read_json(request))
    out = await request.app[LABELS].update(
        actor,
        request.match_info["label_id"],
        name=req.name,
        colour=req.colour,
        description=req.description,
        clear_description="description" in req.model_fields_set and req.description is None,
    )
    return web.json_response(out)


@routes.delete("/api/v1/admin/labels/{label_id}")
@operation(
    "Delete a label: it is removed from every conversation and contact",
    "config",
    status=204,
    errors=(403, 404),
)
async def delete_label(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "labels.manage")
    await request.app[LABELS].delete(actor, request.match_info["label_id"])
    return web.Response(status=204)


class _AttributeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    applies_to: Literal["contact", "conversation"]
    key: str = Field(pattern=KEY, description="where values are stored in custom_attributes; fixed once made")
    name: Name = Field(min_length=1)
    required: bool = False
    description: Text | None = None
    position: Position = 0


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer: 461.0 is one (its fraction is zero); true is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict (no "1" or true for 1), but as JSON Schema counts: 2.0 is the integer 2.
Position = Annotated[int, Interval(ge=0, le=10_000), BeforeValidator(_whole_number)]


Pattern = Annotated[str, StringConstraints(max_length=500), Field(json_schema_extra={"format": "regex"})]
Length = Annotated[int, Interval(ge=0, le=1_000_000), BeforeValidator(_whole_number)]
Number = Annotated[float, Field(allow_inf_nan=False)]


def _iso_date(value: str) -> str:
    date.fromisoformat(value)  # a ValueError is the 422
    return value


# A calendar date as text: what the stored definitions and values hold.
IsoDate = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    AfterValidator(_iso_date),
    Field(json_schema_extra={"format": "date"}),
]


class TextAttributeIn(_AttributeBase):
    type: Literal["text"]
    pattern: Pattern | None = Field(default=None, description="a regular expression the whole value matches")
    min: Length | None = Field(default=None, description="the shortest value")
    max: Length | None = Field(default=None, description="the longest value")


class LinkAttributeIn(TextAttributeIn):
    type: Literal["link"]  # type: ignore[assignment]


class NumberAttributeIn(_AttributeBase):
    type: Literal["number"]
    min: Number | None = Field(default=None, description="the least value")
    max: Number | None = Field(default=None, description="the greatest value")


class DateAttributeIn(_AttributeBase):
    type: Literal["date"]
    min: IsoDate | None = Field(default=None, description="the earliest date")
    max: IsoDate | None = Field(default=None, description="the latest date")


class ListAttributeIn(_AttributeBase):
    type: Literal["list"]
    options: list[Label] = Field(
        min_length=1,
        max_length=200,
        description="the allowed values",
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("options")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("options must differ")
        return value


class CheckboxAttributeIn(_AttributeBase):
    type: Literal["checkbox"]


class AttributeIn(
    RootModel[
        Annotated[
            TextAttributeIn
            | LinkAttributeIn
            | NumberAttributeIn
            | DateAttributeIn
            | ListAttributeIn
            | CheckboxAttributeIn,
            Field(discriminator="type"),
        ]
    ]
):
    """A definition: the constraints its type takes, and no other (a list's options, a text's
    pattern and lengths, a number's or a date's range)."""


Bound = Number | Annotated[str, StringConstraints(max_length=10)]


class AttributePatch(BaseModel):
    """What a definition may become; stored values are never rewritten (misfits are flagged)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=omit_null("name", "required", "position")
    )

    name: Name | None = Field(default=None, min_length=1)
    required: bool | None = None
    options: list[Label] | None = Field(default=None, max_length=200, description="list attributes")
    pattern: Pattern | None = Field(default=None, description="text and link attributes")
    min: Bound | None = Field(default=None, description="as the type takes it; null removes it")
    max: Bound | None = Field(default=None, description="as the type takes it; null removes it")
    description: Text | None = None
    position: Position | None = None

    @field_validator("name", "required", "position", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


def _whole(value: Any) -> Any:
    """A bound given as 3.0 is stored as 3 (lengths are whole numbers)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def attribute_spec(data: Any) -> dict[str, Any]:
    """A new definition as the service takes it, from a request body (the API's or the console's)."""
    spec = AttributeIn.model_validate(data).root.model_dump(mode="json")
    for bound in ("min", "max"):
        if bound in spec:
            spec[bound] = _whole(spec[bound])
    return spec


def attribute_changes(data: Any) -> dict[str, Any]:
    """A definition's changes as the service takes them (only the fields given)."""
    changes = AttributePatch.model_validate(data).model_dump(exclude_unset=True)
    for bound in ("min", "max"):
        if bound in changes:
            changes[bound] = _whole(changes[bound])
    return changes


@routes.post("/api/v1/admin/custom-attributes")
@operation(
    "Define a custom attribute of contacts or of conversations",
    "config",
    body=AttributeIn,
    status=201,
    errors=(403, 409, 422),
    response=AttributeDefinitionOut,
)
async def create_attribute(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "attributes.manage")
    spec = attribute_spec(await read_json(request))
    return web.json_response(await request.app[ATTRIBUTES].create(actor, spec), status=201)


@routes.patch("/api/v1/admin/custom-attributes/{definition_id}")
@operation(
    "Change a custom attribute definition (stored values are kept; misfits are flagged)",
    "config",
    body=AttributePatch,
    errors=(403, 404, 422),
    response=AttributeDefinitionOut,
)
async def patch_attribute(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "attributes.manage")
    changes = attribute_changes(await read_json(request))
    out = await request.app[ATTRIBUTES].update(actor, request.match_info["definition_id"], changes)
    return web.json_response(out)


@routes.delete("/api/v1/admin/custom-attributes/{definition_id}")
@operation(
    "Delete a custom attribute definition (values stored under its key are kept, flagged)",
    "config",
    status=204,
    errors=(403, 404),
)
async def delete_attribute(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "attributes.manage")
    await request.app[ATTRIBUTES].delete(actor, request.match_info["definition_id"])
    return web.Response(status=204)
