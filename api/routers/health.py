"""GET /api/v1/health: liveness of the API process (document section 3.1)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from api.dependencies import SettingsDep
from api.models import HealthResponse
from taskdispatch import __version__

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["健康检查"])


@router.get(
    "/health",
    summary="健康检查",
    description=(
        "API 进程存活检查，不需要认证，也不访问 Redis："
        "Redis 短暂不可用时不会导致编排系统重启 API；Redis 不可用时业务接口返回 503。"
    ),
)
async def health(settings: SettingsDep) -> HealthResponse:
    now = datetime.now(ZoneInfo(settings.timezone))
    return HealthResponse(
        status="healthy", timestamp=now.isoformat(timespec="seconds"), version=__version__
    )
