"""How requests fail: every error is `{"success": false, "error": "<clear message>"}`.

`install_error_handlers` maps taskdispatch's exceptions, request validation, Starlette's
HTTP errors and Redis outages to one body shape with a
fitting status; anything else is a 500 that names no internals. Messages come from
`taskdispatch/domain/messages.py`, in the design document's language; `details` carries, per
field, the message and, where it helps, the English technical detail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.models import ErrorDetail, ErrorResponse
from taskdispatch.domain.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    LimitNotFoundError,
    NotificationNotFoundError,
    StoreUnavailableError,
    TaskConflictError,
    TaskDispatchError,
    TaskNotFoundError,
    TransactionContendedError,
    UnknownTaskTypeError,
    WriteNotReplicatedError,
)
from taskdispatch.domain.messages import text
from taskdispatch.store.connections import masked

__all__ = [
    "MAX_BODY_BYTES",
    "BodySizeLimit",
    "document_body_errors",
    "error_response",
    "error_responses",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

# First match wins, so a subclass must come before its base.
_STATUS_BY_ERROR: dict[type[TaskDispatchError], int] = {
    UnknownTaskTypeError: 400,
    InvalidTaskError: 422,
    TaskNotFoundError: 404,
    LimitNotFoundError: 404,
    NotificationNotFoundError: 404,
    AccountTaskExistsError: 400,
    TaskConflictError: 409,
    # Applied on the master, not yet on enough replicas: a failover may still lose it.
    WriteNotReplicatedError: 503,
    # Nothing written: the keys kept changing under it; trying again later is safe.
    TransactionContendedError: 503,
}

_DESCRIPTIONS = {
    400: "请求错误（账户已有任务、未知任务类型、请求体不是 JSON）",
    401: "未授权（配置了令牌时需要 Authorization: Bearer <token>）",
    403: "权限不足（令牌的角色不够），或未配置令牌时来自其他机器的请求",
    404: "任务、限流规则或通知不存在",
    409: "任务当前状态不允许该操作",
    413: "请求体超过上限（1 MiB；导入 16 MiB）",
    415: "Content-Type 不受支持",
    429: "请求过于频繁（TASKDISPATCH_RATE_LIMIT），Retry-After 指明等待秒数",
    422: "参数校验失败，error 指明字段",
    500: "内部服务器错误",
    503: (
        "Redis 不可用、写入未得到 TASKDISPATCH_REDIS_MIN_REPLICAS 个副本确认，"
        "或数据被并发修改过于频繁"
    ),
}

# Starlette's own errors (no route, wrong method, the body limit) in the table's words.
_HTTP_MESSAGES = {404: "route_not_found", 405: "method_not_allowed"}

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def error_response(
    status_code: int,
    message: str,
    *,
    details: list[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=message, details=details).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status_code, headers=headers)


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the error body for these statuses."""
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in status_codes
    }


def document_body_errors(router: APIRouter) -> None:
    """Every operation that reads a body documents the errors any body can cause.

    A body that is not JSON (400), too large (413) or of the wrong shape (422) can reach
    every such operation, whatever its own errors are; listing them here, once, keeps the
    schema true for clients and fuzzers alike.
    """
    for route in router.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            for code, entry in error_responses(400, 413, 422).items():
                route.responses.setdefault(code, entry)


def _with_field(field: str, message: str) -> str:
    return message if message.startswith(field) else f"{field}: {message}"


def _store_unavailable(url: str, cause: BaseException | None) -> JSONResponse:
    # The cause names host and errno, never the password; the URL is masked both ways.
    log.warning("Redis at %s is unreachable: %r", masked(url), cause)
    return error_response(503, str(StoreUnavailableError(masked(url))))


async def _task_error(request: Request, exc: TaskDispatchError) -> JSONResponse:
    if isinstance(exc, StoreUnavailableError):
        return _store_unavailable(exc.url, exc.__cause__)
    status_code = next(
        (code for cls, code in _STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400
    )
    if isinstance(exc, InvalidTaskError) and exc.field is not None:
        message = _with_field(exc.field, str(exc))
        details = [ErrorDetail(field=exc.field, message=str(exc), detail=exc.detail)]
        return error_response(status_code, message, details=details)
    return error_response(status_code, str(exc))


async def _redis_down(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
    if isinstance(exc.__cause__, asyncio.TimeoutError):
        # The blocking pool waited redis_pool_timeout_s for a free connection: Redis is
        # fine, this API process is at its concurrency limit (redis_max_connections).
        log.warning("no free Redis connection for %s %s", request.method, request.url.path)
        return error_response(503, text("pool_exhausted"), headers={"Retry-After": "1"})
    return _store_unavailable(request.app.state.settings.redis_url, exc)


async def _redis_refuses(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
    # Reachable but refusing writes: a replica during failover, or maxmemory reached.
    url = masked(request.app.state.settings.redis_url)
    log.warning("Redis at %s refused a command: %r", url, exc)
    return error_response(503, text("store_refuses", url=url, reason=type(exc).__name__))


def _field_name(loc: Sequence[str | int]) -> str:
    """("body", "valid_time_range", 0) -> "valid_time_range[0]"; ("query", "limit") -> "limit"."""
    parts = loc[1:] if len(loc) > 1 and loc[0] in _LOCATIONS else loc
    name = str(parts[0])
    for part in parts[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def _unreadable_body(errors: Sequence[Any]) -> str | None:
    """Why the body could not be read as JSON at all, or None if it could."""
    for error in errors:
        if error["type"] == "json_invalid":
            return text("body_not_json")
        # FastAPI hands over the raw bytes when the Content-Type is not JSON.
        if tuple(error["loc"]) == ("body",) and isinstance(error.get("input"), bytes):
            return text("body_content_type")
    return None


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    unreadable = _unreadable_body(errors)
    if unreadable is not None:
        return error_response(400, unreadable)
    details = [
        ErrorDetail(
            field=(name := _field_name(e["loc"])),
            # A field the body may not carry is most often a misspelt one: say so.
            message=text(
                "unknown_field" if e["type"] == "extra_forbidden" else "invalid_field", field=name
            ),
            detail=e["msg"],
        )
        for e in errors
    ]
    first = details[0]
    return error_response(422, first.message, details=details)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    key = _HTTP_MESSAGES.get(exc.status_code)
    message = text(key, path=request.url.path) if key is not None else str(exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, text("internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(TaskDispatchError)(_task_error)
    # ConnectionError covers refused connections, a full pool and BusyLoadingError.
    app.exception_handler(redis.exceptions.ConnectionError)(_redis_down)
    app.exception_handler(redis.exceptions.TimeoutError)(_redis_down)
    # Subclasses of ResponseError: the most specific handler wins.
    app.exception_handler(redis.exceptions.ReadOnlyError)(_redis_refuses)
    app.exception_handler(redis.exceptions.OutOfMemoryError)(_redis_refuses)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected)


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, text("body_too_large", max=max_bytes))


class BodySizeLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, declared or streamed.

    Not Starlette's `max_body_size`: for a declared Content-Length over the limit it replaces
    whatever the app answers with a plain-text "Content Too Large", which breaks the one
    error body every client of this API relies on.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths whose bodies may be bigger (an import file), with their own limit.
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            # Refused before reading a byte; this runs outside the exception handlers.
            exc = BodyTooLarge(max_bytes)
            await error_response(exc.status_code, exc.detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                # Raised inside the endpoint's body read, so the HTTPException handler answers.
                raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited_receive, send)
