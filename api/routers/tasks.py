"""/api/v1/tasks: create, list, read, change, delete, pause, resume, reorder tasks, and run or
stop their rounds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from api.dependencies import ADMIN, OPERATOR, DispatcherDep
from api.exceptions import error_responses
from api.models import (
    TaskActionResponse,
    TaskCancelRequest,
    TaskCancelResponse,
    TaskChange,
    TaskDetail,
    TaskListResponse,
    TaskPauseRequest,
    TaskPauseResponse,
    TaskReorderRequest,
    TaskReorderResponse,
    TaskResumeResponse,
    TaskRunNowResponse,
    TaskRunsResponse,
    TaskSavedResponse,
    TaskSpec,
    json_answer,
    local_time,
    run_info,
    task_fields,
    task_info,
)
from taskdispatch.domain.messages import text

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tasks", tags=["任务管理"])


# Both "/api/v1/tasks" and "/api/v1/tasks/": clients differ, and a redirect would make
# some of them drop the body or the Authorization header.
@router.post(
    "/",
    dependencies=[ADMIN],
    summary="创建任务",
    description=(
        "为一个账户创建周期任务；同一账户只能有一个任务。首次执行时间为创建时间加 interval"
        "（或 start_at），并移入 valid_time_range 时间窗口。"
    ),
    responses=error_responses(400),
)
@router.post("", include_in_schema=False, dependencies=[ADMIN])
async def create_task(body: TaskSpec, dispatcher: DispatcherDep) -> TaskSavedResponse:
    task = await dispatcher.create_task(body)
    [reason] = await dispatcher.waiting_reasons([task])
    return TaskSavedResponse(
        message=text("task_created"), task_id=task.task_id, task_info=task_info(task, reason=reason)
    )


@router.get(
    "/",
    summary="列出所有任务",
    description=(
        "分页列出任务，可按 account_id、status、tag、sys_type、task_type、queue 过滤，按 q 搜索"
        "账户 ID 或名称的前缀，条件可组合；sort=created（默认）按创建顺序，sort=next 按下次"
        "执行时间（只含有下次执行的任务）；"
        "total 为所有匹配的任务数。limit 取 1..1000，offset >= 0。"
    ),
    response_model=TaskListResponse,
    responses=error_responses(422),
)
@router.get("", include_in_schema=False, response_model=TaskListResponse)
async def list_tasks(
    dispatcher: DispatcherDep,
    account_id: Annotated[str | None, Query(description="只列出该账户的任务")] = None,
    status: Annotated[
        str | None, Query(description="pending / running / paused / completed / error")
    ] = None,
    tag: Annotated[str | None, Query(description="只列出带该标签的任务")] = None,
    sys_type: Annotated[str | None, Query(description="只列出该 sys_type 的任务")] = None,
    task_type: Annotated[str | None, Query(description="只列出该 task_type 的任务")] = None,
    queue: Annotated[
        str | None, Query(description="只列出自己的队列 queue 为该值的任务（不含按规则路由的）")
    ] = None,
    q: Annotated[str | None, Query(description="账户 ID 或名称的前缀（不区分大小写）")] = None,
    sort: Annotated[
        str, Query(description="created（创建顺序，默认）或 next（下次执行时间，最早在前）")
    ] = "created",
    limit: Annotated[int, Query(description="每页数量，1..1000")] = 100,
    offset: Annotated[int, Query(description="跳过的任务数，>= 0")] = 0,
) -> Response:
    total, page = await dispatcher.read_page(
        account_id=account_id,
        status=status,
        tag=tag,
        sys_type=sys_type,
        task_type=task_type,
        queue=queue,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    tasks = [task_fields(t, reason=r, progress=p) for t, r, p in page]
    return json_answer({"total": total, "tasks": tasks})


@router.get(
    "/{task_id}",
    summary="获取任务详情",
    description="任务的全部字段，包括运行参数 kwargs。",
    response_model=TaskDetail,
    responses=error_responses(404),
)
async def get_task(task_id: str, dispatcher: DispatcherDep) -> Response:
    task, reason, progress = await dispatcher.read_one(task_id)
    return json_answer(task_fields(task, detail=True, reason=reason, progress=progress))


@router.patch(
    "/{task_id}",
    dependencies=[ADMIN],
    summary="修改任务",
    description=(
        "只修改请求体中出现的字段；显式 null 表示清除（task_end_time、user_* 参数）。"
        "修改 interval、时间窗口、时区或结束时间会重新计算下次执行时间，任务状态不变。"
        "修改 queue 从下一轮起生效（已发往旧队列、尚未开始的轮次改发到新队列）；"
        "queue 为 null 表示恢复按 sys_type 规则或默认队列。"
    ),
    responses=error_responses(404),
)
async def update_task(
    task_id: str, body: TaskChange, dispatcher: DispatcherDep
) -> TaskSavedResponse:
    task = await dispatcher.update_task(task_id, body)
    [reason] = await dispatcher.waiting_reasons([task])
    return TaskSavedResponse(
        message=text("task_updated"), task_id=task_id, task_info=task_info(task, reason=reason)
    )


@router.delete(
    "/{task_id}",
    dependencies=[ADMIN],
    summary="删除任务",
    description="删除任务及其执行记录；正在执行的轮次结束后不会再被调度。",
    responses=error_responses(404),
)
async def delete_task(task_id: str, dispatcher: DispatcherDep) -> TaskActionResponse:
    await dispatcher.delete_task(task_id)
    return TaskActionResponse(message=text("task_deleted"), task_id=task_id)


@router.post(
    "/{task_id}/pause",
    dependencies=[OPERATOR],
    summary="暂停任务",
    description=(
        "将 pending 或 running 的任务移出调度；正在执行的轮次会完成，但不再排下一轮。"
        "请求体可省略；until（ISO 时间，无时区时按任务时区）到时自动恢复，note 为暂停说明，"
        "两者都显示在任务详情的 paused_until / pause_note 中。"
    ),
    responses=error_responses(404, 409),
)
async def pause_task(
    task_id: str,
    dispatcher: DispatcherDep,
    # Optional: the document's pause has no body, and clients that send none keep working.
    body: Annotated[TaskPauseRequest | None, Body()] = None,
) -> TaskPauseResponse:
    options = body or TaskPauseRequest()
    task = await dispatcher.pause_task(task_id, until=options.until, note=options.note)
    return TaskPauseResponse(message=text("task_paused"), task_id=task_id, status=task.status)


@router.post(
    "/{task_id}/cancel",
    dependencies=[OPERATOR],
    summary="停止正在执行的轮次",
    description=(
        "中断任务正在执行的轮次：处理函数在约 1 秒内收到中断（其 finally 会执行），忽略中断超过 "
        "TASKDISPATCH_CANCEL_GRACE_S 秒的处理进程会被终止。该轮次记录为 cancelled（不计入失败次数，"
        "不会重跑），账户锁和限流名额立即释放。then 为 next（默认）时按计划执行下一轮，为 pause "
        "时任务暂停。没有正在执行的轮次时返回 409。"
    ),
    responses=error_responses(404, 409),
)
async def cancel_round(
    task_id: str,
    dispatcher: DispatcherDep,
    body: Annotated[TaskCancelRequest | None, Body()] = None,
) -> TaskCancelResponse:
    options = body or TaskCancelRequest()
    task = await dispatcher.cancel_round(task_id, then=options.then, note=options.note)
    assert task.run_id is not None
    return TaskCancelResponse(
        message=text("task_cancelled"), task_id=task_id, status=task.status, run_id=task.run_id
    )


@router.post(
    "/{task_id}/resume",
    dependencies=[OPERATOR],
    summary="恢复任务",
    description=(
        "恢复 paused 或 error 的任务：未来的下次执行时间保持不变，否则立即（在时间窗口内）执行。"
    ),
    responses=error_responses(404, 409),
)
async def resume_task(task_id: str, dispatcher: DispatcherDep) -> TaskResumeResponse:
    task = await dispatcher.resume_task(task_id)
    return TaskResumeResponse(
        message=text("task_resumed"),
        task_id=task_id,
        status=task.status,
        next_execution_time=local_time(task, task.next_ms),
    )


@router.post(
    "/{task_id}/reorder",
    dependencies=[OPERATOR],
    summary="调整任务优先级",
    description=(
        "下次执行时间加上 priority_offset 秒：负数提前（不早于当前时间），正数延后，"
        "结果移入时间窗口。任务正在运行时返回 409。"
    ),
    responses=error_responses(404, 409),
)
async def reorder_task(
    task_id: str, body: TaskReorderRequest, dispatcher: DispatcherDep
) -> TaskReorderResponse:
    task = await dispatcher.reorder_task(task_id, body.priority_offset)
    return TaskReorderResponse(
        message=text("task_reordered"),
        task_id=task_id,
        new_next_execution_time=local_time(task, task.next_ms),
    )


@router.post(
    "/{task_id}/run",
    dependencies=[OPERATOR],
    summary="立即执行一轮",
    description=(
        "将 pending 任务的下次执行时间设为现在（在时间窗口内），beat 会在一秒内派发。"
        "任务正在运行时返回 409；paused / error / completed 的任务需先恢复。"
    ),
    responses=error_responses(404, 409),
)
async def run_task_now(task_id: str, dispatcher: DispatcherDep) -> TaskRunNowResponse:
    task = await dispatcher.run_now(task_id)
    return TaskRunNowResponse(
        message=text("task_run_now"),
        task_id=task_id,
        next_execution_time=local_time(task, task.next_ms),
    )


@router.get(
    "/{task_id}/runs",
    summary="任务执行记录",
    description=(
        "最近的执行记录（最新在前）：计划时间、开始/结束时间、耗时、结果 ok/failed/skipped/lost、"
        "错误、执行的 worker 与返回值。每个任务保留的条数由 TASKDISPATCH_RUNS_KEPT 决定。"
    ),
    responses=error_responses(404, 422),
)
async def task_runs(
    task_id: str,
    dispatcher: DispatcherDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="最多返回条数")] = 50,
) -> TaskRunsResponse:
    task = await dispatcher.get_task(task_id)
    records = await dispatcher.runs(task_id, limit=limit)
    return TaskRunsResponse(task_id=task_id, runs=[run_info(task, r) for r in records])
