"""/api/v1/limits: concurrency and rate limits across the tasks they match."""

from __future__ import annotations

from fastapi import APIRouter

from api.dependencies import ADMIN, DispatcherDep
from api.exceptions import error_responses
from api.models import (
    ActionResponse,
    LimitInfo,
    LimitListResponse,
    LimitRequest,
    LimitSavedResponse,
    limit_info,
)
from taskdispatch.domain.messages import text
from taskdispatch.domain.validation import timezone

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/limits", tags=["限流规则"])


@router.get(
    "/",
    summary="列出限流规则",
    description="所有限流规则（按名称排序）及其当前占用、等待轮次与时间窗内的启动次数。",
)
@router.get("", include_in_schema=False)
async def list_limits(dispatcher: DispatcherDep) -> LimitListResponse:
    tz = timezone(dispatcher.settings.timezone)
    return LimitListResponse(limits=[limit_info(v, tz=tz) for v in await dispatcher.list_limits()])


@router.put(
    "/{name}",
    dependencies=[ADMIN],
    summary="创建或修改限流规则",
    description=(
        "match 选出受限的任务（tag、sys_type、task_type，给出的条件须全部满足；"
        "不给条件则限制所有任务）；max_concurrent 限制同时运行的轮次，max_starts / per_s "
        "限制任意 per_s 秒内的启动次数。修改从各任务的下一轮起生效，无需重启。"
    ),
    responses=error_responses(422),
)
async def put_limit(name: str, body: LimitRequest, dispatcher: DispatcherDep) -> LimitSavedResponse:
    view = await dispatcher.put_limit(name, **body.model_dump())
    tz = timezone(dispatcher.settings.timezone)
    return LimitSavedResponse(message=text("limit_saved"), limit=limit_info(view, tz=tz))


@router.get(
    "/{name}",
    summary="获取限流规则",
    description="一条限流规则及其当前占用。",
    responses=error_responses(404, 422),
)
async def get_limit(name: str, dispatcher: DispatcherDep) -> LimitInfo:
    return limit_info(await dispatcher.get_limit(name), tz=timezone(dispatcher.settings.timezone))


@router.delete(
    "/{name}",
    dependencies=[ADMIN],
    summary="删除限流规则",
    description="删除后，等待该规则的轮次立即开始。",
    responses=error_responses(404, 422),
)
async def delete_limit(name: str, dispatcher: DispatcherDep) -> ActionResponse:
    await dispatcher.delete_limit(name)
    return ActionResponse(message=text("limit_deleted"))
