"""Round records: what happened to each slot (ok, failed, skipped, lost, cancelled), newest
first.

Records are JSON in a capped list per task, pushed in the same transaction as the state
change they describe, so history and state never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any

from taskdispatch.domain.models import Outcome, Task
from taskdispatch.store.events import queue_event
from taskdispatch.store.keys import Keys
from taskdispatch.store.stats import queue_round_stats

__all__ = ["RunRecord", "as_cancelled", "queue_run_record"]

# A result bigger than this is replaced by a note, so one chatty handler cannot bloat Redis.
MAX_RESULT_BYTES = 4096


@dataclass(frozen=True)
class RunRecord:
    outcome: Outcome
    scheduled_ms: int | None
    round_num: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    reason: str | None = None
    error: str | None = None
    worker: str | None = None
    result: Any = None
    # When the round was planned to start: its slot plus the slot's jitter.
    planned_ms: int | None = None
    # A cancelled round: who stopped it (an API token's name, or the Celery control command)
    # and their note.
    cancelled_by: str | None = None
    note: str | None = None

    def to_json(self) -> str:
        # Field by field, not asdict: asdict deep-copies the result on every round.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        for name in _RARE_FIELDS:
            if data[name] is None:
                del data[name]  # most records have none: not a byte for them
        encoded = json.dumps(data["result"], ensure_ascii=False, default=str)
        if len(encoded.encode()) > MAX_RESULT_BYTES:
            data["result"] = {"truncated": True, "bytes": len(encoded.encode())}
        return json.dumps(data, ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls(**json.loads(text))


def as_cancelled(record: RunRecord, task: Task, *, error: str | None) -> RunRecord:
    """`record` as the round an operator stopped: outcome `cancelled`, who and why (the
    cancel request `task` carries), with `error` as its error."""
    return replace(
        record,
        outcome="cancelled",
        reason="cancelled",
        error=error,
        cancelled_by=task.cancel_by,
        note=task.cancel_note,
    )


_RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))
_RARE_FIELDS = ("cancelled_by", "note")

_EVENT_OF_OUTCOME = {
    "ok": "round.finished",
    "failed": "round.failed",
    "skipped": "round.skipped",
    "lost": "round.lost",
    "cancelled": "round.cancelled",
}


def queue_run_record(pipe: Any, keys: Keys, task: Task, record: RunRecord, *, keep: int) -> None:
    """Queue the record, its live event and its metrics (in the caller's transaction)."""
    task_id = task.task_id
    pipe.lpush(keys.runs(task_id), record.to_json())
    pipe.ltrim(keys.runs(task_id), 0, keep - 1)
    queue_round_stats(
        pipe,
        keys,
        outcome=record.outcome,
        task_type=task.task_type,
        scheduled_ms=record.scheduled_ms,
        planned_ms=record.planned_ms,
        started_ms=record.started_ms,
    )
    queue_event(
        pipe,
        keys,
        _EVENT_OF_OUTCOME[record.outcome],
        task_id=task_id,
        round_num=record.round_num,
        scheduled_ms=record.scheduled_ms,
        reason=record.reason,
        error=record.error,
        worker=record.worker,
        **({"cancelled_by": record.cancelled_by} if record.cancelled_by is not None else {}),
    )
