"""/api/v1/dispatcher: the start/stop flag every beat obeys, and what is running now."""

from __future__ import annotations

from fastapi import APIRouter

from api.dependencies import ADMIN, DispatcherDep
from api.models import (
    ActionResponse,
    ConsistencyResponse,
    DispatcherStatusResponse,
    RunningRound,
    limit_info,
    local_time,
)
from taskdispatch.domain.messages import text
from taskdispatch.domain.validation import timezone
from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import DispatcherStatus
from taskdispatch.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dispatcher", tags=["调度器管理"])


def _status_response(status: DispatcherStatus, settings: Settings) -> DispatcherStatusResponse:
    rounds = [
        RunningRound(
            task_id=t.task_id,
            account_id=t.account_id,
            started_at=local_time(t, t.started_ms),
            worker=t.worker,
        )
        for t in status.running_rounds
    ]
    counts = status.counts
    return DispatcherStatusResponse(
        is_running=status.is_running,
        total_tasks=sum(counts.values()),
        pending_tasks=counts["pending"],
        running_tasks=counts["running"],
        paused_tasks=counts["paused"],
        completed_tasks=counts["completed"],
        error_tasks=counts["error"],
        current_running_task=rounds[0] if rounds else None,
        enabled=status.enabled,
        beats_alive=status.beats_alive,
        workers_alive=status.workers_alive,
        running_rounds=rounds,
        due_backlog=status.due_backlog,
        unconsumed_queues=status.unconsumed_queues,
        scheduling_lag_s=status.scheduling_lag_ms / 1000,
        limits=[limit_info(v, tz=timezone(settings.timezone)) for v in status.limits],
    )


@router.get(
    "/status",
    summary="获取调度器状态",
    description=(
        "各状态的任务数量与正在执行的轮次。is_running 仅在调度器已启动（enabled）"
        "且至少有一个 beat 心跳存活时为 true。"
    ),
)
async def get_status(dispatcher: DispatcherDep) -> DispatcherStatusResponse:
    return _status_response(await dispatcher.status(), dispatcher.settings)


@router.post(
    "/start",
    dependencies=[ADMIN],
    summary="启动调度器",
    description="打开所有 beat 共同遵守的调度开关；重复调用无副作用。",
)
async def start(dispatcher: DispatcherDep) -> ActionResponse:
    await dispatcher.start()
    return ActionResponse(message=text("dispatcher_started"))


@router.post(
    "/stop",
    dependencies=[ADMIN],
    summary="停止调度器",
    description="关闭调度开关：不再派发新的轮次，正在执行的轮次会正常完成。",
)
async def stop(dispatcher: DispatcherDep) -> ActionResponse:
    await dispatcher.stop()
    return ActionResponse(message=text("dispatcher_stopped"))


@router.get(
    "/check",
    summary="检查存储一致性",
    description=(
        "逐个核对任务与其索引（状态、待执行、运行中、账户绑定）是否一致。"
        "耗时与任务总数成正比，供运维按需调用，不要用于高频监控。"
    ),
)
async def check(dispatcher: DispatcherDep) -> ConsistencyResponse:
    problems = await check_consistency(dispatcher.redis, dispatcher.keys)
    return ConsistencyResponse(consistent=not problems, problems=problems)
