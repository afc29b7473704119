"""The agents' workspace over HTTP: quick replies (and their preview), macros (and their runs),
private notes. Handlers parse and render; ``hub.services`` does the work for the acting user."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hub.actions import ActionSpec
from hub.appkeys import MACROS, NOTES, QUICK_REPLIES
from hub.limits import Id, omit_null
from hub.services.quick_replies import TEXT_PATTERN
from hub.web.auth import require_actor
from hub.web.errors import ApiError, query_int, query_text, read_json
from hub.web.openapi import operation, query_integer

__all__ = ["routes"]

routes = web.RouteTableDef()

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ReplyText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
MacroName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=65_536)]


def known_query(request: web.Request, *names: str) -> None:
    """400 for a query parameter the operation does not take (a typo must not pass silently)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown query parameter {unknown[0][:64]!r}; this takes {', '.join(names)}"
        )


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null; omit the field to leave it unchanged")
    return value


# ---- shapes -------------------------------------------------------------------------------------


class QuickReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code = Field(description="the short code agents type; unique regardless of case")
    text: ReplyText = Field(
        description="with placeholders {{contact.name}}, {{contact.email}}, {{contact.phone}}, "
        "{{agent.name}}, {{agent.email}}, {{conversation.custom_attributes.KEY}}; braces appear in "
        "nothing else (422 naming text)",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )


class QuickReplyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=omit_null("code", "text"))

    code: Code | None = None
    text: ReplyText | None = Field(default=None, json_schema_extra={"pattern": TEXT_PATTERN})

    @field_validator("code", "text", mode="before")
    @classmethod
    def _nn(cls, value: Any) -> Any:
        return _not_null(value)


class QuickReplyOut(BaseModel):
    id: str
    code: str
    text: str
    created_at: str
    updated_at: str


class QuickReplyList(BaseModel):
    quick_replies: list[QuickReplyOut]


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: Id


class PreviewOut(BaseModel):
    quick_reply_id: str
    conversation_id: str
    text: str = Field(description="the text as it would be sent now")


class MacroIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: MacroName
    visibility: Literal["personal", "shared"] = Field(
        default="personal", description="shared macros are everyone's (writing one needs config.manage)"
    )
    actions: list[ActionSpec] = Field(min_length=1, max_length=50)


class MacroPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=omit_null("name", "visibility", "actions"))

    name: MacroName | None = None
    visibility: Literal["personal", "shared"] | None = None
    actions: list[ActionSpec] | None = Field(default=None, min_length=1, max_length=50)

    @field_validator("name", "visibility", "actions", mode="before")
    @classmethod
    def _nn(cls, value: Any) -> Any:
        return _not_null(value)


class MacroOut(BaseModel):
    id: str
    name: str
    visibility: str
    owner_id: str
    actions: list[dict[str, Any]]
    created_at: str
    updated_at: str


class MacroList(BaseModel):
    macros: list[MacroOut]


class MacroRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_ids: list[Id] = Field(min_length=1, max_length=100)


class ActionResultOut(BaseModel):
    index: int
    type: str
    status: str = Field(description="done, failed (with the reason), rolled_back or skipped")
    detail: str | None


class ConversationRunOut(BaseModel):
    conversation_id: str
    status: str = Field(description="done: every action applied; failed: none applied")
    actions: list[ActionResultOut]


class MacroRunOut(BaseModel):
    macro_id: str
    results: list[ConversationRunOut]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NoteText = Field(description="@email mentions that colleague")
    mention_ids: list[Id] = Field(default_factory=list, max_length=50, description="users to mention")


class NoteOut(BaseModel):
    id: str
    conversation_id: str
    channel_id: str
    author: dict[str, Any]
    text: str
    mentions: list[str]
    created_at: str


class NoteList(BaseModel):
    notes: list[NoteOut]


# ---- quick replies ------------------------------------------------------------------------------


@routes.get("/api/v1/quick-replies")
@operation(
    "Quick replies, by code; q searches code and text",
    "workspace",
    response=QuickReplyList,
    query={
        "q": "text the code or the text contains (any case)",
        "limit": ("at most this many (over 500 gives 500)", query_integer(1)),
    },
)
async def list_quick_replies(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    known_query(request, "q", "limit")
    limit = query_int(request, "limit", 200, minimum=1, maximum=500)
    items = await request.app[QUICK_REPLIES].search(actor, query_text(request, "q"), limit)
    return web.json_response({"quick_replies": items})


@routes.post("/api/v1/admin/quick-replies")
@operation(
    "Create a quick reply (422 names an unknown placeholder)",
    "workspace",
    body=QuickReplyIn,
    status=201,
    errors=(403, 409, 422),
    response=QuickReplyOut,
)
async def create_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    req = QuickReplyIn.model_validate(await read_json(request))
    return web.json_response(await request.app[QUICK_REPLIES].create(actor, req.code, req.text), status=201)


@routes.patch("/api/v1/admin/quick-replies/{quick_reply_id}")
@operation(
    "Change a quick reply's code or text",
    "workspace",
    body=QuickReplyPatch,
    errors=(403, 404, 409, 422),
    response=QuickReplyOut,
)
async def patch_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    req = QuickReplyPatch.model_validate(await read_json(request))
    out = await request.app[QUICK_REPLIES].update(
        actor, request.match_info["quick_reply_id"], req.code, req.text
    )
    return web.json_response(out)


@routes.delete("/api/v1/admin/quick-replies/{quick_reply_id}")
@operation("Delete a quick reply", "workspace", status=204, errors=(403, 404))
async def delete_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "config.manage")
    await request.app[QUICK_REPLIES].delete(actor, request.match_info["quick_reply_id"])
    return web.Response(status=204)


@routes.post("/api/v1/quick-replies/{quick_reply_id}/preview")
@operation(
    "A quick reply rendered for a conversation, as sending it would render it now",
    "workspace",
    body=PreviewIn,
    errors=(404, 422),
    response=PreviewOut,
)
async def preview_quick_reply(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = PreviewIn.model_validate(await read_json(request))
    out = await request.app[QUICK_REPLIES].preview(
        actor, request.match_info["quick_reply_id"], req.conversation_id
    )
    return web.json_response(out)


# ---- macros -------------------------------------------------------------------------------------


@routes.get("/api/v1/macros")
@operation("Shared macros and your own", "workspace", response=MacroList)
async def list_macros(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response({"macros": await request.app[MACROS].visible_to(actor)})


@routes.post("/api/v1/macros")
@operation(
    "Create a macro: personal, or shared (config.manage)",
    "workspace",
    body=MacroIn,
    status=201,
    errors=(403, 422),
    response=MacroOut,
)
async def create_macro(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = MacroIn.model_validate(await read_json(request))
    actions = [a.model_dump(mode="json") for a in req.actions]
    return web.json_response(
        await request.app[MACROS].create(actor, req.name, req.visibility, actions), status=201
    )


@routes.get("/api/v1/macros/{macro_id}")
@operation("One macro (404 for another user's personal one)", "workspace", errors=(404,), response=MacroOut)
async def get_macro(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    return web.json_response(await request.app[MACROS].get(actor, request.match_info["macro_id"]))


@routes.patch("/api/v1/macros/{macro_id}")
@operation(
    "Rename a macro, share it or replace its actions",
    "workspace",
    body=MacroPatch,
    errors=(403, 404, 422),
    response=MacroOut,
)
async def patch_macro(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = MacroPatch.model_validate(await read_json(request))
    changes = req.model_dump(exclude_unset=True, mode="json")
    return web.json_response(await request.app[MACROS].update(actor, request.match_info["macro_id"], changes))


@routes.delete("/api/v1/macros/{macro_id}")
@operation("Delete a macro", "workspace", status=204, errors=(403, 404))
async def delete_macro(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    await request.app[MACROS].delete(actor, request.match_info["macro_id"])
    return web.Response(status=204)


@routes.post("/api/v1/macros/{macro_id}/run")
@operation(
    "Run a macro on conversations: each conversation all its actions or none, every result reported",
    "workspace",
    body=MacroRunIn,
    errors=(404, 422),
    response=MacroRunOut,
)
async def run_macro(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    req = MacroRunIn.model_validate(await read_json(request))
    out = await request.app[MACROS].run(actor, request.match_info["macro_id"], req.conversation_ids)
    return web.json_response(out)


# ---- private notes ------------------------------------------------------------------------------


@routes.get("/api/v1/conversations/{conversation_id}/notes")
@operation("The conversation's private notes, oldest first", "workspace", errors=(404,), response=NoteList)
async def list_notes(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request)
    notes = await request.app[NOTES].for_conversation(actor, request.match_info["conversation_id"])
    return web.json_response({"notes": notes})


@routes.post("/api/v1/conversations/{conversation_id}/notes")
@operation(
    "Write a private note (never sent to the customer); mentioned colleagues are notified",
    "workspace",
    body=NoteIn,
    status=201,
    errors=(403, 404, 422),
    response=NoteOut,
)
async def create_note(request: web.Request) -> web.StreamResponse:
    actor = await require_actor(request, "notes.write")
    req = NoteIn.model_validate(await read_json(request))
    note = await request.app[NOTES].create(
        actor, request.match_info["conversation_id"], req.text, req.mention_ids
    )
    return web.json_response(note, status=201)
