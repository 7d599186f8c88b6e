"""/api/v1/notifications: where alerts go (taskdispatch/store/notifications.py, notifier.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.dependencies import ADMIN, DispatcherDep
from api.exceptions import error_responses
from api.models import (
    ActionResponse,
    NotificationDetail,
    NotificationListResponse,
    NotificationRequest,
    NotificationSavedResponse,
    NotificationTestResponse,
    attempt_info,
    notification_info,
)
from taskdispatch.domain.messages import text
from taskdispatch.domain.validation import timezone

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/notifications", tags=["告警通知"])


@router.get(
    "/",
    summary="列出通知",
    description="所有告警通知（按名称排序）；secret 从不返回，has_secret 表示是否签名。",
)
@router.get("", include_in_schema=False)
async def list_notifications(dispatcher: DispatcherDep) -> NotificationListResponse:
    tz = timezone(dispatcher.settings.timezone)
    found = await dispatcher.list_notifications()
    return NotificationListResponse(notifications=[notification_info(n, tz=tz) for n in found])


@router.put(
    "/{name}",
    dependencies=[ADMIN],
    summary="创建或修改通知",
    description=(
        "url 接收告警（http/https，不跟随重定向）；events 选择事件；format 选择消息格式"
        "（json、wecom、dingtalk、feishu、slack）；secret 用于签名（不给出则保留原有 secret，"
        "null 删除）；match 只接收带有其中任一标签（tags）和/或在该队列（queue）上的任务的事件；"
        "同类事件在 group_window_s 秒内合并为一条消息。修改从下一个事件起生效。"
    ),
    responses=error_responses(422),
)
async def put_notification(
    name: str, body: NotificationRequest, dispatcher: DispatcherDep
) -> NotificationSavedResponse:
    saved = await dispatcher.put_notification(name, body.model_dump(exclude_unset=True))
    tz = timezone(dispatcher.settings.timezone)
    return NotificationSavedResponse(
        message=text("notification_saved"), notification=notification_info(saved, tz=tz)
    )


@router.get(
    "/{name}",
    summary="获取通知",
    description="一条通知及其最近的投递记录（时间、事件、状态码、尝试次数、错误）。",
    responses=error_responses(404, 422),
)
async def get_notification(name: str, dispatcher: DispatcherDep) -> NotificationDetail:
    tz = timezone(dispatcher.settings.timezone)
    found, recent = await dispatcher.get_notification(name)
    return NotificationDetail(
        **notification_info(found, tz=tz).model_dump(),
        recent_deliveries=[attempt_info(a, tz=tz) for a in recent],
    )


@router.delete(
    "/{name}",
    dependencies=[ADMIN],
    summary="删除通知",
    description="删除通知及其未发出的消息与投递记录。",
    responses=error_responses(404, 422),
)
async def delete_notification(name: str, dispatcher: DispatcherDep) -> ActionResponse:
    await dispatcher.delete_notification(name)
    return ActionResponse(message=text("notification_deleted"))


@router.post(
    "/{name}/test",
    dependencies=[ADMIN],
    summary="发送测试通知",
    description=(
        "立即经由正常的投递路径发送一条 test 事件（同样的格式、签名与重试）；"
        "返回其投递 ID，结果见 GET 的 recent_deliveries。"
    ),
    responses=error_responses(404, 422),
)
async def test_notification(name: str, dispatcher: DispatcherDep) -> NotificationTestResponse:
    delivery_id = await dispatcher.test_notification(name)
    return NotificationTestResponse(
        message=text("notification_test_queued"), delivery_id=delivery_id
    )
