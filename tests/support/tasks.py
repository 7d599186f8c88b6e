"""The task record the specs start from, defined once: each spec names only what it is about."""

from __future__ import annotations

from typing import Any

from taskdispatch.domain.models import Task, TaskStatus

__all__ = ["task_record"]


def task_record(**fields: Any) -> Task:
    """A pending hourly task of account_1 (账号1, xhs_type on mac_intel, Asia/Shanghai,
    always in window) created at 0 ms, with no next run; `fields` replace any of it, and
    `updated_ms` follows `created_ms` unless given."""
    values: dict[str, Any] = {
        "task_id": "task-1",
        "account_id": "account_1",
        "account_name": "账号1",
        "task_type": "xhs_type",
        "sys_type": "mac_intel",
        "status": TaskStatus.PENDING,
        "interval_s": 3600,
        "windows": ((0, 1440),),
        "timezone": "Asia/Shanghai",
        "created_ms": 0,
        **fields,
    }
    values.setdefault("updated_ms", values["created_ms"])
    return Task(**values)
