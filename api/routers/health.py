"""GET /api/v1/health (liveness, document section 3.1) and /api/v1/health/ready (readiness)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.dependencies import ServiceDep, SettingsDep
from api.models import Component, HealthResponse, ReadinessResponse
from taskdispatch import __version__
from taskdispatch.settings import Settings

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["健康检查"])

# A readiness probe must answer before the orchestrator's own timeout (typically 1-5 s).
READY_TIMEOUT_S = 2.0


def _timestamp(settings: Settings) -> str:
    return datetime.now(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")


@router.get(
    "/health",
    summary="健康检查",
    description=(
        "API 进程存活检查，不需要认证，也不访问 Redis："
        "Redis 短暂不可用时不会导致编排系统重启 API；Redis 不可用时业务接口返回 503。"
    ),
)
async def health(settings: SettingsDep) -> HealthResponse:
    return HealthResponse(status="healthy", timestamp=_timestamp(settings), version=__version__)


@router.get(
    "/health/ready",
    summary="就绪检查",
    description=(
        "不需要认证。Redis 可用时返回 200，并给出存活的 beat 与 worker 数量（worker 的心跳证明它"
        "确实在消费消息）；Redis 不可用时返回 503，响应结构相同。down 列出不正常的组件："
        "redis（此时 503）、beats 或 workers（没有存活的进程时，仍为 200）。"
    ),
    response_model=ReadinessResponse,
    responses={503: {"model": ReadinessResponse, "description": "Redis 不可用"}},
)
async def ready(settings: SettingsDep, dispatcher: ServiceDep) -> JSONResponse:
    beats: int | None = None
    workers: int | None = None
    try:
        beats, workers = await asyncio.wait_for(dispatcher.alive(), READY_TIMEOUT_S)
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        log.warning("readiness: Redis does not answer: %r", exc)
    down: list[Component] = [] if beats is not None else ["redis"]
    if beats == 0:
        down.append("beats")
    if workers == 0:
        down.append("workers")
    body = ReadinessResponse(
        status="unavailable" if "redis" in down else "ready",
        timestamp=_timestamp(settings),
        version=__version__,
        redis="redis" not in down,
        beats_alive=beats,
        workers_alive=workers,
        down=down,
    )
    return JSONResponse(body.model_dump(), status_code=503 if "redis" in down else 200)
