"""The audit trail: who changed what, when, from what to what, and why.

Every change made through the service (create, patch, pause, resume, reorder, run,
delete, bulk actions, imports, the dispatcher switch, limits) queues one entry in the
transaction that makes the change (`queue_audit`), so the trail never shows a change
that did not happen nor misses one that did. Rounds are not audited: their history is the
runs list.

An entry is stored once, in the trail (a stream capped at about `audit_kept` entries,
paged newest first by its ids), and found by task through links: the task's hash names
its newest entry (`LINK_FIELD`) and each entry the task's one before it (`PREV_FIELD`), so
a task's page follows its links (`lua/audit_task_page.lua`, one round trip), never scans
the trail. A task's page shows at most `audit_kept_per_task` entries; an entry the trail
has trimmed ends it (the trail trims its oldest entries first, so every older entry of the task is
gone too): such entries are dropped silently. A deleted task's hash and links go with it;
its entries, its deletion included, stay in the trail.
`changes` holds, for each field that changed, its value before and after in the API's
terms (`task_view`).

Upgrade: the release before kept a second, full copy of each entry in a list per task
(`Keys.task_audit`) and its trail entries in one JSON field (`LEGACY_FIELD`). Both shapes
are read as they are (no migration): the trail tells them apart by their fields, and a
task's page goes on, after its linked entries, with its list (older than any linked one),
which is never written again and is deleted with the task.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskdispatch.domain.models import AUDIT_LINK_FIELD, Task, outside_view
from taskdispatch.domain.transfer import export_row
from taskdispatch.store.keys import Keys
from taskdispatch.store.scripts import AUDIT_ADD

__all__ = [
    "LEGACY_FIELD",
    "LINK_FIELD",
    "PREV_FIELD",
    "AuditEntry",
    "AuditQuery",
    "Stamp",
    "changes",
    "queue_audit",
    "task_view",
]

# The task hash's field naming the task's newest entry in the trail (models.TASK_FIELDS).
LINK_FIELD = AUDIT_LINK_FIELD
# An entry in the trail is its fields, in this order: its head (at, actor, action and
# those of task, account, limit, note and request it has), one field per changed value,
# `PREV_FIELD` last (added by `lua/audit_add.lua`). A changed value's field is its name
# marked `_SET` (nothing before: its value after), `_UNSET` (nothing after: its value before) or
# `_CHANGED` (its [before, after]), the value as JSON. Redis keeps the field names once per
# node of the stream while its entries repeat them (a run of creates does), so such an
# entry costs about its values.
_SET, _UNSET, _CHANGED = "+", "-", "="
PREV_FIELD = "prev"
# The one field of a trail entry written by the release before: the entry as JSON.
LEGACY_FIELD = "e"


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
    # The entry's id in the trail (its paging cursor); None for a legacy copy in a task's
    # list (see the module's docstring).
    id: str | None = None

    def fields(self) -> list[str]:
        """The entry as the trail stores it: names and values, flat (see `_SET`)."""
        head = {
            "at": str(self.at_ms),
            "actor": self.actor,
            "action": self.action,
            "task": self.task_id,
            "account": self.account_id,
            "limit": self.limit,
            "note": self.note,
            "request": self.request,
        }
        out: list[str] = []
        for name, value in head.items():
            if value is not None:
                out += [name, value]
        for name, change in self.changes.items():
            before, after = change.get("before"), change.get("after")
            if before is None:
                out += [_SET + name, _json(after)]
            elif after is None:
                out += [_UNSET + name, _json(before)]
            else:
                out += [_CHANGED + name, _json([before, after])]
        return out

    @classmethod
    def from_fields(cls, entry_id: str, fields: Mapping[str, str]) -> AuditEntry:
        """An entry of the trail, in either shape (`LEGACY_FIELD`: the release before's)."""
        if LEGACY_FIELD in fields:
            return cls.from_json(fields[LEGACY_FIELD], entry_id=entry_id)
        changed: dict[str, dict[str, Any]] = {}
        for key, text in fields.items():
            mark, name = key[:1], key[1:]
            if mark == _SET:
                changed[name] = {"before": None, "after": json.loads(text)}
            elif mark == _UNSET:
                changed[name] = {"before": json.loads(text), "after": None}
            elif mark == _CHANGED:
                before, after = json.loads(text)
                changed[name] = {"before": before, "after": after}
        return cls(
            at_ms=int(fields["at"]),
            actor=fields["actor"],
            action=fields["action"],
            task_id=fields.get("task"),
            account_id=fields.get("account"),
            limit=fields.get("limit"),
            changes=changed,
            note=fields.get("note"),
            request=fields.get("request"),
            id=entry_id,
        )

    @classmethod
    def from_json(cls, text: str, *, entry_id: str | None = None) -> AuditEntry:
        """An entry as the release before wrote it (a trail entry's or a legacy copy's)."""
        return cls(**json.loads(text), id=entry_id)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


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


def task_view(task: Task) -> dict[str, Any]:
    """What the trail compares: the task's definition as its export row, and its state, as
    `outside_view` renders them."""
    view = outside_view(task)
    return {
        **{k: v for k, v in export_row(task).items() if k not in _PAUSE_FIELDS},
        **{name: view[name] for name in _STATE_FIELDS},
    }


# The state an operator changes, beside the definition: shown in an entry when it changed.
_STATE_FIELDS = ("status", "next_execution_time", "paused_until", "pause_note")
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
    pipe: Any, keys: Keys, entry: AuditEntry, *, kept: int, linked: bool = True
) -> None:
    """Queue `entry` into the trail (kept to about `kept` entries) and, with `linked`, link
    it from its task's hash (not for a deletion: the hash goes)."""
    task = [keys.task(entry.task_id)] if entry.task_id is not None and linked else []
    args: list[str | int] = [kept, PREV_FIELD, *entry.fields()]
    AUDIT_ADD.queue(pipe, keys=[keys.audit(), *task], args=args)
