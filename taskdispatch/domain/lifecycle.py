"""Every state transition of a task, API-side and round-side, as pure functions.

Each function takes the task, the event's data and `now_ms`, and returns the new task
(or raises `TaskConflictError` / `InvalidTaskError`); nothing here reads the clock or
Redis, so every rule is specified by tables (tests/unit/test_lifecycle.py). The writers
apply them in one transaction each (`transaction.py`): the API through the service, the
worker at a round's start and end, the beat's housekeeping for lost rounds and timed pauses.

    created ──> pending ──(claim, start)──> running ──(finished ok)──> pending (next slot)
                  │  ^                          │ ├─(failed) ─> pending (backoff) / error
          paused <┘  └ resumed / auto_resumed   │ ├─(lost)   ─> pending (now) / error
                  │                             │ └─(cancelled) ─> pending (next slot) / paused
                  └──────────> completed  <─────┘ (no slot before the end)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from taskdispatch.domain import schedule, validation
from taskdispatch.domain.bodies import TaskChange, TaskSpec
from taskdispatch.domain.exceptions import InvalidTaskError, TaskConflictError, UnknownTaskTypeError
from taskdispatch.domain.models import Outcome, Task, TaskStatus
from taskdispatch.domain.schedule import ALL_WEEKDAYS
from taskdispatch.settings import Settings

__all__ = [
    "CANCEL_THEN",
    "PARK_RECHECK_MS",
    "SCHEDULED_STATUS",
    "CancelThen",
    "RetryPolicy",
    "auto_resumed",
    "cancel_requested",
    "created",
    "due_at",
    "finished",
    "is_cancelling",
    "is_scheduled",
    "lost",
    "missed",
    "park_deadline",
    "paused",
    "placed",
    "reordered",
    "requeued",
    "resumed",
    "run_now",
    "skip_reason",
    "skipped",
    "slot_cancelled",
    "stands_for",
    "start_of",
    "started",
    "upcoming",
    "updated",
    "wait_ends",
    "without_wait",
]

# The only status in which a task is in the due index (the beat's claim script and the
# limits' scripts get it too).
SCHEDULED_STATUS = TaskStatus.PENDING
# A slot parked by a full limit looks again after this long even if no release woke it: a
# safety net for a wake lost to a worker that died between taking places and starting its
# round (limits.py).
PARK_RECHECK_MS = 60_000
# What a cancelled round leads to: the task's next slot, or a pause.
CancelThen = Literal["next", "pause"]
CANCEL_THEN: tuple[CancelThen, ...] = ("next", "pause")


@dataclass(frozen=True)
class RetryPolicy:
    """What a failed or lost round leads to (from the settings of the same names)."""

    max_consecutive_failures: int
    retry_backoff_s: float

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_consecutive_failures, settings.retry_backoff_s)


def is_scheduled(task: Task) -> bool:
    """Whether the task belongs in the due index: pending, with a next slot."""
    return task.status == SCHEDULED_STATUS and task.next_ms is not None


def placed(task: Task, at_ms: int, *, now_ms: int, offset_s: int = 0) -> int | None:
    """The first instant from `at_ms + offset_s` (not before now) inside the task's windows,
    or None when that falls after its end."""
    return schedule.reorder_ms(
        next_ms=at_ms,
        offset_s=offset_s,
        now_ms=now_ms,
        calendar=task.calendar,
        end_ms=task.end_ms,
    )


def _next_slot(task: Task, *, after_ms: int, now_ms: int) -> int | None:
    """The slot one interval after `after_ms` (missed slots coalesce into now), in a window."""
    return schedule.next_run_ms(
        slot_ms=after_ms,
        now_ms=now_ms,
        interval_s=task.interval_s,
        calendar=task.calendar,
        end_ms=task.end_ms,
    )


def start_of(task: Task, slot_ms: int) -> int:
    """When the round of `slot_ms` starts: the slot plus its jitter (none for a run now)."""
    if task.jitter_s == 0 or slot_ms == task.exact_ms:
        return slot_ms
    return schedule.start_ms(
        slot_ms,
        seed=task.task_id,
        jitter_s=task.jitter_s,
        interval_s=task.interval_s,
        calendar=task.calendar,
        end_ms=task.end_ms,
    )


def due_at(task: Task) -> int | None:
    """The instant the beat should claim the task's next slot (its start), or None."""
    return start_of(task, task.next_ms) if is_scheduled(task) and task.next_ms else None


def _scheduled(task: Task, next_ms: int | None) -> Task:
    """Pending at `next_ms` with a new fence, or completed when there is no slot left."""
    if next_ms is None:
        return task.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    return task.evolve(status=TaskStatus.PENDING, next_ms=next_ms, fence=task.fence + 1)


# ---- API side -------------------------------------------------------------------------


def created(
    spec: TaskSpec,
    *,
    task_id: str,
    now_ms: int,
    default_timezone: str,
    task_types: Collection[str],
) -> Task:
    """A new pending task from a checked create body, at its first slot."""
    if spec.task_type not in task_types:
        raise UnknownTaskTypeError(spec.task_type, sorted(task_types))
    tz_name = spec.timezone or default_timezone
    tz = spec.zone or validation.timezone(tz_name)
    end_ms = None
    if spec.end_value is not None and spec.task_end_time is not None:
        end_ms = validation.end_ms(spec.end_value, tz, now_ms=now_ms, text=spec.task_end_time)
    start_at_ms = (
        None
        if spec.start_value is None
        else validation.instant(spec.start_value, tz, field="start_at")
    )
    draft = Task(
        task_id=task_id,
        account_id=spec.xhs_account_id,
        account_name=spec.xhs_account_name,
        task_type=spec.task_type,
        sys_type=spec.sys_type,
        status=TaskStatus.PENDING,
        interval_s=spec.interval,
        windows=spec.windows_value,
        timezone=tz_name,
        created_ms=now_ms,
        updated_ms=now_ms,
        end_ms=end_ms,
        end_text=spec.task_end_time,
        kwargs=spec.run_params,
        tags=spec.tags_value,
        queue=spec.queue,
        weekdays=spec.weekdays_value,
        blackout=spec.blackout_value,
        jitter_s=spec.jitter_s,
        max_runs=spec.max_runs,
        misfire_policy=spec.misfire_policy,
        misfire_grace_s=spec.misfire_grace_s,
    )
    next_ms = schedule.first_run_ms(
        created_ms=now_ms,
        interval_s=spec.interval,
        calendar=draft.calendar,
        end_ms=end_ms,
        start_at_ms=None if start_at_ms is None else max(start_at_ms, now_ms),
    )
    if next_ms is None:
        _refuse_closed_calendar(draft, start_at=start_at_ms is not None)
    return draft.evolve(next_ms=next_ms)


def _refuse_closed_calendar(task: Task, *, start_at: bool) -> None:
    """No first run: after the end, or the calendar never opens (a 422 naming why)."""
    if task.end_ms is not None:
        raise InvalidTaskError(
            "first_run_after_end", field="start_at" if start_at else "task_end_time"
        )
    field = (
        "blackout_dates"
        if task.blackout
        else "weekdays"
        if task.weekdays != ALL_WEEKDAYS
        else "windows"
    )
    raise InvalidTaskError("calendar_never_open", field=field, days=schedule.HORIZON_DAYS)


def updated(task: Task, change: TaskChange, *, now_ms: int) -> Task:
    """Apply a PATCH; recompute the next run where the change affects it; a new `queue`
    applies from the next claim (`requeued`)."""
    new = _updated(task, change, now_ms=now_ms)
    if change.sent("queue"):
        new = requeued(task, new, change.queue)
    return new


def requeued(old: Task, new: Task, queue: str | None) -> Task:
    """`new` (a change of `old`) moved to `queue` (None: back to the sys_type rule or the
    default queue), from its next claim on.

    A message already published for the pending slot sits on the old queue; `stands_for`
    would let it start the slot once due, even after a later claim (it takes an older
    claim of the same slot). So the slot is re-fenced: the beat claims it again at once
    and publishes it to the new queue, and `queue_fence` marks every older claim's message
    stale, on whichever queue it waits, so that the slot runs once, from the new queue. A
    round in progress keeps running where it is: the slot after it is claimed afresh
    (`_scheduled`), under the new queue. Not a move (the same queue): nothing changes.
    """
    if queue == old.queue:
        return new
    moved = new.evolve(queue=queue)
    if old.status == TaskStatus.RUNNING:
        return moved
    fence = new.fence if new.fence > old.fence else old.fence + 1
    return moved.evolve(fence=fence, queue_fence=fence)


def _updated(task: Task, change: TaskChange, *, now_ms: int) -> Task:
    tz = change.zone or validation.timezone(task.timezone)
    interval_s = change.interval if change.interval is not None else task.interval_s
    end_ms, end_text = task.end_ms, task.end_text
    if change.sent("task_end_time"):
        end_text = change.task_end_time
        end_ms = None
        if change.end_value is not None and end_text is not None:
            end_ms = validation.end_ms(change.end_value, tz, now_ms=now_ms, text=end_text)
    elif change.sent("timezone") and end_text is not None:
        # A date or naive end is local time: read again in the new zone.
        end_ms = validation.end_ms(end_text, tz, now_ms=now_ms, text=end_text)
    new = task.evolve(
        account_name=change.account_name or task.account_name,
        timezone=change.timezone or task.timezone,
        windows=task.windows if change.windows_value is None else change.windows_value,
        interval_s=interval_s,
        end_ms=end_ms,
        end_text=end_text,
        kwargs=validation.run_params(
            task.kwargs, extra=change.kwargs, user=change.run_param_changes
        ),
        tags=change.tags_value if change.sent("tags") else task.tags,
        updated_ms=now_ms,
        weekdays=task.weekdays if change.weekdays_value is None else change.weekdays_value,
        blackout=change.blackout_value if change.sent("blackout_dates") else task.blackout,
        jitter_s=validation.jitter(
            change.jitter_s if change.sent("jitter_s") else task.jitter_s, interval_s=interval_s
        ),
        max_runs=change.max_runs if change.sent("max_runs") else task.max_runs,
        misfire_policy=change.misfire_policy or task.misfire_policy,
        misfire_grace_s=task.misfire_grace_s
        if change.misfire_grace_s is None
        else change.misfire_grace_s,
    )
    if _runs_used_up(new):
        return new.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    if task.status == TaskStatus.RUNNING:
        return new  # the worker computes the next slot from the new settings when it ends
    if _timing(new) == _timing(task) or task.status == TaskStatus.ERROR:
        return new
    if interval_s != task.interval_s:
        # A new interval counts from the last round (or creation), as if it had always applied.
        anchor = task.last_ms if task.last_ms is not None else task.created_ms
        next_ms = _next_slot(new, after_ms=anchor, now_ms=now_ms)
    else:
        next_ms = placed(new, task.next_ms or now_ms, now_ms=now_ms)
    if next_ms is None and schedule.next_window_start(now_ms, new.calendar) is None:
        _refuse_closed_calendar(new.evolve(end_ms=None), start_at=False)
    if next_ms is None:
        return new.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    if task.status == TaskStatus.PAUSED:
        return new.evolve(next_ms=next_ms, fence=task.fence + 1)
    return _scheduled(new, next_ms)


def _timing(task: Task) -> tuple[Any, ...]:
    """What decides when a task runs: a change of any of it reschedules the task."""
    return (
        task.interval_s,
        task.windows,
        task.timezone,
        task.end_ms,
        task.weekdays,
        task.blackout,
        task.jitter_s,
    )


def _runs_used_up(task: Task) -> bool:
    return task.max_runs is not None and task.runs_done >= task.max_runs


def paused(
    task: Task, *, now_ms: int, until_ms: int | None = None, note: str | None = None
) -> Task:
    """Pause; with `until_ms` the task resumes by itself then (see `auto_resumed`)."""
    if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
        raise TaskConflictError("pause_conflict", status=task.status.value)
    if until_ms is not None and until_ms <= now_ms:
        raise InvalidTaskError("until_past", field="until")
    return task.evolve(
        status=TaskStatus.PAUSED,
        updated_ms=now_ms,
        fence=task.fence + 1,
        paused_until_ms=until_ms,
        pause_note=None if note is None else validation.check_text(note, field="note"),
    )


def resumed(task: Task, *, now_ms: int) -> Task:
    """Resume a paused or error task: a future next run is kept, else it runs now."""
    if task.status not in (TaskStatus.PAUSED, TaskStatus.ERROR):
        raise TaskConflictError("resume_conflict", status=task.status.value)
    wanted = task.next_ms if task.next_ms is not None and task.next_ms > now_ms else now_ms
    cleared = task.evolve(paused_until_ms=None, pause_note=None, last_error=None, updated_ms=now_ms)
    next_ms = placed(task, wanted, now_ms=now_ms)
    if next_ms is None:
        return cleared.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    return _scheduled(cleared.evolve(failures=0), next_ms)


def auto_resumed(task: Task, *, now_ms: int) -> Task | None:
    """The end of a timed pause whose `until` has come, or None if it does not apply."""
    if (
        task.status != TaskStatus.PAUSED
        or task.paused_until_ms is None
        or task.paused_until_ms > now_ms
    ):
        return None
    return resumed(task, now_ms=now_ms)


def reordered(task: Task, offset_s: int, *, now_ms: int) -> Task:
    """Move the next run by `offset_s` (never before now), inside the window."""
    if task.status == TaskStatus.RUNNING:
        raise TaskConflictError("reorder_running")
    if task.status not in (TaskStatus.PENDING, TaskStatus.PAUSED) or task.next_ms is None:
        raise TaskConflictError("reorder_no_next", status=task.status.value)
    if abs(offset_s) > validation.LIMITS["priority_offset_s_max"]:
        raise InvalidTaskError(
            "priority_offset_range",
            field="priority_offset",
            max=validation.LIMITS["priority_offset_s_max"],
        )
    next_ms = placed(task, task.next_ms, now_ms=now_ms, offset_s=offset_s)
    if next_ms is None:
        raise TaskConflictError("reorder_past_end")
    return task.evolve(next_ms=next_ms, updated_ms=now_ms, fence=task.fence + 1)


def run_now(task: Task, *, now_ms: int) -> Task:
    """Make a pending task due now (inside its window)."""
    if task.status == TaskStatus.RUNNING:
        raise TaskConflictError("run_running")
    if task.status != TaskStatus.PENDING:
        raise TaskConflictError("run_conflict", status=task.status.value)
    next_ms = placed(task, now_ms, now_ms=now_ms)
    if next_ms is None:
        raise TaskConflictError("run_past_end")
    # Exactly then: an operator who asks for a round now does not want its jitter.
    return task.evolve(next_ms=next_ms, exact_ms=next_ms, updated_ms=now_ms, fence=task.fence + 1)


def cancel_requested(
    task: Task, *, then: CancelThen, by: str, note: str | None, now_ms: int
) -> Task:
    """Ask the round in progress to stop (its worker interrupts the handler, and the round
    ends `cancelled`: see `finished`); with `then="pause"` the task is paused now, so no
    next slot follows. A second request for the same round keeps the first one's actor and
    note (and adds the pause if asked)."""
    if task.run_id is None:
        raise TaskConflictError("cancel_not_running", status=task.status.value)
    asked = task
    if task.cancel_of != task.run_id:
        asked = task.evolve(
            cancel_of=task.run_id,
            cancel_by=by,
            cancel_note=None if note is None else validation.check_text(note, field="note"),
            updated_ms=now_ms,
        )
    if then == "pause" and asked.status != TaskStatus.PAUSED:
        asked = paused(asked, now_ms=now_ms, note=note)
    return asked


def is_cancelling(task: Task) -> bool:
    """Whether the round in progress was asked to stop (and has not ended yet)."""
    return task.run_id is not None and task.cancel_of == task.run_id


# ---- Round side -----------------------------------------------------------------------


def stands_for(task: Task, *, fence: int, slot_ms: int, now_ms: int) -> bool:
    """Whether a round message (`fence`, `slot_ms`) still asks for the task's current, not
    yet started slot.

    A message carrying the task's fence does. So does one from an older claim of the same
    slot, once that slot is due: when messages wait in a long queue, the beat re-claims them
    after `dispatch_timeout_s` (new fence, second message), and if the first message were
    dropped as stale on arrival, every message of a queue longer than the timeout would be
    stale and no round would ever run again. Whichever message comes first starts the slot;
    the start moves the task to `running` (one WATCHed transaction), so the other is dropped.
    Except a claim older than the task's last change of queue (`queue_fence`): its message
    waits on the old queue, and the slot runs from the new one (`requeued`).
    """
    if task.status != SCHEDULED_STATUS:
        return False
    if task.fence == fence:
        return True
    return task.queue_fence <= fence < task.fence and task.next_ms == slot_ms and slot_ms <= now_ms


def skip_reason(task: Task, *, now_ms: int) -> str | None:
    """Why a round may not start now ("past_end", "outside_window"), or None if it may."""
    if task.end_ms is not None and now_ms > task.end_ms:
        # A late message (beat outage, backlog) never starts a round after the end.
        return "past_end"
    if not schedule.in_window(now_ms, task.calendar):
        return "outside_window"
    return None


# Missed slots recorded one by one; past these, the schedule jumps to the first slot not missed.
MISSED_RECORDED = 20


def missed(task: Task, *, now_ms: int) -> tuple[list[int], Task] | None:
    """Under misfire_policy "skip", the slots whose start is more than misfire_grace_s in
    the past (at most MISSED_RECORDED of them listed), and the task moved to its first slot
    that is not; None when the policy runs late slots or nothing is missed."""
    if task.misfire_policy != "skip" or task.next_ms is None:
        return None
    late_ms = now_ms - task.misfire_grace_s * 1000
    slots: list[int] = []
    slot: int | None = task.next_ms
    while slot is not None and start_of(task, slot) < late_ms and len(slots) < MISSED_RECORDED:
        slots.append(slot)
        slot = _step(task, slot)
    if not slots:
        return None
    if slot is not None and start_of(task, slot) < late_ms:
        # A long outage: count the rest of the grid in one step instead of walking it.
        steps = -(-(late_ms - slot) // (task.interval_s * 1000))
        slot = placed(task, slot + steps * task.interval_s * 1000, now_ms=slot)
    moved = task.evolve(next_ms=slot, fence=task.fence + 1, updated_ms=now_ms)
    return slots, moved if slot is not None else moved.evolve(status=TaskStatus.COMPLETED)


def _step(task: Task, slot_ms: int) -> int | None:
    """The slot after `slot_ms` on the schedule's grid (no coalescing into now)."""
    return placed(task, slot_ms, now_ms=slot_ms, offset_s=task.interval_s)


def skipped(task: Task, *, now_ms: int) -> Task:
    """A slot that may not run now: the task moves to its next allowed instant."""
    next_ms = placed(task, now_ms, now_ms=now_ms)
    moved = task.evolve(next_ms=next_ms, fence=task.fence + 1, updated_ms=now_ms)
    return moved if next_ms is not None else moved.evolve(status=TaskStatus.COMPLETED)


def started(
    task: Task, *, run_id: str, worker: str, now_ms: int, holds: tuple[str, ...] = ()
) -> Task:
    """The round begins: `running`, owned by `run_id` (only it may record the outcome),
    holding a place in the limits `holds`."""
    return task.evolve(
        status=TaskStatus.RUNNING,
        started_ms=now_ms,
        worker=worker,
        run_id=run_id,
        holds=holds,
        updated_ms=now_ms,
    )


def park_deadline(task: Task, *, now_ms: int) -> int:
    """Until when a slot waiting for a limit may wait without looking again: the end of its
    window, its end date, or `PARK_RECHECK_MS` from now, whichever comes first.
    The look at the window's end skips the slot as `outside_window`: waiting never moves a
    round out of its window."""
    deadline = now_ms + PARK_RECHECK_MS
    window_end = schedule.occurrence_end(now_ms, task.calendar)
    if window_end is not None:
        deadline = min(deadline, window_end)
    if task.end_ms is not None:
        deadline = min(deadline, task.end_ms + 1)
    return deadline


def wait_ends(old: Task | None, new: Task | None) -> bool:
    """Whether the change from `old` to `new` ends the wait of `old`'s slot for a limit:
    the task is deleted or paused, its slot moves or is re-fenced, or its tags change (the
    limits that cover it may differ)."""
    if old is None or not old.waits:
        return False
    return (
        new is None
        or new.status != old.status
        or (new.next_ms, new.fence) != (old.next_ms, old.fence)
        or new.tags != old.tags
    )


def without_wait(task: Task) -> Task:
    return task.evolve(wait_limit=None, wait_code=None, wait_next_ms=None, waits=())


def finished(
    task: Task,
    *,
    outcome: Outcome,
    slot_ms: int,
    started_ms: int | None,
    error: str | None,
    now_ms: int,
    policy: RetryPolicy,
) -> Task:
    """The round of `slot_ms` ended with `outcome` ("ok", "failed", "lost" when its worker
    stopped it, or "cancelled" by an operator); the next slot follows unless the task was
    paused meanwhile. A cancelled round is neither a failure nor a run: the slot is over,
    `failures` and `last_error` stay as they were."""
    ok = outcome == "ok"
    cancelled = outcome == "cancelled"
    done = _round_over(task).evolve(
        round_num=task.round_num + 1,
        runs_done=task.runs_done + (outcome in ("ok", "failed")),
        last_ms=started_ms,
        updated_ms=now_ms,
    )
    if not cancelled:
        done = done.evolve(
            failures=0 if ok else task.failures + 1, last_error=None if ok else error
        )
    if _runs_used_up(done):
        return done.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    if task.status != TaskStatus.RUNNING:
        return done  # paused (or changed) while it ran: no next slot from here
    if ok or cancelled:
        return _scheduled(done, _next_slot(done, after_ms=slot_ms, now_ms=now_ms))
    return _retried(done, backoff=outcome != "lost", now_ms=now_ms, policy=policy)


def _round_over(task: Task) -> Task:
    """No round in progress any more: its owner, worker, places and cancel request go."""
    return task.evolve(
        run_id=None,
        started_ms=None,
        worker=None,
        holds=(),
        cancel_of=None,
        cancel_by=None,
        cancel_note=None,
    )


def slot_cancelled(task: Task, *, slot_ms: int, now_ms: int) -> Task:
    """A slot whose message an operator revoked before it started: it never runs, and the
    task moves to the slot after it (re-fenced, so no other message of it stands)."""
    moved = task.evolve(updated_ms=now_ms)
    return _scheduled(moved, _next_slot(moved, after_ms=slot_ms, now_ms=now_ms))


def lost(task: Task, *, error: str, now_ms: int, policy: RetryPolicy) -> Task:
    """Recovery found the round's lease gone (its worker died): the slot runs again now."""
    gone = _round_over(task).evolve(
        failures=task.failures + 1,
        last_error=error,
        updated_ms=now_ms,
    )
    if task.status != TaskStatus.RUNNING:
        return gone
    return _retried(gone, backoff=False, now_ms=now_ms, policy=policy)


def _retried(task: Task, *, backoff: bool, now_ms: int, policy: RetryPolicy) -> Task:
    """After a failed or lost round: error after too many in a row, else run again, a failed
    one after a growing pause (at most one interval), a lost one at once."""
    if task.failures >= policy.max_consecutive_failures:
        return task.evolve(status=TaskStatus.ERROR, next_ms=None)
    delay_s = (
        min(policy.retry_backoff_s * 2 ** (task.failures - 1), task.interval_s) if backoff else 0
    )
    return _scheduled(task, placed(task, now_ms, now_ms=now_ms, offset_s=round(delay_s)))


def upcoming(task: Task, *, count: int, now_ms: int) -> list[int]:
    """The next `count` slots as the scheduler will place them, given the task's state
    (their starts, with jitter: `start_of`)."""
    first: int | None
    if task.status == TaskStatus.PENDING:
        first = task.next_ms
    elif task.status == TaskStatus.RUNNING and task.next_ms is not None:
        # The slot in progress is not upcoming; the one after it is.
        first = _next_slot(task, after_ms=task.next_ms, now_ms=now_ms)
    elif task.status == TaskStatus.PAUSED and task.paused_until_ms is not None:
        first = resumed(task, now_ms=task.paused_until_ms).next_ms
    else:
        first = None
    if task.max_runs is not None:
        count = min(count, max(0, task.max_runs - task.runs_done))
    return schedule.upcoming_ms(
        next_ms=first,
        count=count,
        interval_s=task.interval_s,
        calendar=task.calendar,
        end_ms=task.end_ms,
    )
