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

from taskdispatch.events import queue_event
from taskdispatch.exceptions import AccountTaskExistsError, TaskNotFoundError
from taskdispatch.history import RunRecord
from taskdispatch.keys import (
    DISPATCHER_OFF,
    DISPATCHER_ON,
    ENABLED_FIELD,
    Keys,
    dispatcher_enabled,
)
from taskdispatch.models import Task, TaskStatus
from taskdispatch.reasons import World
from taskdispatch.transaction import Change, Read, atransact
from taskdispatch.write import queue_wake

__all__ = ["Snapshot", "TaskStore"]

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

    async def page(self, *, status: str | None, offset: int, limit: int) -> tuple[int, list[Task]]:
        """One page of tasks in creation order, and the number of all that match."""
        index = self.keys.status(status) if status else self.keys.all_tasks()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrange(index, offset, offset + limit - 1)
            total, ids = await pipe.execute()
        return int(total), await self.get_many([_text(i) for i in ids])

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
            enabled, live, queues_of, *locked = await pipe.execute()
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
        )

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
