"""The audit trail: who changed what, when, from what to what, and why.

Every change made through the service (create, patch, pause, resume, reorder, run,
delete, bulk actions, imports, the dispatcher switch, limits) queues one entry in the
transaction that makes the change (`queue_audit`), so the trail never shows a change
that did not happen nor misses one that did. Rounds are not audited: their history is the
runs list.

An entry goes to two places: the whole trail (a stream capped at about `audit_kept`
entries, paged newest first by its ids) and, for a task, the task's own list (capped at
`audit_kept_per_task`, deleted with the task; the trail keeps the deletion).
`changes` holds, for each field that changed, its value before and after in the API's
terms (`task_view`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from taskdispatch.keys import Keys
from taskdispatch.models import Task
from taskdispatch.schedule import to_local_iso
from taskdispatch.transfer import export_row

__all__ = [
    "AuditEntry",
    "AuditQuery",
    "Stamp",
    "changes",
    "queue_audit",
    "task_view",
]


@dataclass(frozen=True)
class Stamp:
    """Who makes a change, when and why: the token's name, the action, an optional note,
    and the bulk request it belongs to."""

    actor: str
    action: str
    at_ms: int
    note: str | None = None
    request: str | None = None

    def entry(
        self,
        *,
        task_id: str | None = None,
        account_id: str | None = None,
        limit: str | None = None,
        changed: dict[str, dict[str, Any]] | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            at_ms=self.at_ms,
            actor=self.actor,
            action=self.action,
            task_id=task_id,
            account_id=account_id,
            limit=limit,
            changes=changed or {},
            note=self.note,
            request=self.request,
        )

    def task_entry(self, old: Task | None, new: Task | None) -> AuditEntry:
        """The entry of a change of one task from `old` to `new` (None: absent)."""
        task = new or old
        assert task is not None
        return self.entry(
            task_id=task.task_id, account_id=task.account_id, changed=changes(old, new)
        )


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str
    task_id: str | None = None
    account_id: str | None = None
    # The limit a limit change is about.
    limit: str | None = None
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str | None = None
    request: str | None = None
    # The entry's id in the trail (its paging cursor); None in a task's own list.
    id: str | None = None

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k != "id" and v not in (None, {})}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str, *, entry_id: str | None = None) -> AuditEntry:
        return cls(**json.loads(text), id=entry_id)


@dataclass(frozen=True)
class AuditQuery:
    """A page of the trail, newest first: entries older than `before` (an entry id), within
    [since_ms, until_ms], and matching every filter given."""

    actor: str | None = None
    action: str | None = None
    task_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: str | None = None
    limit: int = 100

    def matches(self, entry: AuditEntry) -> bool:
        return (
            (self.actor is None or entry.actor == self.actor)
            and (self.action is None or entry.action == self.action)
            and (self.task_id is None or entry.task_id == self.task_id)
        )


# The state an operator changes, beside the definition: shown in an entry when it changed.
def task_view(task: Task) -> dict[str, Any]:
    """What the trail compares: the task's definition as its export row, and its state."""
    tz = task.calendar.tz
    return {
        **{k: v for k, v in export_row(task).items() if k not in _PAUSE_FIELDS},
        "status": task.status.value,
        "next_execution_time": to_local_iso(task.next_ms, tz),
        "paused_until": to_local_iso(task.paused_until_ms, tz),
        "pause_note": task.pause_note,
    }


_PAUSE_FIELDS = frozenset({"paused", "paused_until", "pause_note"})


def changes(old: Task | None, new: Task | None) -> dict[str, dict[str, Any]]:
    """`{field: {"before": ..., "after": ...}}` for every field of `task_view` that differs."""
    before: Mapping[str, Any] = task_view(old) if old is not None else {}
    after: Mapping[str, Any] = task_view(new) if new is not None else {}
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    }


def queue_audit(
    pipe: Any,
    keys: Keys,
    entry: AuditEntry,
    *,
    kept: int,
    kept_per_task: int,
    task_list: bool = True,
) -> None:
    """Queue `entry` into the trail and, with `task_list`, its task's own list."""
    text = entry.to_json()
    pipe.xadd(keys.audit(), {"e": text}, maxlen=kept, approximate=True)
    if entry.task_id is not None and task_list:
        pipe.lpush(keys.task_audit(entry.task_id), text)
        pipe.ltrim(keys.task_audit(entry.task_id), 0, kept_per_task - 1)
