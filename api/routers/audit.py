"""/api/v1/audit and /api/v1/tasks/{task_id}/audit: who changed what, when; and
/api/v1/me: who the caller is (the dashboard shows only what its role may do)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.dependencies import DispatcherDep, PrincipalDep
from api.exceptions import error_responses
from api.models import (
    AuditPageResponse,
    PrincipalInfo,
    TaskAuditResponse,
    audit_entry_info,
)
from taskdispatch.domain.validation import timezone

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["审计"])


@router.get(
    "/audit",
    summary="审计记录",
    description=(
        "所有修改（创建、修改、暂停、恢复、调整优先级、立即执行、删除、批量操作、导入、"
        "调度器启停、限流规则）的记录，最新在前：谁（令牌名称）、何时、修改了哪些字段"
        "（修改前后的值）、备注。可按 actor、action、task_id 与时间（since、until，ISO 时间）"
        "筛选；用返回的 next_before 作为 before 取更早的一页。"
    ),
    responses=error_responses(422),
)
async def audit_log(
    dispatcher: DispatcherDep,
    actor: Annotated[str | None, Query(description="令牌名称")] = None,
    action: Annotated[str | None, Query(description="如 pause、bulk.pause、limit.put")] = None,
    task_id: Annotated[str | None, Query()] = None,
    since: Annotated[str | None, Query(description="ISO 时间（含）")] = None,
    until: Annotated[str | None, Query(description="ISO 时间（含）")] = None,
    before: Annotated[str | None, Query(description="上一页的 next_before")] = None,
    limit: Annotated[int, Query(description="1..1000")] = 100,
) -> AuditPageResponse:
    entries, next_before = await dispatcher.audit_log(
        actor=actor,
        action=action,
        task_id=task_id,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    tz = timezone(dispatcher.settings.timezone)
    return AuditPageResponse(
        entries=[audit_entry_info(e, tz=tz) for e in entries], next_before=next_before
    )


@router.get(
    "/tasks/{task_id}/audit",
    summary="任务的审计记录",
    description="该任务的修改记录，最新在前（每个任务保留的条数有上限）。",
    responses=error_responses(404, 422),
)
async def task_audit(
    task_id: str,
    dispatcher: DispatcherDep,
    limit: Annotated[int, Query(description="1..1000")] = 100,
) -> TaskAuditResponse:
    entries = await dispatcher.task_audit(task_id, limit=limit)
    tz = timezone(dispatcher.settings.timezone)
    return TaskAuditResponse(task_id=task_id, entries=[audit_entry_info(e, tz=tz) for e in entries])


@router.get(
    "/me",
    tags=["认证"],
    summary="当前令牌",
    description="请求所带令牌的名称与角色（viewer、operator、admin）；未配置令牌时为 anonymous。",
)
async def me(principal: PrincipalDep) -> PrincipalInfo:
    return PrincipalInfo(name=principal.name, role=principal.role.label)
