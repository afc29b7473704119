"""The OpenAPI document, built from the routes themselves so it cannot drift from them.

Every handler carries an ``@operation(...)`` annotation; ``build_openapi`` walks the router and
refuses (in tests) any route without one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub import __version__

__all__ = ["SEQ_HEADER", "Operation", "build_openapi", "operation", "with_seq"]

F = TypeVar("F", bound=Callable[..., Any])


class FieldProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the field refused, dotted (attachments.0.upload_id), or (body)")
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable, for programs: validation_failed, not_found, cursor_too_old, ...")
    message: str = Field(description="for people")
    details: list[FieldProblem] | dict[str, Any] | None = Field(
        description="a 422's refused fields; otherwise what the code documents (retry_after, last_seq, ...)"
    )


class Error(BaseModel):
    """Every API error, whatever the status."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


def _error_schemas() -> dict[str, Any]:
    top = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"Error": top, **top.pop("$defs", {})}


@dataclass
class Operation:
    summary: str
    tag: str
    auth: str | None = "bearer"
    body: type[BaseModel] | None = None
    response: type[BaseModel] | dict[str, Any] | None = None
    status: int = 200
    # name -> description (a text of at most 256 characters), or (description, JSON schema)
    query: dict[str, str | tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # name -> description (any string), or (description, JSON schema)
    headers: dict[str, str | tuple[str, dict[str, Any]]] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    # The answer's media type, or several (a download: what a generated client decodes as bytes
    # first, then any type the stored file has).
    response_type: str | tuple[str, ...] = "application/json"
    # For a body whose schema depends on the app (installed channel types): app -> JSON schema.
    body_schema: Callable[[web.Application], dict[str, Any]] | None = None
    # Other success statuses answered with the same body (a replayed send: 200 beside 202).
    also: dict[int, str] = field(default_factory=dict)
    # The operation's id when the handler's name does not make a good one.
    operation_id: str | None = None
    # A cacheable read (hub.web.config): ETag on the answer, 304 to a matching If-None-Match.
    etag: bool = False
    # A body taken in several media types (an upload: multipart or raw): media type -> app -> schema.
    bodies: dict[str, Callable[[web.Application], dict[str, Any]]] = field(default_factory=dict)


# What the query readers of hub.web.errors accept, so the document says exactly that.
QUERY_TEXT: dict[str, Any] = {"type": "string", "maxLength": 256, "pattern": "^[^\\u0000]*$"}


def query_integer(minimum: int = 0) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": 2**63 - 1}


# Request headers whose values the API checks, with what it accepts (others: any string).
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 200},
}


SEQ_HEADER = "X-Hub-Seq"
SEQ_HEADER_DOC: dict[str, Any] = {
    "description": "The event log's sequence number this answer reflects: every event up to it is "
    "included. Stream (or GET /api/v1/events) with after= this number to miss nothing.",
    "schema": {"type": "integer", "minimum": 0},
}


def with_seq(handler: F) -> F:
    """Give the answer an ``X-Hub-Seq`` header: the last event seq committed before the handler read
    its data, so an app that loads a list and then streams from that seq misses no change."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        from hub.appkeys import STORE

        seq = await request.app[STORE].last_seq()
        resp: web.StreamResponse = await handler(request)
        resp.headers[SEQ_HEADER] = str(seq)
        return resp

    wrapper.__hub_seq__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def operation(summary: str, tag: str, **kwargs: Any) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.__hub_operation__ = Operation(summary, tag, **kwargs)  # type: ignore[attr-defined]
        return fn

    return mark


def get_operation(handler: Any) -> Operation | None:
    return getattr(handler, "__hub_operation__", None)


def build_openapi(app: web.Application, public_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = _error_schemas()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path:
            continue
        op = get_operation(route.handler)
        if op is None:
            continue
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": op.operation_id or operation_id(route.method, route.handler.__name__),
            "responses": {},
        }
        params: list[dict[str, Any]] = []
        for name in _path_params(path):
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
        for name, spec in op.query.items():
            desc, schema = spec if isinstance(spec, tuple) else (spec, QUERY_TEXT)
            params.append({"name": name, "in": "query", "description": desc, "schema": schema})
        headers: dict[str, Any] = dict(op.headers)
        if op.etag:
            headers["If-None-Match"] = "the ETag of the copy you hold: 304 (no body) while it is current"
        for name, hspec in headers.items():
            desc, hschema = hspec if isinstance(hspec, tuple) else (hspec, {"type": "string"})
            params.append({"name": name, "in": "header", "description": desc, "schema": hschema})
        if params:
            entry["parameters"] = params
        for param in params:
            if param["in"] == "header" and param["name"] in HEADER_SCHEMAS:
                param["schema"] = HEADER_SCHEMAS[param["name"]]
        if op.bodies:
            entry["requestBody"] = {
                "required": True,
                "content": {ctype: {"schema": make(app)} for ctype, make in op.bodies.items()},
            }
        if op.body is None and op.body_schema is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {op.content_type: {"schema": op.body_schema(app)}},
            }
        if op.body is not None:
            body = (
                op.body_schema(app)
                if op.body_schema is not None
                else op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            schemas[op.body.__name__] = _no_nul(body) if op.content_type == "application/json" else body
            for name, sub in schemas[op.body.__name__].pop("$defs", {}).items():
                # A model both read and written (a bot's flow) keeps the request's stricter
                # schema, even when a response named it first: stored text never holds NUL.
                schemas[name] = _no_nul(sub)
            entry["requestBody"] = {
                "required": True,
                "content": {
                    op.content_type: {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
                },
            }
        ok: dict[str, Any] = {"description": "OK"}
        if isinstance(op.response, type) and issubclass(op.response, BaseModel):
            schemas[op.response.__name__] = op.response.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for name, sub in schemas[op.response.__name__].pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            ref = {"$ref": f"#/components/schemas/{op.response.__name__}"}
            ok["content"] = {rt: {"schema": ref} for rt in _types(op.response_type)}
        elif isinstance(op.response, dict):
            ok["content"] = {rt: {"schema": op.response} for rt in _types(op.response_type)}
        if getattr(route.handler, "__hub_seq__", False):
            ok["headers"] = {SEQ_HEADER: SEQ_HEADER_DOC}
        if op.etag:
            etag_header = {
                "ETag": {"description": "the version of this answer", "schema": {"type": "string"}}
            }
            ok["headers"] = {**ok.get("headers", {}), **etag_header}
            entry["responses"]["304"] = {
                "description": "Not Modified: your copy is current",
                "headers": etag_header,
            }
        entry["responses"][str(op.status)] = ok
        for code, why in op.also.items():
            entry["responses"][str(code)] = {**ok, "description": why}
        for code in sorted({400, 500, *op.errors, *((401,) if op.auth else ())}):
            entry["responses"][str(code)] = {
                "description": "Error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[route.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Channel hub API", "version": __version__},
        "servers": [{"url": public_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


# A handler named for what it does keeps its name as the operation's id (list_conversations, not
# get_list_conversations); one named for a thing gets the method in front (me: get_me).
_VERBS = frozenset(
    "get list create update patch delete put post send set read upload download retry cancel check "
    "enable disable resync receive reinvite login logout refresh revoke".split()
)


def operation_id(method: str, name: str) -> str:
    return name if name.split("_", 1)[0] in _VERBS else f"{method.lower()}_{name}"


def _types(media: str | tuple[str, ...]) -> tuple[str, ...]:
    return (media,) if isinstance(media, str) else media


def _no_nul(schema: Any) -> Any:
    """Every free text of a request body refuses NUL (``read_json`` does; PostgreSQL cannot store
    it): say so in each string's schema, so the document is exact."""
    if isinstance(schema, list):
        return [_no_nul(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _no_nul(v) if k not in ("enum", "const", "default", "examples") else v for k, v in schema.items()
    }
    if out.get("type") == "string" and not ({"enum", "const", "pattern"} & out.keys()):
        out["pattern"] = "^[^\\u0000]*$"
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        # A free-form object (a channel's settings before its type is known): its keys, and its
        # text values, refuse NUL as well.
        out["propertyNames"] = {"pattern": "^[^\\u0000]*$"}
        out["additionalProperties"] = {"not": {"type": "string", "pattern": "\\u0000"}}
    return out


def _path_params(path: str) -> list[str]:
    import re

    return re.findall(r"\{([^}:]+)", path)


CONSOLE_PREFIX = "/console/"


def is_console(route: web.AbstractRoute) -> bool:
    """The admin console's pages (``hub.console``): HTML for people, not part of the API."""
    resource = route.resource
    return resource is not None and resource.canonical.startswith(CONSOLE_PREFIX)


def undocumented_routes(app: web.Application) -> list[str]:
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or is_console(route):
            continue
        if get_operation(route.handler) is None:
            out.append(f"{route.method} {route.resource.canonical if route.resource else '?'}")
    return out
