"""Fleet operations on many tasks at once: bulk actions, import and export.

Included in the app before the tasks router, so `/api/v1/tasks/bulk`, `/import` and
`/export` are never read as task ids by its `/{task_id}` routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.dependencies import ADMIN, OPERATOR, DispatcherDep, PrincipalDep
from api.exceptions import error_responses
from api.models import BulkRequest, BulkResponse, ImportResponse, ImportRowError, bulk_response
from taskdispatch.domain.messages import text
from taskdispatch.domain.transfer import FORMATS, Format, csv_header, csv_line, jsonl_line
from taskdispatch.service.access import Role
from taskdispatch.service.dispatcher import BULK_MAX

__all__ = ["IMPORT_MAX_BYTES", "router"]

router = APIRouter(prefix="/api/v1/tasks", tags=["批量操作"])

# An import file may be larger than other bodies: BULK_MAX rows of up to ~1.6 KiB each.
IMPORT_MAX_BYTES = 16 * 1024 * 1024
# Actions that change what a task is (not only when it runs) need an admin.
_ADMIN_ACTIONS = frozenset({"patch", "delete"})


@router.post(
    "/bulk",
    dependencies=[OPERATOR],
    summary="批量操作",
    description=(
        f"对 select（与列表相同的筛选条件）或 task_ids 选中的任务执行同一操作（最多 {BULK_MAX} 个，"
        "超过返回 422）：pause（可带 until、note）、resume、reorder（priority_offset）、run、"
        "cancel（停止正在执行的轮次，可带 then、note），"
        "以及需要 admin 角色的 patch（patch 为修改任务的请求体）和 delete。每个任务各自原子地修改，"
        "单个任务的 404/409 不影响其他任务，结果逐个列出。"
        "带同一 request_id 重发（如回复丢失后重试）返回第一次的结果，不会重复修改；"
        "dry_run 只回答哪些任务会被修改。"
    ),
    responses=error_responses(403, 422),
)
async def bulk(
    body: BulkRequest, dispatcher: DispatcherDep, principal: PrincipalDep
) -> BulkResponse:
    if body.action in _ADMIN_ACTIONS and not principal.may(Role.ADMIN):
        raise HTTPException(
            403,
            text(
                "forbidden_role",
                needed=Role.ADMIN.label,
                name=principal.name,
                role=principal.role.label,
            ),
        )
    result = await dispatcher.bulk(
        body.action,
        select=body.select.model_dump(exclude_none=True) if body.select is not None else None,
        task_ids=body.task_ids,
        request_id=body.request_id,
        dry_run=body.dry_run,
        until=body.until,
        note=body.note,
        priority_offset=body.priority_offset,
        patch=body.patch,
        then=body.then,
    )
    return bulk_response(result)


_FORMAT_OF_TYPE = {media: fmt for fmt, media in FORMATS.items()}


@router.post(
    "/import",
    dependencies=[ADMIN],
    summary="导入任务",
    description=(
        "请求体为 JSON Lines（Content-Type: application/x-ndjson，每行一个创建任务的请求体）"
        "或 CSV（text/csv，表头为创建任务的字段名；文本字段原样，其余字段写成 JSON）。"
        "每个有效行都会创建任务，无效行逐个报告行号（从 1 开始）和原因。"
        "已有任务的账户默认报错；on_conflict=update 时改为修改该任务。"
        f"最多 {BULK_MAX} 行、16 MiB。导出文件可原样导入。"
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORMATS["jsonl"]: {"schema": {"type": "string"}},
                FORMATS["csv"]: {"schema": {"type": "string"}},
            },
        }
    },
    responses=error_responses(413, 415, 422),
)
async def import_tasks(
    request: Request,
    dispatcher: DispatcherDep,
    on_conflict: Annotated[
        Literal["error", "update"],
        Query(description="error（默认）：已有任务的账户报错；update：修改其任务"),
    ] = "error",
) -> ImportResponse:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    fmt = _FORMAT_OF_TYPE.get(media)
    if fmt is None:
        raise HTTPException(415, text("import_content_type", value=media or "(none)"))
    try:
        data = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, text("import_encoding")) from None
    result = await dispatcher.import_tasks(data, fmt, on_conflict=on_conflict)
    return ImportResponse(
        message=text(
            "import_done",
            created=result.created,
            updated=result.updated,
            failed=len(result.errors),
        ),
        created=result.created,
        updated=result.updated,
        errors=[ImportRowError(line=line, error=error) for line, error in result.errors],
    )


@router.get(
    "/export",
    summary="导出任务",
    description=(
        "按与列表相同的筛选条件导出任务（创建顺序），format=jsonl（默认）或 csv；"
        "每行是可再次导入的创建请求体（含暂停状态）。以流的方式返回，任务数不受限制。"
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {FORMATS["jsonl"]: {}, FORMATS["csv"]: {}},
            "description": "任务定义",
        },
        **error_responses(422),
    },
)
async def export_tasks(
    dispatcher: DispatcherDep,
    format: Annotated[Format, Query(description="jsonl 或 csv")] = "jsonl",
    status: Annotated[str | None, Query()] = None,
    tag: Annotated[str | None, Query()] = None,
    sys_type: Annotated[str | None, Query()] = None,
    task_type: Annotated[str | None, Query()] = None,
    queue: Annotated[str | None, Query(description="任务自己的队列 queue")] = None,
    q: Annotated[str | None, Query(description="账户 ID 或名称的前缀")] = None,
) -> StreamingResponse:
    filters = {
        "status": status,
        "tag": tag,
        "sys_type": sys_type,
        "task_type": task_type,
        "queue": queue,
        "q": q,
    }
    rows = dispatcher.export_tasks(**{k: v for k, v in filters.items() if v is not None})
    # The first row is read before answering: a bad filter is then a 422, not a cut stream.
    first = await anext(rows, None)

    line = csv_line if format == "csv" else jsonl_line

    async def lines() -> AsyncIterator[str]:
        if format == "csv":
            yield csv_header()
        if first is not None:
            yield line(first)
        async for row in rows:
            yield line(row)

    return StreamingResponse(
        lines(),
        media_type=f"{FORMATS[format]}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tasks.{format}"'},
    )
