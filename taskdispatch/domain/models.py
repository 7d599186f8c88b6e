"""The task record, its Redis hash encoding, and the one form the outside sees it in.

`outside_view` renders a task for every outside reader: the API's TaskInfo, the export
row (transfer.py) and the audit trail's view (audit.py) pick and name its fields, none
renders a field itself.

A task is stored as one flat hash of strings. Each field has one codec below (text <->
value), so the encoding of a field lives in one place. The hash is kept in Redis's compact
encoding (a listpack, about the bytes it holds) under Redis's default configuration:

- a field that is None or holds its default is left out (`to_hash`); a write removes the
  fields the old record had and the new one has not (`stale_fields`, `write.py`);
- a field known elsewhere is left out too: `task_id` (the key names it; `from_hash` takes
  it from the caller) and `updated_ms` while it equals `created_ms` (read back as it); a
  hash written before holds both, reads the same, and loses `task_id` at its next write
  (`RETIRED_FIELDS`, `retired_fields`);
- Redis turns a whole hash into a hashtable, about four times bigger, as soon as one value
  is longer than `hash-max-listpack-value` (64 bytes by default); so a longer value of a
  field no script reads (the run parameters, a name, an error) is stored in pieces of at
  most 64 bytes: `kwargs`, `kwargs~1`, `kwargs~2`, ... (`from_hash` joins them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from taskdispatch.domain import schedule
from taskdispatch.domain.schedule import ALL_WEEKDAYS, Calendar, DateRange, MinuteRange, Window

__all__ = [
    "AUDIT_LINK_FIELD",
    "CLAIMED_SLOT_FIELD",
    "CLAIMS_FIELD",
    "MISFIRE_POLICIES",
    "PARKED_FIELD",
    "PIECE_BYTES",
    "PIECE_MARK",
    "RETIRED_FIELDS",
    "TASK_FIELDS",
    "MisfirePolicy",
    "Outcome",
    "Task",
    "TaskStatus",
    "outside_view",
    "retired_fields",
    "stale_fields",
]

# What happened to a slot: it ran (ok or failed), was skipped, its round was lost (its
# worker died or was cut off), or an operator cancelled it (running or still queued).
Outcome = Literal["ok", "failed", "skipped", "lost", "cancelled"]
# What happens to a slot missed by more than misfire_grace_s (docs/semantics.md).
MisfirePolicy = Literal["run_once", "skip"]
MISFIRE_POLICIES: tuple[MisfirePolicy, ...] = ("run_once", "skip")


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"


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
    # Local minutes of the day [start, end); an end past 1440 wraps into the next day.
    windows: tuple[MinuteRange, ...]
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
    # An operator asked the round `cancel_of` (a run_id) to stop: who, and why. Its worker
    # sees it at its next lease renewal (lease.py) and interrupts the handler.
    cancel_of: str | None = None
    cancel_by: str | None = None
    cancel_note: str | None = None
    weekdays: frozenset[int] = ALL_WEEKDAYS
    blackout: tuple[DateRange, ...] = ()
    jitter_s: int = 0
    max_runs: int | None = None
    # Rounds that ran (ok or failed), counted against max_runs.
    runs_done: int = 0
    misfire_policy: MisfirePolicy = "run_once"
    misfire_grace_s: int = 60
    # The one slot that starts exactly, without jitter (a "run now").
    exact_ms: int | None = None
    # Labels that limits match ("device:mac-01"); see limits.py.
    tags: tuple[str, ...] = ()
    # The Celery queue of the task's rounds; None: the sys_type rule or the default queue
    # (routing.py).
    queue: str | None = None
    # The first fence claimed since `queue` last changed: an older claim's message went to
    # the queue the task had before, and never starts a round (lifecycle.stands_for).
    queue_fence: int = 0
    # The limits whose place the round in progress holds (released when it ends).
    holds: tuple[str, ...] = ()
    # While the slot waits for a limit (written by the limits scripts, limits.py): the first
    # limit without room at its last look, why ("limit_full" or "rate_limited") and, when
    # rate limited, the next free start; `waits`: every limit whose waiters hold the slot.
    wait_limit: str | None = None
    wait_code: str | None = None
    wait_next_ms: int | None = None
    waits: tuple[str, ...] = ()

    def evolve(self, **changes: Any) -> Task:
        return replace(self, **changes)

    @property
    def calendar(self) -> Calendar:
        return Calendar(
            windows=self.windows,
            tz=schedule.parse_timezone(self.timezone),
            weekdays=self.weekdays,
            blackout=self.blackout,
        )

    @property
    def hour_window(self) -> Window | None:
        """The windows as a `valid_time_range`, when they are one whole-hour window."""
        if len(self.windows) != 1:
            return None
        start, end = self.windows[0]
        if start % 60 or end % 60:
            return None
        return (start // 60, (end // 60) % 24 if end > 1440 else end // 60)

    def to_hash(self) -> dict[str, str]:
        """The hash fields of this record: None and defaults left out, long values of
        `_PIECEWISE` fields in pieces."""
        # Field by field, not dataclasses.asdict: asdict deep-copies kwargs on every write.
        out: dict[str, str] = {}
        for name, encode, default in _ENCODERS:
            value = getattr(self, name)
            if value is None or value == default:
                continue
            if name == "updated_ms" and value == self.created_ms:
                continue
            text = encode(value)
            if name in _PIECEWISE and len(text.encode()) > PIECE_BYTES:
                for n, piece in enumerate(_pieces(text)):
                    out[name if n == 0 else f"{name}{PIECE_MARK}{n}"] = piece
            else:
                out[name] = text
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any], *, task_id: str) -> Task:
        """The task stored as hash `raw` under the key of `task_id`."""
        # Called for every task of every read: only the fields present are decoded (an
        # absent one keeps its default, None included), strings go through untouched.
        data = {
            (k if type(k) is str else k.decode()): (v if type(v) is str else v.decode())
            for k, v in raw.items()
        }
        if PIECE_MARK in "".join(data):
            for name in _PIECEWISE:
                if f"{name}{PIECE_MARK}1" in data:
                    data[name] = "".join(_joined(data, name))
        if "windows" not in data and "window" in data:
            # Written before windows existed: the whole-hour valid_time_range.
            start, end = data["window"].split(",")
            data["windows"] = _windows_text(schedule.hour_window((int(start), int(end))))
        values = dict(_ABSENT)
        for name, text in data.items():
            decode = _DECODER_OF.get(name)
            if decode is not None and text:
                values[name] = decode(text)
        # The key's id, not a `task_id` field a hash written before holds (the same id).
        values[_KEYED] = task_id
        if values["updated_ms"] is None:
            values["updated_ms"] = values["created_ms"]
        return cls(**values)


Codec = tuple[Callable[[Any], str], Callable[[str], Any]]

# Redis's default hash-max-listpack-value: no stored value may be longer for the hash to stay
# compact. A piece of a longer value is `<field>~<n>`, n from 1.
PIECE_BYTES = 64
PIECE_MARK = "~"
# The fields stored in pieces when long: those no Lua script reads (a script reading a field
# would see only its first piece). The others are short by validation, except an account id
# or sys_type over 64 bytes, which only makes that one hash bigger.
_PIECEWISE = frozenset(
    {
        "account_name",
        "kwargs",
        "last_error",
        "pause_note",
        "cancel_by",
        "cancel_note",
        "worker",
        "end_text",
        "windows",
        "tags",
        "blackout",
        "holds",
    }
)


def _pieces(text: str) -> list[str]:
    """`text` cut into pieces of at most PIECE_BYTES UTF-8 bytes, never inside a character."""
    data = text.encode()
    out: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + PIECE_BYTES, len(data))
        # Back off continuation bytes (10xxxxxx): the cut lands before a character starts.
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        out.append(data[start:end].decode())
        start = end
    return out


def _joined(data: Mapping[str, str], name: str) -> Iterator[str]:
    yield data.get(name, "")
    n = 1
    while (piece := data.get(f"{name}{PIECE_MARK}{n}")) is not None:
        yield piece
        n += 1


def outside_view(task: Task) -> dict[str, Any]:
    """`task` as the outside sees it, by the API's field names: instants as ISO 8601 in the
    task's own zone, windows as 'HH:MM-HH:MM', weekdays sorted, blackout dates as 'A' or
    'A..B', tags as a list; the fields of TaskInfo that depend on the task alone, in its
    order, then `kwargs`."""
    tz = schedule.parse_timezone(task.timezone)
    hours = task.hour_window
    return {
        "task_id": task.task_id,
        "account_id": task.account_id,
        "account_name": task.account_name,
        "task_type": task.task_type,
        "status": task.status.value,
        "interval": task.interval_s,
        "valid_time_range": None if hours is None else list(hours),
        "task_end_time": task.end_text,
        "last_execution_time": schedule.to_local_iso(task.last_ms, tz),
        "next_execution_time": schedule.to_local_iso(task.next_ms, tz),
        "created_at": schedule.to_local_iso(task.created_ms, tz),
        "updated_at": schedule.to_local_iso(task.updated_ms, tz),
        "round_num": task.round_num,
        "sys_type": task.sys_type,
        "timezone": task.timezone,
        "failures": task.failures,
        "last_error": task.last_error,
        "started_at": schedule.to_local_iso(task.started_ms, tz),
        "worker": task.worker,
        "paused_until": schedule.to_local_iso(task.paused_until_ms, tz),
        "pause_note": task.pause_note,
        "windows": schedule.format_windows(task.windows),
        "weekdays": sorted(task.weekdays),
        "blackout_dates": [
            first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"
            for first, last in task.blackout
        ],
        "jitter_s": task.jitter_s,
        "max_runs": task.max_runs,
        "remaining_runs": None if task.max_runs is None else max(0, task.max_runs - task.runs_done),
        "misfire_policy": task.misfire_policy,
        "misfire_grace_s": task.misfire_grace_s,
        "tags": list(task.tags),
        "queue": task.queue,
        "kwargs": task.kwargs,
    }


def stale_fields(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The fields of hash `old` (a `to_hash`) that writing `new` must delete: left out of
    `new` (None or default now) or pieces it no longer needs."""
    return [name for name in old if name not in new]


def retired_fields(stored: Mapping[str, Any]) -> list[str]:
    """The `RETIRED_FIELDS` a hash written by an earlier release still holds (`to_hash`
    never shows them): the first write to it deletes them, later writes pay nothing."""
    return [name for name in RETIRED_FIELDS if name in stored]


def _windows_text(windows: tuple[MinuteRange, ...]) -> str:
    return ",".join(f"{start}-{end}" for start, end in windows)


def _windows_value(text: str) -> tuple[MinuteRange, ...]:
    pairs = (part.split("-") for part in text.split(","))
    return tuple((int(start), int(end)) for start, end in pairs)


def _blackout_text(ranges: tuple[DateRange, ...]) -> str:
    return ",".join(f"{first.isoformat()}..{last.isoformat()}" for first, last in ranges)


def _blackout_value(text: str) -> tuple[DateRange, ...]:
    pairs = (part.split("..") for part in text.split(","))
    return tuple((date.fromisoformat(first), date.fromisoformat(last)) for first, last in pairs)


# The task hash field counting the claims of its slot in a row (written by the beat's claim
# script, lua/beat_claim.lua, never part of Task): the admission script (lua/limits_admit.lua)
# sets it to 0 when it handles the claim's message without running it (parked, or account locked).
CLAIMS_FIELD = "claims"
# The slot those claims are of (written by the beat's claim script, never part of Task).
CLAIMED_SLOT_FIELD = "claimed_slot"
# "1" while a slot waiting for a limit is parked, not yet woken (limits.py; never part of Task).
PARKED_FIELD = "parked"
# The newest audit entry of the task (audit.py): `Task.from_hash` ignores it and no write of
# the task removes it.
AUDIT_LINK_FIELD = "audit"
# Fields a hash written by an earlier release may hold that no task writes any more:
# `from_hash` ignores them and the next write of the task removes them (write.py).
RETIRED_FIELDS: tuple[str, ...] = ("task_id",)

_TEXT: Codec = (str, str)
_INT: Codec = (str, int)
_CODECS: dict[str, Codec] = {
    **dict.fromkeys(
        (
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
            "jitter_s",
            "max_runs",
            "runs_done",
            "misfire_grace_s",
            "exact_ms",
            "wait_next_ms",
            "queue_fence",
        ),
        _INT,
    ),
    **dict.fromkeys(("tags", "holds", "waits"), (",".join, lambda t: tuple(t.split(",")))),
    "status": (str, TaskStatus),
    "windows": (_windows_text, _windows_value),
    "weekdays": (
        lambda days: "".join(str(d) for d in sorted(days)),
        lambda t: frozenset(map(int, t)),
    ),
    "blackout": (_blackout_text, _blackout_value),
    "kwargs": (
        lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        json.loads,
    ),
}
# Fields whose empty text means their default, not None.
_DEFAULTED = frozenset(
    {
        "round_num",
        "fence",
        "failures",
        "kwargs",
        "weekdays",
        "blackout",
        "jitter_s",
        "runs_done",
        "misfire_policy",
        "misfire_grace_s",
        "tags",
        "holds",
        "waits",
        "queue_fence",
    }
)
# The Task fields a hash stores: all but the id, which its key names (so no script can
# read it from the hash: it is not in TASK_FIELDS).
_KEYED = "task_id"
_FIELD_NAMES = tuple(f.name for f in fields(Task) if f.name != _KEYED)
# Every field a task hash may hold, by name: the one table of them, which the Lua scripts
# read too (scripts.py gives it to each script as its table `F`).
TASK_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        name: name
        for name in (
            *_FIELD_NAMES,
            CLAIMS_FIELD,
            CLAIMED_SLOT_FIELD,
            PARKED_FIELD,
            AUDIT_LINK_FIELD,
        )
    }
)
# Each field's decoder; the value of every field without a default when it is absent.
_DECODER_OF = {name: _CODECS.get(name, _TEXT)[1] for name in _FIELD_NAMES}
_ABSENT: dict[str, Any] = {
    f.name: None
    for f in fields(Task)
    if f.name not in _DEFAULTED and f.default is MISSING and f.default_factory is MISSING
}
# Per field: its name, its encoder, and the value left out of the hash (its default when an
# absent field reads as the default, else None).
_ENCODERS = tuple(
    (
        f.name,
        _CODECS.get(f.name, _TEXT)[0],
        (f.default_factory() if f.default_factory is not MISSING else f.default)
        if f.name in _DEFAULTED
        else None,
    )
    for f in fields(Task)
    if f.name != _KEYED
)
