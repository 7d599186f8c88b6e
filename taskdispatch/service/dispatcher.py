"""`TaskDispatcher`, the service: the public Python API over the task store.

The REST routers are thin wrappers over it; scripts can use it without FastAPI (it loads no
Celery code; dispatching itself is the beat's job, `beat.py`):

    async with TaskDispatcher() as dispatcher:
        task_id = await dispatcher.add_task(
            TaskSpec(sys_type="mac_intel", xhs_account_id="a1", xhs_account_name="账号1")
        )
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeVar

from redis.asyncio import Redis

from taskdispatch.domain import lifecycle, schedule, validation
from taskdispatch.domain.bodies import TaskChange, TaskSpec
from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    LimitNotFoundError,
    TaskDispatchError,
    TaskNotFoundError,
)
from taskdispatch.domain.lifecycle import CancelThen
from taskdispatch.domain.liveness import ALIVE_MS
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.domain.queries import matches_query
from taskdispatch.domain.reasons import World, waiting_reason
from taskdispatch.domain.routing import queue_of
from taskdispatch.domain.transfer import Format, ImportRow, export_row, parse_rows
from taskdispatch.engine.handlers import announced_types, configured_types
from taskdispatch.engine.notifier import queue_test, save_notification
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store import notifications
from taskdispatch.store.audit import AuditEntry, AuditQuery, Stamp
from taskdispatch.store.connections import api_client
from taskdispatch.store.history import RunRecord
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import check_name, limit_from_body
from taskdispatch.store.progress import RoundProgress
from taskdispatch.store.stats import RoundStats, read_round_stats
from taskdispatch.store.tasks import LimitView, TaskStore

__all__ = [
    "BULK_ACTIONS",
    "BULK_MAX",
    "DAYS_MAX",
    "BulkItem",
    "BulkResult",
    "Day",
    "DispatcherStatus",
    "ImportResult",
    "LimitView",
    "TaskDispatcher",
    "TaskRead",
    "Upcoming",
]

T = TypeVar("T")
R = TypeVar("R")


class TaskRead(NamedTuple):
    """A task as a read shows it: why it waits (`reasons.waiting_reason`), and the progress
    its round in progress last reported (None when no round runs or it reported none)."""

    task: Task
    reason: dict[str, Any] | None
    progress: RoundProgress | None


@dataclass(frozen=True)
class DispatcherStatus:
    enabled: bool
    beats_alive: int
    workers_alive: int
    counts: dict[str, int]
    # Oldest first: the status endpoint's current_running_task is the first.
    running_rounds: list[Task]
    # Due tasks no beat has claimed yet, plus the messages waiting in queues that no live
    # worker consumes (`unconsumed_queues`).
    due_backlog: int
    # How long the oldest due-but-unclaimed task has waited (0 when none waits).
    scheduling_lag_ms: int
    # Every limit with its use now, in name order.
    limits: list[LimitView]
    # Per queue a beat published to that no live worker consumes: the messages waiting in
    # it (stale copies included), when the broker is the store's Redis; else empty.
    unconsumed_queues: dict[str, int] = field(default_factory=dict)

    @property
    def is_running(self) -> bool:
        return self.enabled and self.beats_alive > 0


class TaskDispatcher:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        redis: Redis | None = None,
        clock: Callable[[], int] = now_ms,
        task_types: Collection[str] | None = None,
        actor: str = "python",
    ) -> None:
        self.settings = settings or get_settings()
        # Who the changes made through this dispatcher are recorded as (the audit trail).
        self.actor = actor
        self._owns_redis = redis is None
        self.redis = redis or api_client(self.settings)
        self.keys = Keys(self.settings.key_prefix)
        self.store = TaskStore(
            self.redis,
            self.keys,
            audit_kept=self.settings.audit_kept,
            audit_kept_per_task=self.settings.audit_kept_per_task,
        )
        self.clock = clock
        # The configured task types (no handler code imported); a create naming another one
        # also accepts the types live workers announce (`_task_types_for`).
        self.task_types = (
            set(task_types) if task_types is not None else configured_types(self.settings)
        )

    def acting_as(self, actor: str) -> TaskDispatcher:
        """This dispatcher, sharing its connections, recording its changes as `actor`."""
        view = copy.copy(self)
        view.actor = actor
        view._owns_redis = False
        return view

    async def __aenter__(self) -> TaskDispatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()

    async def add_task(self, spec: TaskSpec) -> str:
        """Create a task from its spec; returns its id."""
        return (await self.create_task(spec)).task_id

    def _stamp(self, action: str, *, note: str | None = None, request: str | None = None) -> Stamp:
        """Who is making this change now, for its audit entry."""
        return Stamp(self.actor, action, self.clock(), note=note, request=request)

    async def create_task(self, spec: TaskSpec) -> Task:
        task = await self._draft(spec)
        await self.store.create(task, stamp=self._stamp("create"))
        return task

    async def _draft(self, spec: TaskSpec, *, now_ms: int | None = None) -> Task:
        task_types = await self._task_types_for(spec)
        return lifecycle.created(
            spec,
            task_id=str(uuid.uuid4()),
            now_ms=self.clock() if now_ms is None else now_ms,
            default_timezone=self.settings.timezone,
            task_types=task_types,
        )

    async def _task_types_for(self, spec: TaskSpec) -> Collection[str]:
        """The task types a create body may name: the configured ones and, only when it
        names another, those its live workers announce (one round trip, then)."""
        if spec.task_type in self.task_types:
            return self.task_types
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.worker_handlers())
            pipe.zrangebyscore(self.keys.workers(), self.clock() - ALIVE_MS, "+inf")
            stored, alive = await pipe.execute()
        return self.task_types | announced_types(stored, alive=alive)

    async def get_task(self, task_id: str) -> Task:
        task = await self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    async def list_tasks(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        sys_type: str | None = None,
        task_type: str | None = None,
        queue: str | None = None,
        q: str | None = None,
        sort: str = "created",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[Task]]:
        """One page of the tasks that match every filter given, and how many match in all
        (costs: `TaskStore.page`)."""
        query = validation.task_query(
            status=status,
            tag=tag,
            sys_type=sys_type,
            task_type=task_type,
            queue=queue,
            q=q,
            sort=sort,
            limit=limit,
            offset=offset,
        )
        if account_id is None:
            return await self.store.page(query)
        # One task per account: the account filter selects at most one task.
        matches = [t for t in await self.account_tasks(account_id) if matches_query(t, query)]
        return len(matches), matches[offset : offset + limit]

    async def account_tasks(self, account_id: str) -> list[Task]:
        task_id = await self.store.task_id_for_account(account_id)
        return await self.store.get_many([task_id]) if task_id else []

    async def update_task(self, task_id: str, change: TaskChange) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(
            task_id, lambda t: lifecycle.updated(t, change, now_ms=now), stamp=self._stamp("patch")
        )
        assert new is not None
        return new

    async def delete_task(self, task_id: str) -> None:
        await self.store.mutate(task_id, lambda t: None, stamp=self._stamp("delete"))

    async def pause_task(
        self, task_id: str, *, until: str | None = None, note: str | None = None
    ) -> Task:
        """Pause; `until` (ISO datetime, naive = task's zone) resumes it by itself then."""
        change = _pause(until=until, note=note, now_ms=self.clock())
        _, new = await self.store.mutate(task_id, change, stamp=self._stamp("pause", note=note))
        assert new is not None
        return new

    async def resume_task(self, task_id: str) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(
            task_id, lambda t: lifecycle.resumed(t, now_ms=now), stamp=self._stamp("resume")
        )
        assert new is not None
        return new

    async def cancel_round(
        self, task_id: str, *, then: CancelThen = "next", note: str | None = None
    ) -> Task:
        """Stop the round in progress: its worker interrupts the handler within about a
        second and records the round `cancelled`; then the next slot, or a pause."""
        change = _bulk_change(
            "cancel",
            until=None,
            note=note,
            priority_offset=None,
            patch=None,
            then=then,
            by=self.actor,
            now_ms=self.clock(),
        )
        _, new = await self.store.mutate(task_id, change, stamp=self._stamp("cancel", note=note))
        assert new is not None
        return new

    async def reorder_task(self, task_id: str, priority_offset: int) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(
            task_id,
            lambda t: lifecycle.reordered(t, priority_offset, now_ms=now),
            stamp=self._stamp("reorder"),
        )
        assert new is not None
        return new

    async def start(self) -> None:
        await self.store.set_enabled(True, stamp=self._stamp("dispatcher.start"))
        await self.store.wake_beats()

    async def stop(self) -> None:
        await self.store.set_enabled(False, stamp=self._stamp("dispatcher.stop"))

    async def status(self) -> DispatcherStatus:
        now = self.clock()
        snap = await self.store.snapshot(
            now_ms=now,
            alive_since_ms=now - ALIVE_MS,
            broker_is_store=self.settings.broker_is_store,
        )
        return DispatcherStatus(
            enabled=snap.enabled,
            beats_alive=snap.beats_alive,
            workers_alive=snap.workers_alive,
            counts=snap.counts,
            running_rounds=sorted(snap.running, key=lambda t: t.started_ms or 0),
            due_backlog=snap.due_backlog + sum(snap.unconsumed.values()),
            scheduling_lag_ms=0 if snap.oldest_due_ms is None else now - snap.oldest_due_ms,
            limits=await self.store.limit_views(now_ms=now),
            unconsumed_queues=snap.unconsumed,
        )

    async def alive(self) -> tuple[int, int]:
        """How many beats and workers have a fresh heartbeat (a lighter `status`)."""
        now = self.clock()
        return await self.store.alive(alive_since_ms=now - ALIVE_MS)

    async def round_stats(self) -> RoundStats:
        """Rounds by outcome and task type, and the start-lag histogram, of every worker."""
        raw = await self.redis.hgetall(self.keys.stats())
        return read_round_stats({str(k): str(v) for k, v in raw.items()})

    async def run_now(self, task_id: str) -> Task:
        """Make the task due now (its next slot moves to now, inside its window)."""
        now = self.clock()
        _, new = await self.store.mutate(
            task_id, lambda t: lifecycle.run_now(t, now_ms=now), stamp=self._stamp("run")
        )
        assert new is not None
        return new

    async def upcoming(self, task_id: str, *, count: int) -> Upcoming:
        """The task's next `count` rounds as the scheduler will place them."""
        _check_count(count)
        return _upcoming(await self.get_task(task_id), count=count, now_ms=self.clock())

    async def days(self, task_ids: Sequence[str]) -> list[Day]:
        """For each task that exists among `task_ids` (at most `DAYS_MAX`): its latest round
        and its rounds of the next 24 hours (at most 100): what a dashboard row shows, for a
        whole page in two round trips."""
        ids = list(dict.fromkeys(task_ids))
        if not 1 <= len(ids) <= DAYS_MAX:
            raise InvalidTaskError("days_ids", field="ids", max=DAYS_MAX)
        tasks = await self.store.get_many(ids)
        latest = await self.store.latest_runs([t.task_id for t in tasks])
        now = self.clock()
        out = []
        for task, last in zip(tasks, latest, strict=True):
            # Every round of the day, capped: a denser task is drawn as a band from its first.
            count = min(100, 86_400 // task.interval_s + 1)
            out.append(Day(last_run=last, upcoming=_upcoming(task, count=count, now_ms=now)))
        return out

    async def preview(self, spec: TaskSpec, *, count: int) -> Upcoming:
        """What a create body would schedule, without storing anything."""
        _check_count(count)
        draft = await self._draft(spec)
        return _upcoming(draft, count=count, now_ms=draft.created_ms)

    async def waiting_reasons(self, tasks: list[Task]) -> list[dict[str, Any] | None]:
        """Why each task waits (aligned with `tasks`), from one Redis round trip for all."""
        if not tasks:
            return []
        now = self.clock()
        _, world, _ = await self.store.read(
            [t.task_id for t in tasks], now_ms=now, alive_since_ms=now - ALIVE_MS
        )
        return [self._reason(t, world) for t in tasks]

    def _reason(self, task: Task, world: World) -> dict[str, Any] | None:
        return waiting_reason(task, world, queue=queue_of(task, self.settings))

    async def read(self, task_ids: list[str]) -> list[TaskRead]:
        """The tasks that exist among `task_ids`, in order, each with why it waits and the
        progress of its round in progress: one Redis round trip for all."""
        if not task_ids:
            return []
        now = self.clock()
        tasks, world, progress = await self.store.read(
            task_ids, now_ms=now, alive_since_ms=now - ALIVE_MS
        )
        return [TaskRead(t, self._reason(t, world), progress.get(t.task_id)) for t in tasks]

    async def read_one(self, task_id: str) -> TaskRead:
        """`get_task` with its waiting reason and progress, in one round trip."""
        found = await self.read([task_id])
        if not found:
            raise TaskNotFoundError(task_id)
        return found[0]

    async def read_page(self, **query: Any) -> tuple[int, list[TaskRead]]:
        """`list_tasks` with each task's waiting reason and progress: two round trips (the
        page's ids, then the tasks with their facts)."""
        account_id = query.pop("account_id", None)
        if account_id is not None:
            total, tasks = await self.list_tasks(account_id=account_id, **query)
            return total, await self.read([t.task_id for t in tasks])
        total, ids = await self.store.page_ids(validation.task_query(**query))
        return total, await self.read(ids)

    async def put_limit(self, name: str, **body: Any) -> LimitView:
        """Create or replace the limit `name` (fields of the PUT body); it applies from the
        next round of every task it covers, and waiters it now has room for start."""
        now = self.clock()
        check_name(name)
        await self.store.put_limit(
            name,
            lambda old: limit_from_body(
                name, body, now_ms=now, created_ms=None if old is None else old.created_ms
            ),
            stamp=self._stamp("limit.put"),
        )
        return await self.get_limit(name)

    async def get_limit(self, name: str) -> LimitView:
        check_name(name)
        views = await self.store.limit_views(now_ms=self.clock(), names=[name])
        if not views:
            raise LimitNotFoundError(name)
        return views[0]

    async def list_limits(self) -> list[LimitView]:
        """Every limit with its use now, in name order."""
        return await self.store.limit_views(now_ms=self.clock())

    async def delete_limit(self, name: str) -> None:
        """Delete the limit; the rounds waiting for it are woken at once."""
        check_name(name)
        await self.store.delete_limit(name, now_ms=self.clock(), stamp=self._stamp("limit.delete"))

    # ---- alert notifications ----------------------------------------------------------------

    async def put_notification(
        self, name: str, body: Mapping[str, Any]
    ) -> notifications.Notification:
        """Create or replace notification `name` (the fields of the PUT body); it applies from
        the next event."""
        return await save_notification(self.redis, self.keys, name, body, now_ms=self.clock())

    async def get_notification(
        self, name: str
    ) -> tuple[notifications.Notification, list[notifications.Attempt]]:
        """Notification `name` with its latest delivery attempts, newest first."""
        found = await notifications.get_notification(self.redis, self.keys, name)
        return found, await notifications.recent_attempts(self.redis, self.keys, name)

    async def list_notifications(self) -> list[notifications.Notification]:
        """Every notification, in name order."""
        return await notifications.list_notifications(self.redis, self.keys)

    async def delete_notification(self, name: str) -> None:
        """Delete the notification with its messages not yet sent and its attempts."""
        await notifications.delete_notification(self.redis, self.keys, name)

    async def test_notification(self, name: str) -> str:
        """Send a `test` message to `name` through the normal delivery path; its delivery id."""
        return await queue_test(self.redis, self.keys, name, now_ms=self.clock())

    async def runs(self, task_id: str, *, limit: int | None = None) -> list[RunRecord]:
        """The task's recent rounds, newest first."""
        await self.get_task(task_id)
        return await self.store.runs(task_id, limit=limit or self.settings.runs_kept)

    # ---- fleet operations -----------------------------------------------------------------

    async def bulk(
        self,
        action: str,
        *,
        select: Mapping[str, Any] | None = None,
        task_ids: Sequence[str] | None = None,
        request_id: str | None = None,
        dry_run: bool = False,
        until: str | None = None,
        note: str | None = None,
        priority_offset: int | None = None,
        patch: TaskChange | None = None,
        then: CancelThen = "next",
    ) -> BulkResult:
        """Apply `action` to every task `select` (list filters) or `task_ids` names, each
        task in its own transaction with the usual rules (a 409 for one task does not stop
        the others). Repeating a request with the same `request_id` changes nothing twice:
        each task's outcome is recorded with its change and returned again. `dry_run`
        answers what would change without writing. O(selected)."""
        change = _bulk_change(
            action,
            until=until,
            note=note,
            priority_offset=priority_offset,
            patch=patch,
            then=then,
            by=self.actor,
            now_ms=self.clock(),
        )
        request_id = validation.request_id(request_id) if request_id else uuid.uuid4().hex
        ids = await self._selection(select=select, task_ids=task_ids)
        tasks = {t.task_id: t for t in await self.store.get_many(ids)}
        stamp = self._stamp(action, note=note, request=request_id)

        async def one(task_id: str) -> BulkItem:
            task = tasks.get(task_id)
            account = task.account_id if task is not None else None
            try:
                if dry_run:
                    if task is None:
                        raise TaskNotFoundError(task_id)
                    new = change(task)
                    return BulkItem(task_id, account, True, status=_status_of(new))
                done, now_made = await self.store.mutate_once(
                    task_id, change, stamp=stamp, request_id=request_id, outcome=_status_of
                )
                return BulkItem(task_id, account, True, status=done, repeated=not now_made)
            except TaskDispatchError as exc:
                return BulkItem(task_id, account, False, error=str(exc), code=exc.key)

        items = await _gathered(one, ids, concurrency=_BULK_CONCURRENCY)
        result = BulkResult(action, dry_run, request_id, items)
        if not dry_run:
            summary = replace(stamp, action=f"bulk.{action}")
            await self.store.audit(
                summary.entry(
                    changed={
                        "selected": {"after": len(items)},
                        "changed": {"after": result.changed},
                        "failed": {"after": result.failed},
                    }
                )
            )
        return result

    async def _selection(
        self, *, select: Mapping[str, Any] | None, task_ids: Sequence[str] | None
    ) -> list[str]:
        if (select is None) == (task_ids is None):
            raise InvalidTaskError("bulk_selection", field="select")
        if task_ids is not None:
            ids = list(dict.fromkeys(task_ids))
        else:
            assert select is not None
            query = validation.task_query(**{**select, "limit": 1, "offset": 0})
            _, ids = await self.store.page_ids(replace(query, limit=BULK_MAX + 1))
        if len(ids) > BULK_MAX:
            raise InvalidTaskError("bulk_too_many", field="select", max=BULK_MAX)
        return ids

    async def import_tasks(
        self, data: str, fmt: Format, *, on_conflict: str = "error"
    ) -> ImportResult:
        """Create a task from each row of a JSON Lines or CSV text (`transfer`): every valid
        row is created, every invalid one reported with its line. An account that already
        has a task is an error, or with `on_conflict="update"` a PATCH of its task (and a
        pause, when the row says paused and the task is not). At most `BULK_MAX` rows."""
        if on_conflict not in ("error", "update"):
            raise InvalidTaskError("import_on_conflict", field="on_conflict", value=on_conflict)
        rows = list(parse_rows(data, fmt))
        if len(rows) > BULK_MAX:
            raise InvalidTaskError("import_too_many", field="body", max=BULK_MAX)

        # Rows are stored concurrently but created a millisecond apart in file order, so the
        # listing (and a later export) keeps the file's order.
        first_ms = self.clock() - len(rows)

        async def one(n: int) -> tuple[str, str | None]:
            parsed = rows[n]
            if parsed.row is None:
                return "error", parsed.error
            try:
                created_ms = first_ms + n + 1
                kind = await self._import_row(
                    parsed.row, update=on_conflict == "update", created_ms=created_ms
                )
                return kind, None
            except TaskDispatchError as exc:
                return "error", str(exc)

        outcomes = await _gathered(one, range(len(rows)), concurrency=_BULK_CONCURRENCY)
        return ImportResult(
            created=sum(1 for kind, _ in outcomes if kind == "created"),
            updated=sum(1 for kind, _ in outcomes if kind == "updated"),
            errors=[
                (row.line, error)
                for row, (kind, error) in zip(rows, outcomes, strict=True)
                if kind == "error" and error is not None
            ],
        )

    async def _import_row(self, row: ImportRow, *, update: bool, created_ms: int) -> str:
        paused, until, note = row.paused, row.paused_until, row.pause_note
        stamp = self._stamp("import")
        task = await self._draft(row, now_ms=created_ms)
        if paused:
            task = _pause(until=until, note=note, now_ms=task.created_ms)(task)
        try:
            await self.store.create(task, stamp=stamp)
            return "created"
        except AccountTaskExistsError as exc:
            if not update:
                raise
            existing = exc.existing_task_id
        change = row.as_change()

        def apply(current: Task) -> Task:
            if (current.sys_type, current.task_type) != (task.sys_type, task.task_type):
                raise InvalidTaskError("import_identity", field="sys_type")
            new = lifecycle.updated(current, change, now_ms=stamp.at_ms)
            if paused and new.status != TaskStatus.PAUSED:
                new = _pause(until=until, note=note, now_ms=stamp.at_ms)(new)
            return new

        await self.store.mutate(existing, apply, stamp=stamp)
        return "updated"

    async def export_tasks(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """The export row of every task the list filters select, in creation order (tasks
        deleted while the export runs are left out; it is not a snapshot)."""
        query = validation.task_query(**{**filters, "limit": 1, "offset": 0})
        _, ids = await self.store.page_ids(replace(query, limit=_EVERYTHING))
        for start in range(0, len(ids), _EXPORT_BATCH):
            for task in await self.store.get_many(ids[start : start + _EXPORT_BATCH]):
                yield export_row(task)

    async def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        task_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> tuple[list[AuditEntry], str | None]:
        """A page of the audit trail, newest first, and the cursor of the next one."""
        tz = validation.timezone(self.settings.timezone)
        query = AuditQuery(
            actor=actor,
            action=action,
            task_id=task_id,
            since_ms=None if since is None else validation.instant(since, tz, field="since"),
            until_ms=None if until is None else validation.instant(until, tz, field="until"),
            before=None if before is None else validation.stream_id(before, field="before"),
            limit=validation.page_limit(limit),
        )
        return await self.store.audit_page(query)

    async def task_audit(self, task_id: str, *, limit: int = 100) -> list[AuditEntry]:
        """The task's own audit entries, newest first."""
        await self.get_task(task_id)
        return await self.store.task_audit(task_id, limit=validation.page_limit(limit))


@dataclass(frozen=True)
class Upcoming:
    """A task's next rounds: each nominal slot, and when its round starts (with jitter); and
    the open windows of the next 24 hours (the dashboard draws them)."""

    task: Task
    slots: list[int]
    starts: list[int]
    windows_24h: list[tuple[int, int]]


# Most tasks one `days` call reads: a dashboard page.
DAYS_MAX = 200


@dataclass(frozen=True)
class Day:
    """A dashboard row's details: the task's latest round, and its next 24 hours."""

    last_run: RunRecord | None
    upcoming: Upcoming


def _upcoming(task: Task, *, count: int, now_ms: int) -> Upcoming:
    slots = lifecycle.upcoming(task, count=count, now_ms=now_ms)
    return Upcoming(
        task=task,
        slots=slots,
        starts=[lifecycle.start_of(task, slot) for slot in slots],
        windows_24h=schedule.window_spans(now_ms, now_ms + 86_400_000, task.calendar),
    )


# Most tasks one bulk request or import acts on; the selection is refused above it.
BULK_MAX = 10_000
BULK_ACTIONS = ("pause", "resume", "reorder", "patch", "delete", "run", "cancel")
# Transactions of one bulk request in flight at once (each is a few round trips).
_BULK_CONCURRENCY = 16
_EXPORT_BATCH = 500
_EVERYTHING = 2**62


@dataclass(frozen=True)
class BulkItem:
    """What a bulk request did to one task: `status` after the change ("deleted" for a
    delete), or the error (`code`: the messages.py key) that left it unchanged;
    `repeated` when an earlier attempt of the same request made the change."""

    task_id: str
    account_id: str | None
    ok: bool
    status: str | None = None
    error: str | None = None
    code: str | None = None
    repeated: bool = False


@dataclass(frozen=True)
class BulkResult:
    action: str
    dry_run: bool
    request_id: str
    items: list[BulkItem]

    @property
    def changed(self) -> int:
        return sum(1 for item in self.items if item.ok)

    @property
    def failed(self) -> int:
        return sum(1 for item in self.items if not item.ok)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    # (line, message), lines counted from 1.
    errors: list[tuple[int, str]]


def _pause(*, until: str | None, note: str | None, now_ms: int) -> Callable[[Task], Task]:
    def change(task: Task) -> Task:
        until_ms = (
            validation.instant(until, validation.timezone(task.timezone), field="until")
            if until is not None
            else None
        )
        return lifecycle.paused(task, now_ms=now_ms, until_ms=until_ms, note=note)

    return change


def _bulk_change(
    action: str,
    *,
    until: str | None,
    note: str | None,
    priority_offset: int | None,
    patch: TaskChange | None,
    then: CancelThen,
    by: str,
    now_ms: int,
) -> Callable[[Task], Task | None]:
    """The change `action` makes to one task (the single-task operations' own rules)."""
    if action == "pause":
        return _pause(until=until, note=note, now_ms=now_ms)
    if action == "resume":
        return lambda t: lifecycle.resumed(t, now_ms=now_ms)
    if action == "run":
        return lambda t: lifecycle.run_now(t, now_ms=now_ms)
    if action == "delete":
        return lambda t: None
    if action == "cancel":
        return lambda t: lifecycle.cancel_requested(t, then=then, by=by, note=note, now_ms=now_ms)
    if action == "reorder":
        if type(priority_offset) is not int:
            raise InvalidTaskError("bulk_needs", field="priority_offset", action=action)
        offset = priority_offset
        return lambda t: lifecycle.reordered(t, offset, now_ms=now_ms)
    if action == "patch":
        if patch is None or not patch.model_fields_set:
            raise InvalidTaskError("bulk_needs", field="patch", action=action)
        change = patch
        return lambda t: lifecycle.updated(t, change, now_ms=now_ms)
    raise InvalidTaskError(
        "bulk_action", field="action", value=action, actions=", ".join(BULK_ACTIONS)
    )


def _status_of(task: Task | None) -> str:
    return "deleted" if task is None else task.status.value


async def _gathered(
    fn: Callable[[T], Awaitable[R]], items: Sequence[T], *, concurrency: int
) -> list[R]:
    """`fn` of every item, at most `concurrency` at once, results in the items' order."""
    gate = asyncio.Semaphore(concurrency)

    async def guarded(item: T) -> R:
        async with gate:
            return await fn(item)

    return list(await asyncio.gather(*(guarded(item) for item in items)))


def _check_count(count: int) -> None:
    if not 1 <= count <= 100:
        raise InvalidTaskError("count_range", field="count", value=count)
