"""The asyncio task store used by the API and the `TaskDispatcher` service.

Reads are plain commands or pipelines; every write is one optimistic transaction
(`transaction.atransact`). Listing and counting read the sorted-set indexes, so a page
costs O(log N + page) and a count O(1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from taskdispatch.events import queue_event
from taskdispatch.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    LimitNotFoundError,
    TaskNotFoundError,
)
from taskdispatch.history import RunRecord
from taskdispatch.keys import (
    DISPATCHER_OFF,
    DISPATCHER_ON,
    ENABLED_FIELD,
    Keys,
    dispatcher_enabled,
)
from taskdispatch.limits import LIMITS_MAX, Limit, queue_wake_waiters
from taskdispatch.models import Task, TaskStatus
from taskdispatch.reasons import World
from taskdispatch.transaction import Change, Read, atransact
from taskdispatch.write import queue_wake

__all__ = ["LimitView", "Snapshot", "TaskStore"]

Mutation = Callable[[Task], Task | None]


class TaskStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def get(self, task_id: str) -> Task | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return Task.from_hash(raw) if raw else None

    async def get_many(self, task_ids: list[str]) -> list[Task]:
        """Load tasks in one round trip; ids that vanished meanwhile are left out."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
            raws: list[dict[Any, Any]] = await pipe.execute()
        return [Task.from_hash(raw) for raw in raws if raw]

    async def task_id_for_account(self, account_id: str) -> str | None:
        value = await self.redis.get(self.keys.account(account_id))
        return _text(value) if value is not None else None

    async def create(self, task: Task) -> None:
        """Store a new task; raises AccountTaskExistsError if its account already has one."""

        def plan(read: Read) -> Change:
            if read.account_task_id is not None:
                raise AccountTaskExistsError(task.account_id, read.account_task_id)
            return Change(task)

        await atransact(self.redis, self.keys, task.task_id, plan, account_id=task.account_id)

    async def mutate(self, task_id: str, change: Mutation) -> tuple[Task, Task | None]:
        """Apply `change` to the current record atomically; returns (old, new).

        `change` may run several times (when another writer wins the race), so it must be
        a pure function of the task it is given. Returning None deletes the task.
        """

        def plan(read: Read) -> Change:
            if read.task is None:
                raise TaskNotFoundError(task_id)
            return Change(change(read.task))

        result = await atransact(self.redis, self.keys, task_id, plan)
        assert result.old is not None
        return result.old, result.new

    async def page(
        self, *, status: str | None, tag: str | None = None, offset: int, limit: int
    ) -> tuple[int, list[Task]]:
        """One page of tasks in creation order, and the number of all that match.

        One index at a time costs O(log N + page); a tag and a status together walk the
        tag's index (O(tasks with the tag)).
        """
        if tag is not None and status is not None:
            return await self._tag_status_page(tag, status, offset=offset, limit=limit)
        index = (
            self.keys.tag(tag)
            if tag is not None
            else self.keys.status(status)
            if status
            else self.keys.all_tasks()
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrange(index, offset, offset + limit - 1)
            total, ids = await pipe.execute()
        return int(total), await self.get_many([_text(i) for i in ids])

    async def _tag_status_page(
        self, tag: str, status: str, *, offset: int, limit: int
    ) -> tuple[int, list[Task]]:
        ids = [_text(i) for i in await self.redis.zrange(self.keys.tag(tag), 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(self.keys.task(task_id), "status")
            statuses = await pipe.execute()
        matching = [i for i, st in zip(ids, statuses, strict=True) if st and _text(st) == status]
        return len(matching), await self.get_many(matching[offset : offset + limit])

    async def snapshot(self, *, now_ms: int, alive_since_ms: int) -> Snapshot:
        """Everything the status endpoint shows, in one round trip plus the running tasks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in TaskStatus:
                pipe.zcard(self.keys.status(status))
            pipe.hget(self.keys.dispatcher(), ENABLED_FIELD)
            pipe.zcount(self.keys.beats(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.workers(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.due(), "-inf", now_ms)
            pipe.zrange(self.keys.due(), 0, 0, withscores=True)
            pipe.zrange(self.keys.running(), 0, -1)
            *counts, enabled, beats, workers, backlog, head, running = await pipe.execute()
        oldest_due_ms = int(head[0][1]) if head and head[0][1] <= now_ms else None
        return Snapshot(
            counts={status.value: int(n) for status, n in zip(TaskStatus, counts, strict=True)},
            enabled=dispatcher_enabled(enabled),
            beats_alive=int(beats),
            workers_alive=int(workers),
            due_backlog=int(backlog),
            oldest_due_ms=oldest_due_ms,
            running=await self.get_many([_text(i) for i in running]),
        )

    async def alive(self, *, alive_since_ms: int) -> tuple[int, int]:
        """(beats, workers) with a heartbeat since `alive_since_ms`, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.keys.beats(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.workers(), alive_since_ms, "+inf")
            beats, workers = await pipe.execute()
        return int(beats), int(workers)

    async def world(self, tasks: list[Task], *, now_ms: int, alive_since_ms: int) -> World:
        """The facts `reasons.waiting_reason` needs for these tasks, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.dispatcher(), ENABLED_FIELD)
            pipe.zrangebyscore(self.keys.workers(), alive_since_ms, "+inf")
            pipe.hgetall(self.keys.worker_queues())
            for task in tasks:
                pipe.exists(self.keys.lock(task.account_id))
            waited = sorted({t.wait_limit for t in tasks if t.wait_limit is not None})
            for name in waited:
                pipe.zcount(self.keys.limit_places(name), f"({now_ms}", "+inf")
                pipe.hget(self.keys.limits(), name)
            enabled, live, queues_of, *rest = await pipe.execute()
        locked, per_limit = rest[: len(tasks)], rest[len(tasks) :]
        limit_use: dict[str, tuple[int, int | None]] = {}
        for i, name in enumerate(waited):
            in_use, definition = per_limit[2 * i : 2 * i + 2]
            if definition is not None:
                limit = Limit.from_json(name, _text(definition))
                limit_use[name] = (int(in_use), limit.max_concurrent)
        live_queues = {
            queue
            for worker in live
            for queue in _text(queues_of.get(worker, "")).split(",")
            if queue
        }
        return World(
            now_ms=now_ms,
            dispatcher_enabled=dispatcher_enabled(enabled),
            live_queues=frozenset(live_queues),
            locked_accounts=frozenset(
                t.account_id for t, held in zip(tasks, locked, strict=True) if held
            ),
            limit_use=limit_use,
        )

    async def limits(self) -> dict[str, Limit]:
        raw = await self.redis.hgetall(self.keys.limits())
        return {_text(k): Limit.from_json(_text(k), _text(v)) for k, v in raw.items()}

    async def put_limit(self, name: str, build: Callable[[Limit | None], Limit]) -> Limit:
        """Create or replace limit `name` with `build(the current one or None)`; bumps the
        definitions' version and wakes the waiters the change may let start, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.keys.limits())
                    current = await pipe.hget(self.keys.limits(), name)
                    if current is None and await pipe.hlen(self.keys.limits()) >= LIMITS_MAX:
                        raise InvalidTaskError("limits_too_many", field="name", max=LIMITS_MAX)
                    limit = build(
                        None if current is None else Limit.from_json(name, _text(current))
                    )
                    pipe.multi()
                    pipe.hset(self.keys.limits(), name, limit.to_json())
                    pipe.incr(self.keys.limits_version())
                    queue_wake_waiters(
                        pipe, self.keys, limit, deleted=False, now_ms=limit.updated_ms
                    )
                    queue_event(pipe, self.keys, "limit.saved", name=name)
                    await pipe.execute()
                    return limit
                except WatchError:
                    continue

    async def delete_limit(self, name: str, *, now_ms: int) -> None:
        """Delete limit `name`; its waiters are woken at once (nothing holds them back now)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.keys.limits())
                    current = await pipe.hget(self.keys.limits(), name)
                    if current is None:
                        raise LimitNotFoundError(name)
                    limit = Limit.from_json(name, _text(current))
                    pipe.multi()
                    pipe.hdel(self.keys.limits(), name)
                    pipe.incr(self.keys.limits_version())
                    queue_wake_waiters(pipe, self.keys, limit, deleted=True, now_ms=now_ms)
                    pipe.delete(
                        self.keys.limit_places(name),
                        self.keys.limit_starts(name),
                        self.keys.limit_waiters(name),
                    )
                    queue_event(pipe, self.keys, "limit.deleted", name=name)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def limit_views(self, *, now_ms: int, names: list[str] | None = None) -> list[LimitView]:
        """Each limit (or those named) with its use now, in name order, in two round trips."""
        limits = await self.limits()
        chosen = sorted(limits) if names is None else [n for n in names if n in limits]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in chosen:
                per_ms = (limits[name].per_s or 0) * 1000
                pipe.zcount(self.keys.limit_places(name), f"({now_ms}", "+inf")
                pipe.zcard(self.keys.limit_waiters(name))
                pipe.zrangebyscore(
                    self.keys.limit_starts(name), f"({now_ms - per_ms}", "+inf", withscores=True
                )
            replies = await pipe.execute()
        views = []
        for i, name in enumerate(chosen):
            in_use, waiting, starts = replies[3 * i : 3 * i + 3]
            limit = limits[name]
            next_start_ms = None
            if limit.max_starts is not None and len(starts) >= limit.max_starts:
                oldest = starts[len(starts) - limit.max_starts][1]
                next_start_ms = int(oldest) + (limit.per_s or 0) * 1000
            views.append(
                LimitView(
                    limit=limit,
                    in_use=int(in_use),
                    waiting=int(waiting),
                    starts_in_window=len(starts) if limit.max_starts is not None else None,
                    next_start_ms=next_start_ms,
                )
            )
        return views

    async def runs(self, task_id: str, *, limit: int) -> list[RunRecord]:
        raw = await self.redis.lrange(self.keys.runs(task_id), 0, limit - 1)
        return [RunRecord.from_json(_text(item)) for item in raw]

    async def wake_beats(self) -> None:
        """Tell sleeping beats to look at the due index now (see scheduler.py)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_wake(pipe, self.keys)
            await pipe.execute()

    async def set_enabled(self, enabled: bool) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.dispatcher(), ENABLED_FIELD, DISPATCHER_ON if enabled else DISPATCHER_OFF
            )
            kind = "dispatcher.started" if enabled else "dispatcher.stopped"
            queue_event(pipe, self.keys, kind)
            await pipe.execute()


@dataclass(frozen=True)
class LimitView:
    """A limit and its use now: places held, rounds waiting, starts in its window (a rate
    limit), and when the next start is free (when the window is full)."""

    limit: Limit
    in_use: int
    waiting: int
    starts_in_window: int | None
    next_start_ms: int | None


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    enabled: bool
    beats_alive: int
    workers_alive: int
    due_backlog: int
    oldest_due_ms: int | None
    running: list[Task]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
