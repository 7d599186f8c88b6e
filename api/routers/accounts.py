"""/api/v1/accounts: tasks by account (one task per account, so at most one)."""

from __future__ import annotations

from fastapi import APIRouter

from api.dependencies import DispatcherDep
from api.models import AccountTasksResponse, task_info

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/accounts", tags=["账户管理"])


@router.get(
    "/{account_id}/tasks",
    summary="获取账户的任务列表",
    description="同一账户最多只有一个任务；账户没有任务时 total 为 0。",
)
async def account_tasks(account_id: str, dispatcher: DispatcherDep) -> AccountTasksResponse:
    tasks = await dispatcher.account_tasks(account_id)
    found = await dispatcher.read([t.task_id for t in tasks])
    return AccountTasksResponse(
        account_id=account_id,
        total=len(found),
        tasks=[task_info(t, reason=r, progress=p) for t, r, p in found],
    )
