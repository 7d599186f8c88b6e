"""The wire format: request bodies, response bodies and the one Task -> TaskInfo converter.

The request bodies that change tasks live in `taskdispatch.domain.bodies` (bulk actions, imports
and Python callers take the same ones: `TaskSpec` and `TaskChange` check every value as
they are parsed) and are re-exported here; the others check types and shape only, and
what the values mean is validated by the dispatcher, so the Python API and the REST API
reject the same input with the same messages.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, overload
from zoneinfo import ZoneInfo

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from taskdispatch.domain.bodies import (
    NotificationMatch,
    NotificationRequest,
    StrictBody,
    TaskCancelRequest,
    TaskChange,
    TaskPauseRequest,
    TaskReorderRequest,
    TaskSpec,
    Text,
)
from taskdispatch.domain.lifecycle import due_at, is_cancelling
from taskdispatch.domain.messages import text
from taskdispatch.domain.models import Outcome, Task, TaskStatus, outside_view
from taskdispatch.domain.schedule import to_local_iso
from taskdispatch.service.dispatcher import BulkResult
from taskdispatch.store.audit import AuditEntry
from taskdispatch.store.history import RunRecord
from taskdispatch.store.notifications import Attempt, Notification
from taskdispatch.store.progress import RoundProgress
from taskdispatch.store.tasks import LimitView

__all__ = [
    "AccountTasksResponse",
    "ActionResponse",
    "AuditEntryInfo",
    "AuditPageResponse",
    "BulkRequest",
    "BulkResponse",
    "Component",
    "ConsistencyResponse",
    "CurrentRound",
    "DeliveryAttemptInfo",
    "DispatcherStatusResponse",
    "ErrorDetail",
    "ErrorResponse",
    "HealthResponse",
    "ImportResponse",
    "LimitInfo",
    "LimitListResponse",
    "LimitMatch",
    "LimitRequest",
    "LimitSavedResponse",
    "NotificationDetail",
    "NotificationInfo",
    "NotificationListResponse",
    "NotificationMatch",
    "NotificationRequest",
    "NotificationSavedResponse",
    "NotificationTestResponse",
    "PrincipalInfo",
    "ReadinessResponse",
    "RunInfo",
    "RunningRound",
    "TaskActionResponse",
    "TaskAuditResponse",
    "TaskCancelRequest",
    "TaskCancelResponse",
    "TaskChange",
    "TaskDetail",
    "TaskInfo",
    "TaskListResponse",
    "TaskPauseRequest",
    "TaskPauseResponse",
    "TaskReorderRequest",
    "TaskReorderResponse",
    "TaskResumeResponse",
    "TaskRunNowResponse",
    "TaskRunsResponse",
    "TaskSavedResponse",
    "TaskSpec",
    "WaitingReason",
    "attempt_info",
    "audit_entry_info",
    "bulk_response",
    "current_round_fields",
    "json_answer",
    "limit_info",
    "local_time",
    "notification_info",
    "run_info",
    "task_fields",
    "task_info",
    "waiting_reason_fields",
]


# Waiting reasons: one model per code, so each code documents exactly the details it carries.
class _Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PausedReason(_Reason):
    code: Literal["paused"]
    until: str | None = Field(description="When it resumes by itself, or null (manual resume).")
    note: str | None


class ErrorReason(_Reason):
    code: Literal["error"]
    last_error: str | None


class NoWorkerReason(_Reason):
    code: Literal["no_worker_for_queue"]
    queue: str = Field(description="The Celery queue no live worker consumes.")


class BacklogReason(_Reason):
    code: Literal["backlog"]
    waiting_s: float = Field(description="How long it has been due without being dispatched.")


class OutsideWindowReason(_Reason):
    code: Literal["outside_window"]
    window_opens: str | None = Field(description="Next start of a window.")


class CalendarDayReason(_Reason):
    """Today is not a day the windows apply: a weekday off, or a blackout date."""

    code: Literal["weekday", "blackout"]
    next_run: str | None = Field(description="When the next run is (null: none scheduled).")
    date: str | None = Field(description="The local date the next run falls on.")


class LimitFullReason(_Reason):
    code: Literal["limit_full"]
    limit: str = Field(description="The limit whose places are all taken.")
    in_use: int = Field(description="Rounds holding a place in it now.")
    capacity: int | None = Field(description="Its max_concurrent.")


class RateLimitedReason(_Reason):
    code: Literal["rate_limited"]
    limit: str = Field(description="The limit whose starts in its window are used up.")
    next_start: str | None = Field(description="When its next start is free.")


class PlainReason(_Reason):
    code: Literal["dispatcher_stopped", "account_locked", "completed"]


WaitingReason = Annotated[
    PausedReason
    | ErrorReason
    | NoWorkerReason
    | BacklogReason
    | OutsideWindowReason
    | CalendarDayReason
    | LimitFullReason
    | RateLimitedReason
    | PlainReason,
    Field(discriminator="code"),
]


class CurrentRound(BaseModel):
    """The round in progress: where it runs, since when, and what its handler last reported
    (`ctx.progress`)."""

    worker: str | None = Field(description="Worker running the round.")
    started_at: str | None = Field(description="When the round started.")
    progress: str | None = Field(
        description="The handler's latest progress message (at most 200 characters), or null "
        "when it reported none."
    )
    fraction: float | None = Field(description="The share of the round done, 0..1, if reported.")
    progress_at: str | None = Field(description="When the handler last reported progress.")
    stopping: bool = Field(
        False,
        description="An operator asked this round to stop (POST /cancel); it ends cancelled.",
    )


class TaskInfo(BaseModel):
    """A task as the API shows it; times are ISO 8601 in the task's time zone."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_id": "550e8400-e29b-41d4-a716-446655440000",
                    "account_id": "account_1",
                    "account_name": "账号1",
                    "task_type": "xhs_type",
                    "status": "pending",
                    "interval": 3600,
                    "valid_time_range": [8, 22],
                    "task_end_time": "2026-02-08",
                    "last_execution_time": "2026-01-08T10:30:00+08:00",
                    "next_execution_time": "2026-01-08T11:30:00+08:00",
                    "created_at": "2026-01-08T09:00:00+08:00",
                    "updated_at": "2026-01-08T10:30:00+08:00",
                    "round_num": 5,
                    "sys_type": "mac_intel",
                    "timezone": "Asia/Shanghai",
                    "failures": 0,
                    "last_error": None,
                    "started_at": None,
                    "worker": None,
                    "paused_until": None,
                    "pause_note": None,
                    "waiting_reason": {
                        "code": "outside_window",
                        "window_opens": "2026-01-09T08:00:00+08:00",
                    },
                }
            ]
        }
    )

    task_id: str
    account_id: str
    account_name: str
    task_type: str
    status: TaskStatus
    interval: int = Field(description="Seconds between rounds.")
    valid_time_range: list[int] | None = Field(
        description="The windows as whole hours [start, end], or null when they are not one "
        "whole-hour range (see windows)."
    )
    task_end_time: str | None = Field(description="The end as given at creation, or null.")
    last_execution_time: str | None
    next_execution_time: str | None
    created_at: str
    updated_at: str
    round_num: int = Field(description="Rounds started so far.")
    sys_type: str
    timezone: str
    failures: int = Field(description="Consecutive failed rounds.")
    last_error: str | None
    started_at: str | None = Field(description="Start of the round in progress, if running.")
    worker: str | None = Field(description="Worker running the round in progress.")
    paused_until: str | None = Field(description="When a paused task resumes by itself.")
    pause_note: str | None = Field(description="The note given when pausing.")
    waiting_reason: WaitingReason | None = Field(
        description="Why the task is not about to run; null when it runs or runs at its next slot."
    )
    windows: list[str] = Field(description="Local 'HH:MM-HH:MM' ranges (merged).")
    weekdays: list[int] = Field(description="ISO weekdays on which the windows apply.")
    blackout_dates: list[str] = Field(description="Dates or inclusive ranges 'A..B'.")
    jitter_s: int
    max_runs: int | None
    remaining_runs: int | None = Field(description="Rounds left under max_runs, or null.")
    misfire_policy: Literal["run_once", "skip"]
    misfire_grace_s: int
    tags: list[str] = Field(description="Labels limits match.")
    queue: str | None = Field(
        description="The task's own Celery queue; null: the sys_type rule or the default queue."
    )
    next_start: str | None = Field(
        description="When the next round really starts: next_execution_time plus its jitter."
    )
    current_round: CurrentRound | None = Field(
        None,
        description="The round in progress with its live progress; null when no round runs. "
        "Task reads (GET one, the list) carry the progress; the answers of create and PATCH "
        "leave it null.",
    )


class TaskDetail(TaskInfo):
    """A task with its run parameters (GET /api/v1/tasks/{task_id})."""

    # Without its own config, mypy reports a bogus no-redef for a subclass field named
    # `kwargs` (pydantic issue #3125); forbidding extras is harmless on a response model.
    model_config = ConfigDict(extra="forbid")

    kwargs: dict[str, Any] = Field(description="Run parameters the handler receives.")


class TaskListResponse(BaseModel):
    total: int = Field(description="All tasks matching the filters, not just this page.")
    tasks: list[TaskInfo]


class AccountTasksResponse(TaskListResponse):
    account_id: str


class ActionResponse(BaseModel):
    success: bool = True
    message: str


class TaskActionResponse(ActionResponse):
    task_id: str


class TaskSavedResponse(TaskActionResponse):
    task_info: TaskInfo


class TaskPauseResponse(TaskActionResponse):
    status: TaskStatus


class TaskCancelResponse(TaskPauseResponse):
    run_id: str = Field(description="The round asked to stop (its record says `cancelled`).")


class TaskResumeResponse(TaskPauseResponse):
    next_execution_time: str | None


class TaskReorderResponse(TaskActionResponse):
    new_next_execution_time: str | None


class LimitMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Text | None = Field(None, description="Tasks carrying this tag.")
    sys_type: Text | None = Field(None, description="Tasks of this sys_type.")
    task_type: Text | None = Field(None, description="Tasks of this task_type.")


class LimitRequest(StrictBody):
    """A limit: among the tasks it matches (all criteria given must hold; none: every
    task), at most max_concurrent rounds at once and/or max_starts starts per per_s."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"match": {"tag": "device:mac-01"}, "max_concurrent": 2},
                {"match": {"sys_type": "mac_intel"}, "max_starts": 30, "per_s": 3600},
            ]
        },
    )

    match: LimitMatch = Field(default_factory=LimitMatch)
    max_concurrent: StrictInt | None = Field(None, description="Rounds running at once.")
    max_starts: StrictInt | None = Field(None, description="Starts in any window of per_s.")
    per_s: StrictInt | None = Field(None, description="The window of max_starts, in seconds.")


class LimitInfo(BaseModel):
    name: str
    match: LimitMatch
    max_concurrent: int | None
    max_starts: int | None
    per_s: int | None
    in_use: int = Field(description="Rounds holding a place now.")
    waiting: int = Field(description="Rounds waiting for a place or a start.")
    starts_in_window: int | None = Field(description="Starts in the last per_s seconds.")
    next_start: str | None = Field(description="When the next start is free (window full).")
    created_at: str
    updated_at: str


class LimitListResponse(BaseModel):
    limits: list[LimitInfo] = Field(description="In name order.")


class LimitSavedResponse(ActionResponse):
    limit: LimitInfo


class NotificationInfo(BaseModel):
    name: str
    url: str
    events: list[str]
    format: str
    has_secret: bool = Field(description="Whether messages are signed (the secret is never shown).")
    match: NotificationMatch
    overdue_after_s: int
    group_window_s: int
    created_at: str
    updated_at: str


class DeliveryAttemptInfo(BaseModel):
    at: str = Field(description="When the attempt ended.")
    event: str
    delivery_id: str = Field(description="The X-Taskdispatch-Delivery header, the same on retries.")
    outcome: Literal["delivered", "retrying", "given_up"]
    attempts: int = Field(description="Attempts made for this delivery so far.")
    status_code: int | None = Field(description="The receiver's HTTP status (null: none came).")
    error: str | None
    next_attempt_at: str | None = Field(description="When it is tried again (retrying).")


class NotificationDetail(NotificationInfo):
    recent_deliveries: list[DeliveryAttemptInfo] = Field(description="Newest first.")


class NotificationListResponse(BaseModel):
    notifications: list[NotificationInfo] = Field(description="In name order.")


class NotificationSavedResponse(ActionResponse):
    notification: NotificationInfo


class NotificationTestResponse(ActionResponse):
    delivery_id: str = Field(description="The test message's delivery id.")


class RunningRound(BaseModel):
    task_id: str
    account_id: str
    started_at: str | None
    worker: str | None


class DispatcherStatusResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "is_running": True,
                    "total_tasks": 5,
                    "pending_tasks": 3,
                    "running_tasks": 1,
                    "paused_tasks": 1,
                    "completed_tasks": 0,
                    "error_tasks": 0,
                    "current_running_task": {
                        "task_id": "550e8400-e29b-41d4-a716-446655440000",
                        "account_id": "account_1",
                        "started_at": "2026-01-08T10:30:00+08:00",
                        "worker": "celery@host-1",
                    },
                    "enabled": True,
                    "beats_alive": 1,
                    "running_rounds": [
                        {
                            "task_id": "550e8400-e29b-41d4-a716-446655440000",
                            "account_id": "account_1",
                            "started_at": "2026-01-08T10:30:00+08:00",
                            "worker": "celery@host-1",
                        }
                    ],
                }
            ]
        }
    )

    is_running: bool = Field(description="The dispatcher is enabled and a beat is alive.")
    total_tasks: int
    pending_tasks: int
    running_tasks: int
    paused_tasks: int
    completed_tasks: int
    error_tasks: int
    current_running_task: RunningRound | None = Field(
        description="The earliest-started round in progress."
    )
    enabled: bool = Field(description="The start/stop flag every beat obeys.")
    beats_alive: int = Field(description="Beats with a recent heartbeat.")
    workers_alive: int = Field(description="Celery workers with a recent heartbeat.")
    running_rounds: list[RunningRound] = Field(description="Every round in progress, oldest first.")
    due_backlog: int = Field(
        description="Tasks due now that no beat has claimed yet, plus the messages waiting in "
        "queues no live worker consumes (unconsumed_queues)."
    )
    unconsumed_queues: dict[str, int] = Field(
        description="Per queue a beat published rounds to that no live worker consumes: the "
        "messages waiting in it (a slot re-claimed meanwhile counts once per copy). Read when "
        "the broker is the task store's Redis; else empty."
    )
    scheduling_lag_s: float = Field(
        description="How long the oldest unclaimed due task has waited (0 when none waits)."
    )
    limits: list[LimitInfo] = Field(description="Every limit with its use now.")


class ConsistencyResponse(BaseModel):
    consistent: bool
    problems: list[str] = Field(description="Each disagreement between a task and an index.")


class RunInfo(BaseModel):
    """One round (or skipped or lost slot) of a task; times in the task's time zone."""

    outcome: Outcome
    round_num: int | None
    scheduled_for: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    reason: str | None = Field(description="Why a slot was skipped or lost.")
    error: str | None
    worker: str | None
    result: Any = Field(description="What the handler returned (JSON).")
    cancelled_by: str | None = Field(
        None, description="Who stopped a cancelled round: a token's name or a Celery command."
    )
    note: str | None = Field(None, description="The note given when the round was stopped.")


class TaskRunsResponse(BaseModel):
    task_id: str
    runs: list[RunInfo] = Field(description="Newest first, capped per task.")


class TaskRunNowResponse(TaskActionResponse):
    next_execution_time: str | None


class HealthResponse(BaseModel):
    status: Literal["healthy"]
    timestamp: str
    version: str


Component = Literal["redis", "beats", "workers"]


class ReadinessResponse(BaseModel):
    """GET /api/v1/health/ready: 200 while Redis answers, 503 (same shape) when it does not."""

    status: Literal["ready", "unavailable"]
    timestamp: str
    version: str
    redis: bool = Field(description="Redis answered within the probe's timeout.")
    beats_alive: int | None = Field(description="Beats with a fresh heartbeat; null if unknown.")
    workers_alive: int | None = Field(
        description="Workers with a fresh heartbeat (proof that they consume); null if unknown."
    )
    down: list[Component] = Field(
        description="What is not working: redis (then 503), or no live beat / worker (still 200)."
    )


class ErrorDetail(BaseModel):
    field: str
    message: str
    detail: str | None = Field(None, description="English technical detail, where it helps.")


class ErrorResponse(BaseModel):
    """Every error body; `details` only for validation errors."""

    success: Literal[False] = False
    error: str
    details: list[ErrorDetail] | None = None


@overload
def local_time(task: Task, t_ms: int) -> str: ...
@overload
def local_time(task: Task, t_ms: int | None) -> str | None: ...
def local_time(task: Task, t_ms: int | None) -> str | None:
    """An instant of this task as ISO 8601 with the offset of the task's own time zone."""
    return to_local_iso(t_ms, ZoneInfo(task.timezone))


def waiting_reason_fields(task: Task, reason: dict[str, Any] | None) -> dict[str, Any] | None:
    """`reasons.waiting_reason`'s answer for humans (the fields of its WaitingReason model):
    instants as ISO in the task's zone."""
    if reason is None:
        return None
    fields = dict(reason)
    if "until_ms" in fields:
        fields["until"] = local_time(task, fields.pop("until_ms"))
    if "window_opens_ms" in fields:
        fields["window_opens"] = local_time(task, fields.pop("window_opens_ms"))
    if "next_run_ms" in fields:
        next_ms = fields.pop("next_run_ms")
        fields["next_run"] = local_time(task, next_ms)
        fields["date"] = None if next_ms is None else fields["next_run"][:10]
    if "waiting_ms" in fields:
        fields["waiting_s"] = fields.pop("waiting_ms") / 1000
    if "next_start_ms" in fields:
        fields["next_start"] = local_time(task, fields.pop("next_start_ms"))
    return fields


def current_round_fields(task: Task, progress: RoundProgress | None) -> dict[str, Any] | None:
    """The CurrentRound of a task whose round runs (None otherwise), with `progress` when the
    read found the round's own."""
    if task.run_id is None:
        return None
    tz = ZoneInfo(task.timezone)
    shown = progress if progress is not None and progress.run_id == task.run_id else None
    return {
        "worker": task.worker,
        "started_at": to_local_iso(task.started_ms, tz),
        "progress": None if shown is None else shown.message,
        "fraction": None if shown is None else shown.fraction,
        "progress_at": None if shown is None else to_local_iso(shown.at_ms, tz),
        "stopping": is_cancelling(task),
    }


def task_fields(
    task: Task,
    *,
    detail: bool = False,
    reason: dict[str, Any] | None = None,
    progress: RoundProgress | None = None,
) -> dict[str, Any]:
    """The API view of a task as JSON values: the fields of TaskInfo (TaskDetail with
    `detail`); `reason` is `reasons.waiting_reason`'s answer (None = none), `progress` the
    latest progress of its round in progress (None = none known).

    The hot reads answer these as they are (`json_answer`), with no model in between:
    every value comes from a stored, validated task, and a page holds a hundred of them."""
    view = outside_view(task)
    fields = {name: view[name] for name in _INFO_HEAD}
    fields["waiting_reason"] = waiting_reason_fields(task, reason)
    fields.update((name, view[name]) for name in _INFO_TAIL)
    fields["next_start"] = (
        to_local_iso(due_at(task), ZoneInfo(task.timezone)) if task.next_ms is not None else None
    )
    fields["current_round"] = current_round_fields(task, progress)
    if detail:
        fields["kwargs"] = view["kwargs"]
    return fields


# TaskInfo's fields taken from `outside_view` as they are: those before its waiting_reason,
# and those between it and next_start.
_INFO_NAMES = tuple(TaskInfo.model_fields)
_INFO_HEAD = _INFO_NAMES[: _INFO_NAMES.index("waiting_reason")]
_INFO_TAIL = _INFO_NAMES[_INFO_NAMES.index("waiting_reason") + 1 : _INFO_NAMES.index("next_start")]


@overload
def task_info(
    task: Task,
    *,
    detail: Literal[False] = False,
    reason: dict[str, Any] | None = None,
    progress: RoundProgress | None = None,
) -> TaskInfo: ...
@overload
def task_info(
    task: Task,
    *,
    detail: Literal[True],
    reason: dict[str, Any] | None = None,
    progress: RoundProgress | None = None,
) -> TaskDetail: ...
def task_info(
    task: Task,
    *,
    detail: bool = False,
    reason: dict[str, Any] | None = None,
    progress: RoundProgress | None = None,
) -> TaskInfo:
    """The API view of a task as a model (for answers that embed one)."""
    return (TaskDetail if detail else TaskInfo).model_validate(
        task_fields(task, detail=detail, reason=reason, progress=progress)
    )


def json_answer(content: Any) -> Response:
    """A read's answer from JSON values, serialized once: FastAPI neither validates nor
    converts a Response the route returns (the route still declares its model for the
    schema)."""
    return Response(
        json.dumps(content, ensure_ascii=False, separators=(",", ":")),
        media_type="application/json",
    )


def limit_info(view: LimitView, *, tz: ZoneInfo) -> LimitInfo:
    """The API view of a limit and its use; times in the server's zone."""
    limit = view.limit
    return LimitInfo(
        name=limit.name,
        match=LimitMatch(**vars(limit.match)),
        max_concurrent=limit.max_concurrent,
        max_starts=limit.max_starts,
        per_s=limit.per_s,
        in_use=view.in_use,
        waiting=view.waiting,
        starts_in_window=view.starts_in_window,
        next_start=None if view.next_start_ms is None else to_local_iso(view.next_start_ms, tz),
        created_at=str(to_local_iso(limit.created_ms, tz)),
        updated_at=str(to_local_iso(limit.updated_ms, tz)),
    )


def notification_info(notification: Notification, *, tz: ZoneInfo) -> NotificationInfo:
    """The API view of a notification: everything but its secret."""
    match = notification.match
    return NotificationInfo(
        name=notification.name,
        url=notification.url,
        events=list(notification.events),
        format=notification.format,
        has_secret=notification.secret is not None,
        match=NotificationMatch(tags=list(match.tags) or None, queue=match.queue),
        overdue_after_s=notification.overdue_after_s,
        group_window_s=notification.group_window_s,
        created_at=str(to_local_iso(notification.created_ms, tz)),
        updated_at=str(to_local_iso(notification.updated_ms, tz)),
    )


def attempt_info(attempt: Attempt, *, tz: ZoneInfo) -> DeliveryAttemptInfo:
    return DeliveryAttemptInfo(
        at=str(to_local_iso(attempt.at_ms, tz)),
        event=attempt.event,
        delivery_id=attempt.delivery_id,
        outcome=attempt.outcome,
        attempts=attempt.attempts,
        status_code=attempt.status_code,
        error=attempt.error,
        next_attempt_at=to_local_iso(attempt.next_ms, tz),
    )


def run_info(task: Task, record: RunRecord) -> RunInfo:
    started, finished = record.started_ms, record.finished_ms
    return RunInfo(
        outcome=record.outcome,
        round_num=record.round_num,
        scheduled_for=local_time(task, record.scheduled_ms),
        started_at=local_time(task, started),
        finished_at=local_time(task, finished),
        duration_s=None if started is None or finished is None else (finished - started) / 1000,
        reason=record.reason,
        error=record.error,
        worker=record.worker,
        result=record.result,
        cancelled_by=record.cancelled_by,
        note=record.note,
    )


# ---- Fleet operations: bulk actions, import and export, the audit trail ------------------


class BulkSelect(StrictBody):
    """Which tasks a bulk action takes: the list filters, all given must hold."""

    status: Text | None = None
    tag: Text | None = None
    sys_type: Text | None = None
    task_type: Text | None = None
    queue: Text | None = Field(None, description="Tasks whose own queue is this one.")
    q: Text | None = Field(None, description="Prefix of the account id or name.")


class BulkRequest(StrictBody):
    """Body of POST /api/v1/tasks/bulk."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "action": "pause",
                    "select": {"tag": "device:mac-01"},
                    "until": "2026-01-08T18:00:00",
                    "note": "设备维护",
                    "request_id": "maint-2026-01-08-mac-01",
                }
            ]
        }
    )

    action: Literal["pause", "resume", "reorder", "patch", "delete", "run", "cancel"]
    select: BulkSelect | None = Field(None, description="The tasks the filters select.")
    task_ids: list[Text] | None = Field(None, description="Or: these tasks.")
    request_id: Text | None = Field(
        None,
        description="Idempotency key chosen by the client: the same request sent again (a "
        "retry after a lost reply) returns the first outcome and changes nothing twice.",
    )
    dry_run: bool = Field(False, description="Answer what would change; write nothing.")
    until: Text | None = Field(None, description="pause: resume by itself at this time.")
    note: Text | None = Field(None, description="pause, cancel: why; also kept in the audit trail.")
    then: Literal["next", "pause"] = Field(
        "next", description="cancel: after the round stops, the next slot or a pause."
    )
    priority_offset: StrictInt | None = Field(None, description="reorder: seconds to move.")
    patch: TaskChange | None = Field(None, description="patch: the fields to change.")


class BulkItemInfo(BaseModel):
    task_id: str
    account_id: str | None
    ok: bool
    status: str | None = Field(
        description="The task's status after the change ('deleted' for a delete), if ok."
    )
    error: str | None = Field(description="Why this task was left unchanged.")
    code: str | None = Field(description="The error's key, e.g. pause_conflict.")
    repeated: bool = Field(
        description="An earlier attempt of the same request_id made this change."
    )


class BulkResponse(ActionResponse):
    action: str
    dry_run: bool
    request_id: str = Field(description="The request's idempotency key (generated if none).")
    selected: int
    changed: int = Field(description="Tasks changed (or that would change, in a dry run).")
    failed: int
    results: list[BulkItemInfo] = Field(description="One per selected task, in list order.")


class ImportRowError(BaseModel):
    line: int = Field(description="The line the row starts on, counted from 1.")
    error: str


class ImportResponse(ActionResponse):
    created: int
    updated: int
    errors: list[ImportRowError] = Field(description="Every refused row, in line order.")


class AuditChange(BaseModel):
    before: Any = None
    after: Any = None


class AuditEntryInfo(BaseModel):
    id: str | None = Field(description="The entry's id in the trail (the paging cursor).")
    at: str = Field(description="When the change was made (server time zone).")
    actor: str = Field(description="The name of the token that made it.")
    action: str
    task_id: str | None
    account_id: str | None
    limit: str | None = Field(description="The limit a limit change is about.")
    changes: dict[str, AuditChange] = Field(description="Each changed field, before and after.")
    note: str | None
    request: str | None = Field(description="The bulk request it belongs to.")


class AuditPageResponse(BaseModel):
    entries: list[AuditEntryInfo] = Field(description="Newest first.")
    next_before: str | None = Field(
        description="Pass as `before` for the next (older) page; null when there is none."
    )


class TaskAuditResponse(BaseModel):
    task_id: str
    entries: list[AuditEntryInfo] = Field(description="Newest first, capped per task.")


class PrincipalInfo(BaseModel):
    name: str = Field(description="The token's name (the actor in the audit trail).")
    role: Literal["viewer", "operator", "admin"]


def audit_entry_info(entry: AuditEntry, *, tz: ZoneInfo) -> AuditEntryInfo:
    return AuditEntryInfo(
        id=entry.id,
        at=str(to_local_iso(entry.at_ms, tz)),
        actor=entry.actor,
        action=entry.action,
        task_id=entry.task_id,
        account_id=entry.account_id,
        limit=entry.limit,
        changes={name: AuditChange(**change) for name, change in entry.changes.items()},
        note=entry.note,
        request=entry.request,
    )


def bulk_response(result: BulkResult) -> BulkResponse:
    key = "bulk_dry_run" if result.dry_run else "bulk_done"
    return BulkResponse(
        message=text(key, changed=result.changed, failed=result.failed),
        action=result.action,
        dry_run=result.dry_run,
        request_id=result.request_id,
        selected=len(result.items),
        changed=result.changed,
        failed=result.failed,
        results=[BulkItemInfo(**vars(item)) for item in result.items],
    )
