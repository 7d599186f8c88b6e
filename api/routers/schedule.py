"""When tasks run: upcoming run times and a draft's preview.

Included in the app before the tasks router, so `/api/v1/tasks/preview` is never read as a
task id by the tasks router's `/{task_id}` routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.dependencies import DispatcherDep
from api.exceptions import error_responses
from api.models import RunInfo, TaskSpec, local_time, run_info
from taskdispatch.service.dispatcher import DAYS_MAX, Upcoming

__all__ = ["PreviewResponse", "UpcomingResponse", "router"]

router = APIRouter(prefix="/api/v1/tasks", tags=["任务管理"])

CountQuery = Annotated[int, Query(ge=1, le=100, description="要列出的执行次数，1..100")]


class Span(BaseModel):
    start: str
    end: str


class PreviewResponse(BaseModel):
    timezone: str = Field(description="The zone the times are given in (the task's).")
    upcoming: list[str] = Field(
        description="When the next rounds start (their slot plus jitter), ISO 8601, earliest first."
    )
    slots: list[str] = Field(
        description="The nominal slot of each of those rounds (their identity), aligned."
    )
    windows_24h: list[Span] = Field(description="The open windows of the next 24 hours.")

    @classmethod
    def of(cls, up: Upcoming) -> PreviewResponse:
        return cls(**_fields(up))


class UpcomingResponse(PreviewResponse):
    task_id: str


def _fields(up: Upcoming) -> dict[str, Any]:
    task = up.task
    return {
        "timezone": task.timezone,
        "upcoming": [local_time(task, t) for t in up.starts],
        "slots": [local_time(task, t) for t in up.slots],
        "windows_24h": [
            Span(start=local_time(task, a), end=local_time(task, b)) for a, b in up.windows_24h
        ],
    }


class DayInfo(UpcomingResponse):
    last_run: RunInfo | None = Field(description="The task's latest round, or null.")


class DaysResponse(BaseModel):
    tasks: list[DayInfo] = Field(description="In the order asked; unknown ids left out.")


@router.get(
    "/days",
    summary="多个任务的最近一轮与未来 24 小时",
    description=(
        f"ids 为 1..{DAYS_MAX} 个以逗号分隔的任务 ID（仪表盘的一页）：每个任务的最近一轮执行"
        "记录，以及未来 24 小时内的执行时间（最多 100 次；upcoming、slots、windows_24h 的含义"
        "同 /{task_id}/upcoming）。一次请求代替每个任务两次请求；不存在的 ID 被略去。"
    ),
    responses=error_responses(422),
)
async def days(
    dispatcher: DispatcherDep,
    ids: Annotated[str, Query(description="逗号分隔的任务 ID")],
) -> DaysResponse:
    found = await dispatcher.days([i for i in ids.split(",") if i])
    return DaysResponse(
        tasks=[
            DayInfo(
                task_id=day.upcoming.task.task_id,
                last_run=None
                if day.last_run is None
                else run_info(day.upcoming.task, day.last_run),
                **_fields(day.upcoming),
            )
            for day in found
        ]
    )


@router.post(
    "/preview",
    summary="预览新任务的执行时间",
    description=(
        "按创建任务的请求体计算接下来 count 次执行时间（任务时区的 ISO 时间），不保存任何数据；"
        "校验规则与创建任务相同（但不检查账户是否已有任务）。"
    ),
    responses=error_responses(400),
)
async def preview(
    body: TaskSpec, dispatcher: DispatcherDep, count: CountQuery = 10
) -> PreviewResponse:
    return PreviewResponse.of(await dispatcher.preview(body, count=count))


@router.get(
    "/{task_id}/upcoming",
    summary="接下来的执行时间",
    description=(
        "调度器将安排的接下来 count 次执行时间（任务时区的 ISO 时间），已考虑时间窗口、星期、"
        "停用日期、随机延迟（jitter）与结束时间；slots 为各次的名义时隙，windows_24h 为未来 24 "
        "小时内的可执行时段。"
        "暂停的任务：设置了 until 时从恢复后开始计算，否则为空列表；error / completed 为空列表。"
    ),
    responses=error_responses(404, 422),
)
async def upcoming(
    task_id: str, dispatcher: DispatcherDep, count: CountQuery = 10
) -> UpcomingResponse:
    up = await dispatcher.upcoming(task_id, count=count)
    return UpcomingResponse(task_id=task_id, **_fields(up))
