"""Why a task is not about to run: one machine-readable reason per task read.

`waiting_reason` is pure: the caller gathers the facts about the world (dispatcher flag,
queues that live workers consume, accounts whose lease is held) in one round trip for a
whole page (`TaskStore.world`) and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskdispatch.domain import schedule
from taskdispatch.domain.models import Task, TaskStatus

__all__ = ["World", "waiting_reason"]


@dataclass(frozen=True)
class World:
    now_ms: int
    dispatcher_enabled: bool
    live_queues: frozenset[str]
    locked_accounts: frozenset[str]
    # For each limit a task of the page waits for: (places in use, capacity or None); a
    # limit deleted meanwhile is absent.
    limit_use: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)


def waiting_reason(task: Task, world: World, *, queue: str) -> dict[str, Any] | None:
    """`{"code": ..., ...details}`, or None when the task runs or will run at its next slot."""
    if task.status == TaskStatus.RUNNING:
        return None
    if task.status == TaskStatus.PAUSED:
        return {"code": "paused", "until_ms": task.paused_until_ms, "note": task.pause_note}
    if task.status == TaskStatus.ERROR:
        return {"code": "error", "last_error": task.last_error}
    if task.status == TaskStatus.COMPLETED:
        return {"code": "completed"}
    if not world.dispatcher_enabled:
        return {"code": "dispatcher_stopped"}
    if queue not in world.live_queues:
        return {"code": "no_worker_for_queue", "queue": queue}
    if task.wait_limit is not None and task.wait_limit in world.limit_use:
        in_use, capacity = world.limit_use[task.wait_limit]
        if task.wait_code == "rate_limited":
            return {
                "code": "rate_limited",
                "limit": task.wait_limit,
                "next_start_ms": task.wait_next_ms,
            }
        return {
            "code": "limit_full",
            "limit": task.wait_limit,
            "in_use": in_use,
            "capacity": capacity,
        }
    if task.account_id in world.locked_accounts:
        return {"code": "account_locked"}
    if task.next_ms is not None and task.next_ms <= world.now_ms:
        return {"code": "backlog", "waiting_ms": world.now_ms - task.next_ms}
    cal = task.calendar
    if not schedule.in_window(world.now_ms, cal):
        # Why today is closed: a blackout date, a weekday off, or only the hour.
        today = schedule.to_datetime(world.now_ms, cal.tz).date()
        opens = task.next_ms
        if any(first <= today <= last for first, last in cal.blackout):
            return {"code": "blackout", "next_run_ms": opens}
        if today.isoweekday() not in cal.weekdays:
            return {"code": "weekday", "next_run_ms": opens}
        return {
            "code": "outside_window",
            "window_opens_ms": schedule.next_window_start(world.now_ms, cal),
        }
    return None
