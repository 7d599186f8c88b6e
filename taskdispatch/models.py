"""The task record and its Redis hash encoding.

A task is stored as one flat hash of strings; `None` is stored as the empty string so
that every write can set the whole record with one HSET and no HDEL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Literal

__all__ = ["Outcome", "Task", "TaskStatus"]

# What happened to a slot: it ran (ok or failed), was skipped, or its round was lost.
Outcome = Literal["ok", "failed", "skipped", "lost"]


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"


_INT_FIELDS = frozenset(
    {
        "interval_s",
        "end_ms",
        "next_ms",
        "last_ms",
        "created_ms",
        "updated_ms",
        "round_num",
        "fence",
        "failures",
        "started_ms",
        "paused_until_ms",
    }
)


@dataclass(frozen=True)
class Task:
    """One account's recurring job. Instants are epoch milliseconds (UTC)."""

    task_id: str
    account_id: str
    account_name: str
    task_type: str
    sys_type: str
    status: TaskStatus
    interval_s: int
    window: tuple[int, int]
    timezone: str
    created_ms: int
    updated_ms: int
    end_ms: int | None = None
    end_text: str | None = None
    next_ms: int | None = None
    last_ms: int | None = None
    round_num: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Bumped whenever the slot to run changes hands; a message carrying an older fence is stale.
    fence: int = 0
    failures: int = 0
    last_error: str | None = None
    started_ms: int | None = None
    worker: str | None = None
    # Set while a round is in progress; only the holder of this id may record the outcome.
    run_id: str | None = None
    paused_until_ms: int | None = None
    pause_note: str | None = None

    def evolve(self, **changes: Any) -> Task:
        return replace(self, **changes)

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        # Field by field, not dataclasses.asdict: asdict deep-copies kwargs on every write.
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is None:
                out[name] = ""
            elif name == "window":
                out[name] = f"{value[0]},{value[1]}"
            elif name == "kwargs":
                out[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Task:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            text = data.get(f.name, "")
            if f.name == "window":
                start, end = text.split(",")
                values[f.name] = (int(start), int(end))
            elif f.name == "kwargs":
                values[f.name] = json.loads(text) if text else {}
            elif f.name == "status":
                values[f.name] = TaskStatus(text)
            elif f.name in _INT_FIELDS:
                if text:
                    values[f.name] = int(text)
                elif f.name in {"round_num", "fence", "failures"}:
                    values[f.name] = 0
                else:
                    values[f.name] = None
            else:
                values[f.name] = text or None
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(Task))
