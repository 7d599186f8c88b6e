"""Pure rules that turn API input into task records and apply changes to them.

Nothing here reads the clock or Redis: callers pass `now_ms`, so every rule is tested
with tables. Semantic errors raise InvalidTaskError naming the field.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Collection, Mapping
from typing import Any

from taskdispatch import schedule
from taskdispatch.exceptions import InvalidTaskError, TaskConflictError, UnknownTaskTypeError
from taskdispatch.models import Task, TaskStatus

__all__ = [
    "LIMITS",
    "RUN_PARAM_FIELDS",
    "check_identifier",
    "check_json",
    "new_task",
    "parse_instant_field",
    "paused",
    "placed",
    "reordered",
    "resumed",
    "run_now",
    "upcoming",
    "updated",
]

RUN_PARAM_FIELDS = ("user_query", "user_topic", "user_style", "user_target_audience")

LIMITS = {
    "id_chars": 128,
    "text_chars": 512,
    "kwargs_bytes": 64 * 1024,
    "kwargs_depth": 32,
    "interval_s_max": 366 * 24 * 3600,
    "priority_offset_s_max": 366 * 24 * 3600,
}


# 3000-01-01T00:00:00Z: far enough for any schedule, far from datetime's year-9999 limit.
HORIZON_MS = 32_503_680_000_000

_URL_RESERVED = frozenset("/?#%\\")


def check_identifier(value: str, *, field: str) -> str:
    """Ids become parts of Redis keys and URLs: printable, no whitespace, bounded."""
    if not value or len(value) > LIMITS["id_chars"]:
        raise InvalidTaskError(
            f"{field} must be 1..{LIMITS['id_chars']} characters, got {len(value)}", field=field
        )
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidTaskError(
            f"{field} must not contain whitespace or control characters", field=field
        )
    # These would break the id's use as a URL path segment (/accounts/{id}/tasks).
    if any(ch in _URL_RESERVED for ch in value):
        raise InvalidTaskError(
            f"{field} must not contain any of {' '.join(sorted(_URL_RESERVED))}", field=field
        )
    return value


def _check_text(value: str, *, field: str) -> str:
    if len(value) > LIMITS["text_chars"]:
        raise InvalidTaskError(
            f"{field} must be at most {LIMITS['text_chars']} characters", field=field
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n" for ch in value):
        raise InvalidTaskError(
            f"{field} must not contain control characters or lone surrogates", field=field
        )
    return value


def _check_horizon(ms: int, *, field: str) -> int:
    """Times beyond the horizon would overflow date arithmetic near year 9999."""
    if ms > HORIZON_MS:
        raise InvalidTaskError(f"{field} must be before 3000-01-01", field=field)
    return ms


def check_json(value: Any, *, field: str, depth: int = 0) -> None:
    if depth > LIMITS["kwargs_depth"]:
        raise InvalidTaskError(
            f"{field} nests deeper than {LIMITS['kwargs_depth']} levels", field=field
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), field=field)
            check_json(item, field=field, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, field=field, depth=depth + 1)
    elif isinstance(value, str):
        _check_text_chars(value, field=field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidTaskError(f"{field} must not contain NaN or Infinity", field=field)


def _check_text_chars(value: str, *, field: str) -> None:
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        raise InvalidTaskError(f"{field} must not contain lone surrogates", field=field)


def _check_interval(value: int) -> int:
    if not 1 <= value <= LIMITS["interval_s_max"]:
        raise InvalidTaskError(
            f"interval must be whole seconds in 1..{LIMITS['interval_s_max']}, got {value}",
            field="interval",
        )
    return value


def _parse(fn: Any, *args: Any, field: str, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except schedule.ScheduleError as exc:
        raise InvalidTaskError(str(exc), field=field) from exc


def _run_params(fields: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(base)
    extra = fields.get("kwargs") or {}
    check_json(extra, field="kwargs")
    params.update(extra)
    for name in RUN_PARAM_FIELDS:
        if name in fields:
            if fields[name] is None:
                params.pop(name, None)
            else:
                params[name] = _check_text(str(fields[name]), field=name)
    size = len(json.dumps(params, ensure_ascii=False).encode())
    if size > LIMITS["kwargs_bytes"]:
        raise InvalidTaskError(
            f"run parameters (kwargs) are {size} bytes; the limit is {LIMITS['kwargs_bytes']}",
            field="kwargs",
        )
    return params


def _end(value: Any, tz: Any, *, now_ms: int) -> tuple[int | None, str | None]:
    if value is None:
        return None, None
    end_ms = _parse(schedule.parse_end, value, tz, field="task_end_time")
    if end_ms is not None:
        _check_horizon(end_ms, field="task_end_time")
    if end_ms is not None and end_ms < now_ms:
        raise InvalidTaskError(
            f"task_end_time '{value}' is in the past; give a future date or datetime, or null",
            field="task_end_time",
        )
    return end_ms, str(value)


def parse_instant_field(value: str, timezone: str, *, field: str) -> int:
    tz = _parse(schedule.parse_timezone, timezone, field="timezone")
    result: int = _parse(lambda: schedule.parse_instant(value, tz, field=field), field=field)
    return result


def new_task(
    fields: Mapping[str, Any],
    *,
    task_id: str,
    now_ms: int,
    default_timezone: str,
    task_types: Collection[str],
) -> Task:
    """Build a pending task from the fields of the create body."""
    task_type = fields.get("task_type") or "xhs_type"
    if task_type not in task_types:
        raise UnknownTaskTypeError(task_type, sorted(task_types))
    tz_name = fields.get("timezone") or default_timezone
    tz = _parse(schedule.parse_timezone, tz_name, field="timezone")
    # `is None`, not `or`: an explicit 0 or [] is bad input, not a request for the default.
    window_value = fields.get("valid_time_range")
    window = _parse(
        schedule.parse_window,
        [8, 22] if window_value is None else window_value,
        field="valid_time_range",
    )
    interval_value = fields.get("interval")
    interval_s = _check_interval(3600 if interval_value is None else int(interval_value))
    end_ms, end_text = _end(fields.get("task_end_time"), tz, now_ms=now_ms)
    start_at = fields.get("start_at")
    start_at_ms = (
        _check_horizon(
            _parse(
                lambda: schedule.parse_instant(start_at, tz, field="start_at"), field="start_at"
            ),
            field="start_at",
        )
        if start_at
        else None
    )
    next_ms = schedule.first_run_ms(
        created_ms=now_ms,
        interval_s=interval_s,
        window=window,
        tz=tz,
        end_ms=end_ms,
        start_at_ms=None if start_at_ms is None else max(start_at_ms, now_ms),
    )
    if next_ms is None:
        raise InvalidTaskError(
            "the first run would fall after task_end_time; move the end later or start earlier",
            field="start_at" if start_at_ms is not None else "task_end_time",
        )
    return Task(
        task_id=task_id,
        account_id=check_identifier(str(fields["xhs_account_id"]), field="xhs_account_id"),
        account_name=_check_text(str(fields["xhs_account_name"]), field="xhs_account_name"),
        task_type=task_type,
        sys_type=check_identifier(str(fields["sys_type"]), field="sys_type"),
        status=TaskStatus.PENDING,
        interval_s=interval_s,
        window=window,
        timezone=tz_name,
        created_ms=now_ms,
        updated_ms=now_ms,
        end_ms=end_ms,
        end_text=end_text,
        next_ms=next_ms,
        kwargs=_run_params(fields, {}),
    )


def updated(task: Task, changes: Mapping[str, Any], *, now_ms: int) -> Task:
    """Apply a PATCH; recompute the next run where the change affects it."""
    for required in ("timezone", "account_name", "interval", "valid_time_range"):
        if required in changes and changes[required] in (None, ""):
            raise InvalidTaskError(f"{required} cannot be null or empty", field=required)
    tz_name = changes.get("timezone") or task.timezone
    tz = _parse(schedule.parse_timezone, tz_name, field="timezone")
    window = (
        _parse(schedule.parse_window, changes["valid_time_range"], field="valid_time_range")
        if changes.get("valid_time_range") is not None
        else task.window
    )
    interval_s = (
        _check_interval(int(changes["interval"]))
        if changes.get("interval") is not None
        else task.interval_s
    )
    end_ms, end_text = task.end_ms, task.end_text
    if "task_end_time" in changes or "timezone" in changes:
        end_value = changes.get("task_end_time", task.end_text)
        end_ms, end_text = _end(end_value, tz, now_ms=now_ms)
    new = task.evolve(
        account_name=_check_text(str(changes["account_name"]), field="account_name")
        if changes.get("account_name")
        else task.account_name,
        timezone=tz_name,
        window=window,
        interval_s=interval_s,
        end_ms=end_ms,
        end_text=end_text,
        kwargs=_run_params(changes, task.kwargs),
        updated_ms=now_ms,
    )
    if task.status == TaskStatus.RUNNING:
        return new  # the worker computes the next slot from the new settings when it ends
    timing_changed = (interval_s, window, tz_name, end_ms) != (
        task.interval_s,
        task.window,
        task.timezone,
        task.end_ms,
    )
    if not timing_changed or task.status == TaskStatus.ERROR:
        return new
    if interval_s != task.interval_s:
        # A new interval counts from the last round (or creation), as if it had always applied.
        anchor = task.last_ms if task.last_ms is not None else task.created_ms
        next_ms = schedule.next_run_ms(
            slot_ms=anchor,
            now_ms=now_ms,
            interval_s=interval_s,
            window=window,
            tz=tz,
            end_ms=end_ms,
        )
    else:
        next_ms = schedule.reorder_ms(
            next_ms=task.next_ms or now_ms,
            offset_s=0,
            now_ms=now_ms,
            window=window,
            tz=tz,
            end_ms=end_ms,
        )
    if next_ms is None:
        return new.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    status = TaskStatus.PENDING if task.status == TaskStatus.COMPLETED else task.status
    return new.evolve(status=status, next_ms=next_ms, fence=task.fence + 1)


def paused(
    task: Task, *, now_ms: int, until_ms: int | None = None, note: str | None = None
) -> Task:
    """Pause; with `until_ms` the task resumes by itself then (see rounds.resume_due)."""
    if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
        raise TaskConflictError(
            f"任务状态为 {task.status.value}，只有 pending 或 running 的任务可以暂停"
        )
    if until_ms is not None and until_ms <= now_ms:
        raise InvalidTaskError("until must be in the future", field="until")
    return task.evolve(
        status=TaskStatus.PAUSED,
        updated_ms=now_ms,
        fence=task.fence + 1,
        paused_until_ms=until_ms,
        pause_note=None if note is None else _check_text(note, field="note"),
    )


def placed(task: Task, at_ms: int, *, now_ms: int, offset_s: int = 0) -> int | None:
    """The first instant from `at_ms + offset_s` (not before now) inside the task's window,
    or None when that falls after its end."""
    return schedule.reorder_ms(
        next_ms=at_ms,
        offset_s=offset_s,
        now_ms=now_ms,
        window=task.window,
        tz=schedule.parse_timezone(task.timezone),
        end_ms=task.end_ms,
    )


def resumed(task: Task, *, now_ms: int) -> Task:
    if task.status not in (TaskStatus.PAUSED, TaskStatus.ERROR):
        raise TaskConflictError(
            f"任务状态为 {task.status.value}，只有 paused 或 error 的任务可以恢复"
        )
    wanted = task.next_ms if task.next_ms is not None and task.next_ms > now_ms else now_ms
    next_ms = placed(task, wanted, now_ms=now_ms)
    cleared = task.evolve(paused_until_ms=None, pause_note=None, last_error=None, updated_ms=now_ms)
    if next_ms is None:
        return cleared.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    return cleared.evolve(
        status=TaskStatus.PENDING, next_ms=next_ms, failures=0, fence=task.fence + 1
    )


def reordered(task: Task, offset_s: int, *, now_ms: int) -> Task:
    if task.status == TaskStatus.RUNNING:
        raise TaskConflictError("任务正在运行，无法调整优先级")
    if task.status not in (TaskStatus.PENDING, TaskStatus.PAUSED) or task.next_ms is None:
        raise TaskConflictError(f"任务状态为 {task.status.value}，没有可调整的下次执行时间")
    if abs(offset_s) > LIMITS["priority_offset_s_max"]:
        raise InvalidTaskError(
            f"priority_offset must be within ±{LIMITS['priority_offset_s_max']} seconds",
            field="priority_offset",
        )
    next_ms = placed(task, task.next_ms, now_ms=now_ms, offset_s=offset_s)
    if next_ms is None:
        raise TaskConflictError(
            "调整后的执行时间晚于任务结束时间 task_end_time，请减小 priority_offset"
        )
    return task.evolve(next_ms=next_ms, updated_ms=now_ms, fence=task.fence + 1)


def run_now(task: Task, *, now_ms: int) -> Task:
    if task.status == TaskStatus.RUNNING:
        raise TaskConflictError("任务正在运行，无法立即执行")
    if task.status != TaskStatus.PENDING:
        raise TaskConflictError(
            f"任务状态为 {task.status.value}，只有 pending 的任务可以立即执行；请先恢复任务"
        )
    next_ms = placed(task, now_ms, now_ms=now_ms)
    if next_ms is None:
        raise TaskConflictError("任务已超过结束时间 task_end_time，无法执行")
    return task.evolve(next_ms=next_ms, updated_ms=now_ms, fence=task.fence + 1)


def upcoming(task: Task, *, count: int, now_ms: int) -> list[int]:
    """The next `count` run times as the scheduler will place them, given the task's state."""
    tz = schedule.parse_timezone(task.timezone)
    first: int | None
    if task.status == TaskStatus.PENDING:
        first = task.next_ms
    elif task.status == TaskStatus.RUNNING and task.next_ms is not None:
        # The slot in progress is not upcoming; the one after it is.
        first = schedule.next_run_ms(
            slot_ms=task.next_ms,
            now_ms=now_ms,
            interval_s=task.interval_s,
            window=task.window,
            tz=tz,
            end_ms=task.end_ms,
        )
    elif task.status == TaskStatus.PAUSED and task.paused_until_ms is not None:
        first = resumed(task, now_ms=task.paused_until_ms).next_ms
    else:
        first = None
    return schedule.upcoming_ms(
        next_ms=first,
        count=count,
        interval_s=task.interval_s,
        window=task.window,
        tz=tz,
        end_ms=task.end_ms,
    )
