"""GET /api/v1/events: the Redis event stream as Server-Sent Events.

Each stream entry becomes `id: <stream id>`, `event: <type>`, `data: <json>`, framed by
FastAPI's own Server-Sent Events support (`EventSourceResponse`, `ServerSentEvent`). A client
resumes after the id in `Last-Event-ID` (sent by EventSource when it reconnects) or in
`?last_event_id=`; without either it gets only events newer than its connection.

Connections: every client gets its own Redis connection for the blocking XREADs. The
dispatcher's pool is capped (redis-py's asyncio pool allows 100 connections and then
fails), and a blocked XREAD holds its connection, so a few dozen open dashboards would
starve ordinary requests; a dedicated connection also gets a socket timeout longer than
the block and is closed the moment the client leaves.

Auth: the usual bearer token, in the `Authorization` header only (a token in the URL ends up
in access and proxy logs); browsers read the stream with fetch, which can send it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.dependencies import DispatcherDep
from api.exceptions import error_responses
from taskdispatch.domain.messages import text
from taskdispatch.domain.validation import STREAM_ID
from taskdispatch.store.connections import stream_client
from taskdispatch.store.events import MAX_EVENTS

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


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _entries(entries: Any) -> list[tuple[str, dict[str, str]]]:
    """(id, fields) pairs of XRANGE-style entries (RESP2, decoded responses)."""
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in entries or []]


@dataclass(frozen=True)
class Cursor:
    """Where the stream starts, and whether entries after it may have been trimmed away."""

    after: str
    trimmed: bool


async def resume_cursor(
    dispatcher: DispatcherDep,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", description="最后收到的事件 id")
    ] = None,
    last_event_id: Annotated[
        str | None, Query(description="同 Last-Event-ID，供按 URL 重连的客户端使用")
    ] = None,
) -> Cursor:
    """Resolved before the response starts (a 422 cannot follow the first event), so that
    nothing written once the client has the headers can be missed.

    The header wins: EventSource's own reconnect sends the newest id there while the URL
    (and any last_event_id in it) stays as it was first opened. Without a last id the
    cursor is the newest entry's id, not `$`: `$` means "newer than now" at each XREAD, so
    an event written between two reads would be lost.
    """
    resume_after = last_event_id_header or last_event_id
    key = dispatcher.keys.events()
    if resume_after is None:
        newest = _entries(await dispatcher.redis.xrevrange(key, count=1))
        return Cursor(newest[0][0] if newest else "0-0", trimmed=False)
    if not STREAM_ID.fullmatch(resume_after):
        raise HTTPException(422, text("stream_id", field="last_event_id", value=resume_after))
    oldest = _entries(await dispatcher.redis.xrange(key, count=1))
    trimmed = bool(oldest) and _stream_id(resume_after) < _stream_id(oldest[0][0])
    return Cursor(resume_after, trimmed)


@router.get(
    "/events",
    summary="实时事件流（SSE）",
    description=(
        "Server-Sent Events：每个事件含 id（Redis stream id）、event（类型，如 task.created、"
        "round.finished）与 data（JSON）。断线重连时带 Last-Event-ID 头或 last_event_id 参数，"
        "从该 id 之后继续；不带时只推送连接之后的新事件。空闲时每 5 秒发送一行 "
        "`: keep-alive` 注释。事件约保留最近 10000 条，更早的断点会先收到 resync 事件。"
        "认证：Authorization: Bearer 头（不接受 URL 中的 token，以免写入访问日志）。"
    ),
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "事件流"},
        **error_responses(401, 422, 503),
    },
)
async def events(
    request: Request,
    dispatcher: DispatcherDep,
    cursor: Annotated[Cursor, Depends(resume_cursor)],
) -> AsyncIterator[ServerSentEvent]:
    key, after = dispatcher.keys.events(), cursor.after
    # Its own named connection (CLIENT LIST shows what holds it), to the master a Sentinel
    # URL names, found again after a failover.
    redis = stream_client(
        dispatcher.settings, client_name=CLIENT_NAME, timeout_s=BLOCK_MS / 1000 + 10
    )
    try:
        yield ServerSentEvent(retry=RETRY_MS)
        if cursor.trimmed:
            note = f'{{"reason": "events before the oldest kept (~{MAX_EVENTS}) were trimmed"}}'
            yield ServerSentEvent(event="resync", raw_data=note)
        while not await request.is_disconnected():
            # RESP2 reply: [[stream key, entries]] for the one stream read, or empty on timeout.
            reply: Any = await redis.xread({key: after}, count=BATCH, block=BLOCK_MS)
            entries = _entries(reply[0][1] if reply else [])
            if not entries:
                yield ServerSentEvent(comment="keep-alive")
            for entry_id, fields in entries:
                after = entry_id
                yield ServerSentEvent(
                    id=entry_id,
                    event=fields.get("type", "message"),
                    raw_data=fields.get("data", "{}"),
                )
    finally:
        await redis.aclose()
