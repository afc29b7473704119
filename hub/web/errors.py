"""One JSON error shape for every error: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from hub.appkeys import CONFIG
from hub.outbound import SendRefused
from hub.services.errors import ServiceError
from hub.web.sends import REFUSED_STATUS

__all__ = ["ApiError", "error_middleware", "error_response", "validation_details"]

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
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
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


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = await request.read()
    if not raw:
        raise ApiError(400, "bad_request", "the request body is empty; JSON expected")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the request body is not valid JSON: {exc}") from None


def query_int(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer query parameter: 400 when it is not one or is below ``minimum``; capped at ``maximum``."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ApiError(400, "bad_request", f"{name} must be {minimum} or more")
    return value if maximum is None else min(value, maximum)
