"""`TaskDispatcher`, the service: the public Python API over the task store.

The REST routers are thin wrappers over it; scripts can use it without FastAPI (it loads no
Celery code; dispatching itself is the beat's job, `beat.py`):

    async with TaskDispatcher() as dispatcher:
        task_id = await dispatcher.add_task(sys_type="mac_intel", xhs_account_id="a1", ...)
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from taskdispatch import lifecycle, schedule, validation
from taskdispatch.clock import now_ms
from taskdispatch.connections import api_client
from taskdispatch.exceptions import InvalidTaskError, LimitNotFoundError, TaskNotFoundError
from taskdispatch.handlers import load_registry
from taskdispatch.history import RunRecord
from taskdispatch.indexes import matches_query
from taskdispatch.keys import Keys
from taskdispatch.limits import check_name, limit_from_body
from taskdispatch.liveness import ALIVE_MS
from taskdispatch.models import Task
from taskdispatch.reasons import waiting_reason
from taskdispatch.routing import queue_for
from taskdispatch.settings import Settings, get_settings
from taskdispatch.stats import RoundStats, read_round_stats
from taskdispatch.store import LimitView, TaskStore

__all__ = ["DispatcherStatus", "LimitView", "TaskDispatcher", "Upcoming"]


@dataclass(frozen=True)
class DispatcherStatus:
    enabled: bool
    beats_alive: int
    workers_alive: int
    counts: dict[str, int]
    # Oldest first: the status endpoint's current_running_task is the first.
    running_rounds: list[Task]
    due_backlog: int
    # How long the oldest due-but-unclaimed task has waited (0 when none waits).
    scheduling_lag_ms: int
    # Every limit with its use now, in name order.
    limits: list[LimitView]

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
        self.store = TaskStore(self.redis, self.keys)
        self.clock = clock
        self.task_types = (
            set(task_types) if task_types is not None else set(load_registry(self.settings).names())
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

    async def add_task(self, **fields: Any) -> str:
        """Create a task from the fields of the create body; returns its id."""
        return (await self.create_task(**fields)).task_id

    async def create_task(self, **fields: Any) -> Task:
        task = self._draft(fields)
        await self.store.create(task)
        return task

    def _draft(self, fields: dict[str, Any]) -> Task:
        return lifecycle.created(
            fields,
            task_id=str(uuid.uuid4()),
            now_ms=self.clock(),
            default_timezone=self.settings.timezone,
            task_types=self.task_types,
        )

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

    async def update_task(self, task_id: str, **changes: Any) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(
            task_id, lambda t: lifecycle.updated(t, changes, now_ms=now)
        )
        assert new is not None
        return new

    async def delete_task(self, task_id: str) -> None:
        await self.store.mutate(task_id, lambda t: None)

    async def pause_task(
        self, task_id: str, *, until: str | None = None, note: str | None = None
    ) -> Task:
        """Pause; `until` (ISO datetime, naive = task's zone) resumes it by itself then."""
        now = self.clock()

        def change(task: Task) -> Task:
            until_ms = (
                validation.instant(until, validation.timezone(task.timezone), field="until")
                if until is not None
                else None
            )
            return lifecycle.paused(task, now_ms=now, until_ms=until_ms, note=note)

        _, new = await self.store.mutate(task_id, change)
        assert new is not None
        return new

    async def resume_task(self, task_id: str) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(task_id, lambda t: lifecycle.resumed(t, now_ms=now))
        assert new is not None
        return new

    async def reorder_task(self, task_id: str, priority_offset: int) -> Task:
        now = self.clock()
        _, new = await self.store.mutate(
            task_id, lambda t: lifecycle.reordered(t, priority_offset, now_ms=now)
        )
        assert new is not None
        return new

    async def start(self) -> None:
        await self.store.set_enabled(True)
        await self.store.wake_beats()

    async def stop(self) -> None:
        await self.store.set_enabled(False)

    async def status(self) -> DispatcherStatus:
        now = self.clock()
        snap = await self.store.snapshot(now_ms=now, alive_since_ms=now - ALIVE_MS)
        return DispatcherStatus(
            enabled=snap.enabled,
            beats_alive=snap.beats_alive,
            workers_alive=snap.workers_alive,
            counts=snap.counts,
            running_rounds=sorted(snap.running, key=lambda t: t.started_ms or 0),
            due_backlog=snap.due_backlog,
            scheduling_lag_ms=0 if snap.oldest_due_ms is None else now - snap.oldest_due_ms,
            limits=await self.store.limit_views(now_ms=now),
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
        _, new = await self.store.mutate(task_id, lambda t: lifecycle.run_now(t, now_ms=now))
        assert new is not None
        return new

    async def upcoming(self, task_id: str, *, count: int) -> Upcoming:
        """The task's next `count` rounds as the scheduler will place them."""
        _check_count(count)
        return _upcoming(await self.get_task(task_id), count=count, now_ms=self.clock())

    def preview(self, *, count: int, **fields: Any) -> Upcoming:
        """What a create body would schedule, without storing anything."""
        _check_count(count)
        draft = self._draft(fields)
        return _upcoming(draft, count=count, now_ms=draft.created_ms)

    async def waiting_reasons(self, tasks: list[Task]) -> list[dict[str, Any] | None]:
        """Why each task waits (aligned with `tasks`), from one Redis round trip for all."""
        if not tasks:
            return []
        now = self.clock()
        world = await self.store.world(tasks, now_ms=now, alive_since_ms=now - ALIVE_MS)
        return [waiting_reason(t, world, queue=queue_for(t.sys_type, self.settings)) for t in tasks]

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
        await self.store.delete_limit(name, now_ms=self.clock())

    async def runs(self, task_id: str, *, limit: int | None = None) -> list[RunRecord]:
        """The task's recent rounds, newest first."""
        await self.get_task(task_id)
        return await self.store.runs(task_id, limit=limit or self.settings.runs_kept)


@dataclass(frozen=True)
class Upcoming:
    """A task's next rounds: each nominal slot, and when its round starts (with jitter); and
    the open windows of the next 24 hours (the dashboard draws them)."""

    task: Task
    slots: list[int]
    starts: list[int]
    windows_24h: list[tuple[int, int]]


def _upcoming(task: Task, *, count: int, now_ms: int) -> Upcoming:
    slots = lifecycle.upcoming(task, count=count, now_ms=now_ms)
    return Upcoming(
        task=task,
        slots=slots,
        starts=[lifecycle.start_of(task, slot) for slot in slots],
        windows_24h=schedule.window_spans(now_ms, now_ms + 86_400_000, task.calendar),
    )


def _check_count(count: int) -> None:
    if not 1 <= count <= 100:
        raise InvalidTaskError("count_range", field="count", value=count)
