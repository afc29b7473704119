"""One JSON error shape for every error: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from hub.appkeys import CONFIG
from hub.limits import JSON_DEPTH
from hub.outbound import SendRefused
from hub.services.errors import ServiceError
from hub.web.sends import REFUSED_STATUS

__all__ = [
    "ApiError",
    "ProtocolLog",
    "error_middleware",
    "error_response",
    "json_problem",
    "query_int",
    "query_text",
    "read_json",
    "validation_details",
]

log = logging.getLogger("hub.web")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status)


def validation_details(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(([prefix] if prefix else []) + [str(p) for p in e["loc"]]) or "(body)",
            "message": e["msg"],
        }
        for e in exc.errors()
    ]


INT64_MAX = 2**63 - 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        resp = error_response(exc.status, exc.code, exc.message, exc.details)
        resp.headers.update(exc.headers)
        return resp
    except ServiceError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except SendRefused as exc:
        return error_response(REFUSED_STATUS[exc.reason], exc.code, exc.message, exc.errors or None)
    except ValidationError as exc:
        return error_response(422, "validation_failed", "the request is invalid", validation_details(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = (
                f"the body is larger than the hub accepts ({request.app[CONFIG].hub.max_body_bytes} bytes)"
            )
        resp = error_response(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the hub hit an unexpected error; it was logged")


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON (numbers must be finite)")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON, but Python reads it as Infinity
        raise _NotJson(f"{text} is out of range (numbers must be finite)")
    return value


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: the one reader of every API body.

    400 when it is not JSON at all; 413 over ``max_json_bytes``; 422 naming the field for what
    Python's parser takes but JSON, the database or an app cannot: NaN and Infinity (an event
    holding one is unreadable to every app), strings with lone surrogates or NUL (the database
    refuses them), nesting deeper than ``JSON_DEPTH``.
    """
    limit = request.app[CONFIG].hub.max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    raw = await request.read()
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw:
        raise ApiError(400, "bad_request", "the request body is empty; JSON expected")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except _NotJson as exc:
        raise _invalid("(body)", str(exc)) from None
    except RecursionError:
        raise _invalid("(body)", f"nested deeper than {JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of 4,300+ digits
        raise ApiError(400, "bad_request", f"the request body is not valid JSON: {exc}") from None
    # Only an escape (\u...) can make a lone surrogate or a NUL, and only many brackets deep nesting:
    # the common body skips the walk.
    if b"\\u" in raw or raw.count(b"[") + raw.count(b"{") > JSON_DEPTH:
        problem = json_problem(value)
        if problem is not None:
            raise _invalid(*problem)
    return value


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the JSON body is larger than the API accepts ({limit} bytes)")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "validation_failed", "the request is invalid", [{"field": field, "message": message}]
    )


def json_problem(value: Any) -> tuple[str, str] | None:
    """The first (field path, message) in a parsed JSON value the hub cannot store, or None."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > JSON_DEPTH:
            return ".".join(path[:JSON_DEPTH]), f"nested deeper than {JSON_DEPTH} levels"
        if isinstance(item, str):
            if (bad := _bad_text(item)) is not None:
                return ".".join(path) or "(body)", bad
        elif isinstance(item, dict):
            for key, sub in item.items():
                if (bad := _bad_text(key)) is not None:
                    return ".".join((*path, repr(key))), f"the name {bad}"
                stack.append((sub, (*path, key)))
        elif isinstance(item, list):
            stack.extend((sub, (*path, str(i))) for i, sub in enumerate(item))
    return None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (an invalid \\uD800-\\uDFFF escape)"
    return None


def query_int(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer query parameter: 400 when it is not one or is below ``minimum``; capped at ``maximum``."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        if len(raw) > 32:  # no integer the hub keeps is that long; int() of 5,000 digits is slow
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < minimum:
        raise ApiError(400, "bad_request", f"{name} must be {minimum} or more")
    if value > INT64_MAX:  # the database's integers stop there; past it the driver overflows
        raise ApiError(400, "bad_request", f"{name} must be at most {INT64_MAX}")
    return value if maximum is None else min(value, maximum)


def query_text(request: web.Request, name: str, max_length: int = 256) -> str | None:
    """A text query parameter (None when absent or empty): 400 when longer than ``max_length`` or
    holding what the database cannot store."""
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise ApiError(400, "bad_request", f"{name} is longer than {max_length} characters")
    if (bad := _bad_text(raw)) is not None:
        raise ApiError(400, "bad_request", f"{name} {bad}")
    return raw


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, minus tracebacks for requests that are not HTTP.

    aiohttp logs a request its parser refuses (a NUL in a header, a broken request line) as an
    ERROR with a traceback, and answers 400 itself. That is the client's mistake, not the hub's:
    a warning line says it, and a real error keeps its traceback.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.warning("refused a malformed HTTP request: %s", str(exc_info).splitlines()[0][:200])
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)
