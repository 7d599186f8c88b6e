"""GET /api/v1/events: the Redis event stream as Server-Sent Events.

Each stream entry becomes `id: <stream id>`, `event: <type>`, `data: <json>`. A client
resumes after the id in `Last-Event-ID` (sent by EventSource when it reconnects) or in
`?last_event_id=`; without either it gets only events newer than its connection.

Connections: every client gets its own Redis connection for the blocking XREADs. The
dispatcher's pool is capped (redis-py's asyncio pool allows 100 connections and then
fails), and a blocked XREAD holds its connection, so a few dozen open dashboards would
starve ordinary requests; a dedicated connection also gets a socket timeout longer than
the block and is closed the moment the client leaves.

Auth: the usual bearer token, or `?token=` (on this route only) because EventSource
cannot send headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from starlette.responses import StreamingResponse

from api.dependencies import DispatcherDep, SettingsDep, require_token
from api.exceptions import error_responses
from taskdispatch.events import MAX_EVENTS

__all__ = ["BLOCK_MS", "CLIENT_NAME", "RETRY_MS", "router"]

router = APIRouter(prefix="/api/v1", tags=["调度器管理"])

# How long one XREAD waits for new entries before the stream sends a keep-alive comment:
# well under the idle timeouts of common proxies (60 s), and the longest a departed
# client keeps its Redis connection when the server is not told of the disconnect.
BLOCK_MS = 5_000
# Entries per XREAD, so a client resuming far behind catches up in bounded chunks.
BATCH = 100
# EventSource's reconnect delay (ms), sent once at the start of the stream.
RETRY_MS = 3_000
CLIENT_NAME = "taskdispatch-events"

_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")

# Same description as api.dependencies' scheme, so OpenAPI shows one bearer scheme.
_bearer = HTTPBearer(
    auto_error=False, description="Required when the server sets TASKDISPATCH_API_TOKEN."
)


async def require_stream_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None,
        Query(
            description="设置了 API token 时可代替 Authorization 头（EventSource 无法发送请求头）"
        ),
    ] = None,
) -> None:
    """The bearer token from the header or, failing that, from `?token=`."""
    if credentials is None and token is not None:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    await require_token(settings, credentials)


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _entries(entries: Any) -> list[tuple[str, dict[str, str]]]:
    """(id, fields) pairs of XRANGE-style entries (RESP2, decoded responses)."""
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in entries or []]


def _frame(*, event: str, data: str, event_id: str | None = None) -> str:
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines.append(f"event: {event}")
    # A newline inside data would end the field; each line gets its own `data:` prefix.
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


async def _start_id(redis: Redis, key: str, last_event_id: str | None) -> tuple[str, bool]:
    """Where to read from, and whether entries after it may have been trimmed away.

    Without a last id this is the newest entry's id, not `$`: `$` means "newer than now"
    at each XREAD, so an event written between two reads would be lost.
    """
    if last_event_id is None:
        newest = _entries(await redis.xrevrange(key, count=1))
        return (newest[0][0] if newest else "0-0"), False
    oldest = _entries(await redis.xrange(key, count=1))
    trimmed = bool(oldest) and _stream_id(last_event_id) < _stream_id(oldest[0][0])
    return last_event_id, trimmed


async def _events(
    request: Request, redis_url: str, key: str, cursor: str, trimmed: bool
) -> AsyncIterator[str]:
    redis = Redis.from_url(
        redis_url,
        decode_responses=True,
        single_connection_client=True,
        # Named, so CLIENT LIST shows what holds these connections.
        client_name=CLIENT_NAME,
        socket_connect_timeout=5,
        socket_timeout=BLOCK_MS / 1000 + 10,
    )
    try:
        yield f"retry: {RETRY_MS}\n\n"
        if trimmed:
            note = f'{{"reason": "events before the oldest kept (~{MAX_EVENTS}) were trimmed"}}'
            yield _frame(event="resync", data=note)
        while not await request.is_disconnected():
            # RESP2 reply: [[stream key, entries]] for the one stream read, or empty on timeout.
            reply: Any = await redis.xread({key: cursor}, count=BATCH, block=BLOCK_MS)
            entries = _entries(reply[0][1] if reply else [])
            if not entries:
                yield ": keep-alive\n\n"
            for entry_id, fields in entries:
                cursor = entry_id
                yield _frame(
                    event_id=entry_id,
                    event=fields.get("type", "message"),
                    data=fields.get("data", "{}"),
                )
    finally:
        await redis.aclose()


@router.get(
    "/events",
    summary="实时事件流（SSE）",
    description=(
        "Server-Sent Events：每个事件含 id（Redis stream id）、event（类型，如 task.created、"
        "round.finished）与 data（JSON）。断线重连时带 Last-Event-ID 头或 last_event_id 参数，"
        "从该 id 之后继续；不带时只推送连接之后的新事件。空闲时每 5 秒发送一行 "
        "`: keep-alive` 注释。事件约保留最近 10000 条，更早的断点会先收到 resync 事件。"
        "认证：Bearer 头，或 ?token=（EventSource 无法设置请求头）。"
    ),
    dependencies=[Depends(require_stream_token)],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "事件流"},
        **error_responses(401, 422, 503),
    },
)
async def events(
    request: Request,
    dispatcher: DispatcherDep,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", description="最后收到的事件 id")
    ] = None,
    last_event_id: Annotated[
        str | None, Query(description="同 Last-Event-ID，供按 URL 重连的客户端使用")
    ] = None,
) -> StreamingResponse:
    # The header wins: EventSource's own reconnect sends the newest id there while the URL
    # (and any last_event_id in it) stays as it was first opened.
    resume_after = last_event_id_header or last_event_id
    if resume_after is not None and not _STREAM_ID.fullmatch(resume_after):
        raise HTTPException(422, f"last_event_id: '{resume_after}' is not a stream id")
    key = dispatcher.keys.events()
    # Resolved before the response starts, so nothing written after the client sees the
    # headers can be missed.
    cursor, trimmed = await _start_id(dispatcher.redis, key, resume_after)
    return StreamingResponse(
        _events(request, dispatcher.settings.redis_url, key, cursor, trimmed),
        media_type="text/event-stream",
        # no-cache: never replayed from a cache; X-Accel-Buffering: nginx passes it through.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
