"""The asyncio task store used by the API and the `TaskDispatcher` service.

Reads are plain commands or pipelines; every write is one optimistic transaction
(`transaction.atransact`). Listing and counting read the sorted-set indexes, so a page
costs O(log N + page) and a count O(1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from taskdispatch.domain.exceptions import (
    AccountTaskExistsError,
    LimitNotFoundError,
    TaskNotFoundError,
)
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.domain.queries import TaskQuery
from taskdispatch.domain.reasons import World
from taskdispatch.store.audit import (
    PREV_FIELD,
    AuditEntry,
    AuditQuery,
    Stamp,
    queue_audit,
)
from taskdispatch.store.events import queue_event
from taskdispatch.store.history import RunRecord
from taskdispatch.store.indexes import SEARCH_SEPARATOR
from taskdispatch.store.keys import (
    DISPATCHER_OFF,
    DISPATCHER_ON,
    ENABLED_FIELD,
    Keys,
    dispatcher_enabled,
    reply_text,
)
from taskdispatch.store.limits import LIMITS_MAX, Limit, queue_wake_waiters
from taskdispatch.store.progress import RoundProgress, current_progress
from taskdispatch.store.scripts import AUDIT_TASK_PAGE, STORE_READ
from taskdispatch.store.transaction import (
    Change,
    Marker,
    Read,
    Writes,
    aoptimistic,
    atransact,
    read_definition,
)
from taskdispatch.store.write import queue_wake

__all__ = [
    "LimitView",
    "Snapshot",
    "TaskStore",
    "holding_messages",
    "unconsumed_candidates",
]

Mutation = Callable[[Task], Task | None]
Extra = Callable[[Any], None]

# A filtered listing by next run sorts its matches in memory up to this many; past it, it
# walks the next-run index instead.
_SORT_IN_MEMORY = 5000


# A bulk request remembers what it did to each task this long, so that a repeat (a client
# retrying after a lost reply) changes nothing twice.
BULK_MEMORY_S = 24 * 3600


class TaskStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        audit_kept: int = 100_000,
        audit_kept_per_task: int = 200,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.audit_kept = audit_kept
        self.audit_kept_per_task = audit_kept_per_task

    def queue_audit(self, pipe: Any, entry: AuditEntry, *, linked: bool = True) -> None:
        queue_audit(pipe, self.keys, entry, kept=self.audit_kept, linked=linked)

    def _audited(self, stamp: Stamp | None, old: Task | None, new: Task | None) -> Extra | None:
        """The audit entry of a task's change, for the change's own MULTI (a delete's is not
        linked: the task's hash goes with it)."""
        if stamp is None:
            return None
        entry = stamp.task_entry(old, new)
        return lambda pipe: self.queue_audit(pipe, entry, linked=new is not None)

    async def get(self, task_id: str) -> Task | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return Task.from_hash(raw, task_id=task_id) if raw else None

    async def get_many(self, task_ids: list[str]) -> list[Task]:
        """Load tasks in one round trip; ids that vanished meanwhile are left out."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
            raws: list[dict[Any, Any]] = await pipe.execute()
        return [
            Task.from_hash(raw, task_id=task_id)
            for task_id, raw in zip(task_ids, raws, strict=True)
            if raw
        ]

    async def task_id_for_account(self, account_id: str) -> str | None:
        value = await self.redis.get(self.keys.account(account_id))
        return reply_text(value) if value is not None else None

    async def create(self, task: Task, *, stamp: Stamp | None = None) -> None:
        """Store a new task; raises AccountTaskExistsError if its account already has one."""

        def plan(read: Read) -> Change:
            if read.account_task_id is not None:
                raise AccountTaskExistsError(task.account_id, read.account_task_id)
            return Change(task, self._audited(stamp, None, task))

        await atransact(self.redis, self.keys, task.task_id, plan, account_id=task.account_id)

    async def mutate(
        self, task_id: str, change: Mutation, *, stamp: Stamp | None = None
    ) -> tuple[Task, Task | None]:
        """Apply `change` to the current record atomically; returns (old, new).

        `change` may run several times (when another writer wins the race), so it must be
        a pure function of the task it is given. Returning None deletes the task. With a
        `stamp`, the change's audit entry is written in the same transaction.
        """

        def plan(read: Read) -> Change:
            if read.task is None:
                raise TaskNotFoundError(task_id)
            new = change(read.task)
            return Change(new, self._audited(stamp, read.task, new))

        result = await atransact(self.redis, self.keys, task_id, plan)
        assert result.old is not None
        return result.old, result.new

    async def mutate_once(
        self,
        task_id: str,
        change: Mutation,
        *,
        stamp: Stamp,
        request_id: str,
        outcome: Callable[[Task | None], str],
    ) -> tuple[str, bool]:
        """`mutate` as one step of bulk request `request_id`: the step's `outcome(new)` is
        recorded in the same MULTI, so a repeat of the request returns it instead of
        changing the task again. Returns (outcome, whether this call made the change)."""
        marker = Marker(self.keys.bulk(request_id, task_id))
        earlier: list[str] = []

        def plan(read: Read) -> Change | None:
            earlier[:] = [read.marker] if read.marker is not None else []
            if read.marker is not None:
                return None
            if read.task is None:
                raise TaskNotFoundError(task_id)
            new = change(read.task)
            done = outcome(new)
            audit = self._audited(stamp, read.task, new)

            def extra(pipe: Any) -> None:
                pipe.set(marker.key, done, ex=BULK_MEMORY_S)
                if audit is not None:
                    audit(pipe)

            return Change(new, extra)

        result = await atransact(self.redis, self.keys, task_id, plan, marker=marker)
        if not result.wrote and earlier:
            return earlier[0], False
        return outcome(result.new), True

    async def audit_page(self, query: AuditQuery) -> tuple[list[AuditEntry], str | None]:
        """Entries of the trail, newest first, matching `query`, and the cursor of the next
        page (None when the trail is exhausted). Looks at most `_AUDIT_SCAN` entries per
        call, so a rare filter may return fewer than `limit` with a cursor to go on."""
        high = (
            f"({query.before}"
            if query.before
            else ("+" if query.until_ms is None else str(query.until_ms))
        )
        low = "-" if query.since_ms is None else str(query.since_ms)
        found: list[AuditEntry] = []
        scanned = 0
        while scanned < _AUDIT_SCAN:
            batch = await self.redis.xrevrange(self.keys.audit(), high, low, count=_AUDIT_BATCH)
            if not batch:
                return found, None
            for entry_id, fields in batch:
                scanned += 1
                entry = AuditEntry.from_fields(reply_text(entry_id), _fields(fields))
                if query.matches(entry):
                    found.append(entry)
                    if len(found) == query.limit:
                        return found, entry.id
            last = reply_text(batch[-1][0])
            high = f"({last}"
            if len(batch) < _AUDIT_BATCH:
                return found, None
        return found, high[1:]

    async def task_audit(self, task_id: str, *, limit: int) -> list[AuditEntry]:
        """The task's own entries, newest first, at most `audit_kept_per_task` (one round
        trip: `lua/audit_task_page.lua`)."""
        keys = self.keys
        linked, legacy = await AUDIT_TASK_PAGE.run_async(
            self.redis,
            keys=[keys.audit(), keys.task(task_id), keys.task_audit(task_id)],
            args=[PREV_FIELD, min(limit, self.audit_kept_per_task)],
        )
        return [
            *(AuditEntry.from_fields(reply_text(i), _fields(f)) for i, f in linked),
            *(AuditEntry.from_json(reply_text(text)) for text in legacy),
        ]

    async def audit(self, entry: AuditEntry) -> None:
        """Write an entry that belongs to no task change (a bulk request's summary)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self.queue_audit(pipe, entry)
            await pipe.execute()

    async def page(self, query: TaskQuery) -> tuple[int, list[Task]]:
        """One page of the tasks `query` selects, in its order, and how many it selects
        (costs: `page_ids`)."""
        total, ids = await self.page_ids(query)
        return total, await self.get_many(ids)

    async def page_ids(self, query: TaskQuery) -> tuple[int, list[str]]:
        """The ids of one page of the tasks `query` selects, in its order, and how many it
        selects.

        Costs, N = stored tasks: no filter, a status, one of tag / sys_type / task_type, or
        one of them with a status: O(log N + page) in creation order (one index each). By
        next run: the same, or O(matching) when a filter selects at most `_SORT_IN_MEMORY`
        tasks. Two dimensions: O(tasks of the smaller one). A search `q`: O(accounts whose
        id or name starts so).
        """
        dims = query.dimensions
        if query.q is not None:
            ids = await self._search(query.q)
            return await self._filtered(ids, query)
        if len(dims) >= 2:
            sizes = [await self.redis.zcard(self._index(query, dim, v)) for dim, v in dims]
            dim, value = dims[sizes.index(min(sizes))]
            driver = self._index(query, dim, value)
            ids = [reply_text(i) for i in await self.redis.zrange(driver, 0, -1)]
            return await self._filtered(ids, query)
        index = (
            self._index(query, *dims[0])
            if dims
            else self.keys.status(query.status)
            if query.status
            else self.keys.all_tasks()
        )
        if query.sort == "created":
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(index)
                pipe.zrange(index, query.offset, query.offset + query.limit - 1)
                total, ids = await pipe.execute()
            return int(total), [reply_text(i) for i in ids]
        return await self._next_page(index, query)

    def _index(self, query: TaskQuery, dim: str, value: str) -> str:
        return self.keys.index(dim, value, query.status)

    async def _next_page(self, index: str, query: TaskQuery) -> tuple[int, list[str]]:
        """By next run, among the members of `index` (every task when it is `tasks`)."""
        if index == self.keys.all_tasks():
            index = self.keys.next_runs()
        elif await self.redis.zcard(index) <= _SORT_IN_MEMORY:
            ids = [reply_text(i) for i in await self.redis.zrange(index, 0, -1)]
            return await self._filtered(ids, query)
        nexts = self.keys.next_runs()
        wanted = query.offset + query.limit
        found: list[str] = []
        start = 0
        # Walk the next-run index in order, keeping the members of `index`: a page costs
        # O(page / the share of all tasks that `index` holds).
        while len(found) < wanted:
            batch = [reply_text(i) for i in await self.redis.zrange(nexts, start, start + 499)]
            if not batch:
                break
            start += len(batch)
            if index == nexts:
                found += batch
            else:
                scores = await self.redis.zmscore(index, batch)
                found += [i for i, sc in zip(batch, scores, strict=True) if sc is not None]
        return await self._with_next(query), found[query.offset : wanted]

    async def _with_next(self, query: TaskQuery) -> int:
        """How many tasks `query` selects that have a next run, in O(1): all of them but the
        completed and error ones, which the status-split indexes count."""
        none_left = {TaskStatus.COMPLETED.value, TaskStatus.ERROR.value}
        if query.status in none_left:
            return 0
        dims = query.dimensions
        if not dims and query.status is not None:
            return int(await self.redis.zcard(self.keys.status(query.status)))
        if not dims:
            return int(await self.redis.zcard(self.keys.next_runs()))
        ((dim, value),) = dims
        if query.status is not None:
            return int(await self.redis.zcard(self.keys.index(dim, value, query.status)))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.index(dim, value))
            for status in sorted(none_left):
                pipe.zcard(self.keys.index(dim, value, status))
            total, *without = await pipe.execute()
        return int(total) - sum(int(n) for n in without)

    async def _search(self, q: str) -> list[str]:
        """Task ids whose account id or name starts with `q` (case-insensitive)."""
        prefix = q.lower().encode()
        raw = await self.redis.zrangebylex(
            self.keys.search(), b"[" + prefix, b"[" + prefix + b"\xff"
        )
        ids = (reply_text(m).rsplit(SEARCH_SEPARATOR, 1)[1] for m in raw)
        return list(dict.fromkeys(ids))

    async def _filtered(self, ids: list[str], query: TaskQuery) -> tuple[int, list[str]]:
        """The page of `ids` that match every filter of `query`, in its order: O(len(ids))."""
        if not ids:
            return 0, []
        checks = [self.keys.index(d, v, query.status) for d, v in query.dimensions]
        if query.status and not checks:
            checks.append(self.keys.status(query.status))
        order = self.keys.all_tasks() if query.sort == "created" else self.keys.next_runs()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in checks:
                pipe.zmscore(key, ids)
            pipe.zmscore(order, ids)
            *memberships, scores = await pipe.execute()
        kept = [
            (score, task_id)
            for n, (task_id, score) in enumerate(zip(ids, scores, strict=True))
            if score is not None and all(m[n] is not None for m in memberships)
        ]
        kept.sort()
        page = [task_id for _, task_id in kept[query.offset : query.offset + query.limit]]
        return len(kept), page

    async def snapshot(
        self, *, now_ms: int, alive_since_ms: int, broker_is_store: bool = False
    ) -> Snapshot:
        """Everything the status endpoint shows, in one round trip plus the running tasks
        (and, with `broker_is_store`, one more for the queues nobody consumes: `_unconsumed`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in TaskStatus:
                pipe.zcard(self.keys.status(status))
            pipe.hget(self.keys.dispatcher(), ENABLED_FIELD)
            pipe.zcount(self.keys.beats(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.workers(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.due(), "-inf", now_ms)
            pipe.zrange(self.keys.due(), 0, 0, withscores=True)
            pipe.zrange(self.keys.running(), 0, -1)
            pipe.zrangebyscore(self.keys.workers(), alive_since_ms, "+inf")
            pipe.hgetall(self.keys.worker_queues())
            pipe.smembers(self.keys.published_queues())
            (
                *counts,
                enabled,
                beats,
                workers,
                backlog,
                head,
                running,
                live,
                queues_of,
                published,
            ) = await pipe.execute()
        oldest_due_ms = int(head[0][1]) if head and head[0][1] <= now_ms else None
        unconsumed: dict[str, int] = {}
        if broker_is_store:
            unconsumed = await self._unconsumed(unconsumed_candidates(published, live, queues_of))
        return Snapshot(
            counts={status.value: int(n) for status, n in zip(TaskStatus, counts, strict=True)},
            enabled=dispatcher_enabled(enabled),
            beats_alive=int(beats),
            workers_alive=int(workers),
            due_backlog=int(backlog),
            oldest_due_ms=oldest_due_ms,
            running=await self.get_many([reply_text(i) for i in running]),
            unconsumed=unconsumed,
        )

    async def _unconsumed(self, queues: list[str]) -> dict[str, int]:
        """The messages waiting in each of these broker queues (Redis lists named after the
        queue, on this Redis: the broker is the store), those holding any: one LLEN per
        queue, in one round trip."""
        if not queues:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            lengths = await pipe.execute()
        return holding_messages(queues, lengths)

    async def alive(self, *, alive_since_ms: int) -> tuple[int, int]:
        """(beats, workers) with a heartbeat since `alive_since_ms`, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.keys.beats(), alive_since_ms, "+inf")
            pipe.zcount(self.keys.workers(), alive_since_ms, "+inf")
            beats, workers = await pipe.execute()
        return int(beats), int(workers)

    async def read(
        self, task_ids: list[str], *, now_ms: int, alive_since_ms: int
    ) -> tuple[list[Task], World, dict[str, RoundProgress]]:
        """These tasks (those that exist, in order), the facts their waiting reasons need
        (`reasons.World`) and the progress of their rounds in progress (by task id), in one
        round trip: one script call (`lua/store_read.lua`), which follows each task to its
        account's lease, the limit it waits for and, while a round runs, its progress, so
        nothing has to be read first."""
        keys = self.keys
        reply = await STORE_READ.run_async(
            self.redis,
            keys=[
                keys.dispatcher(),
                keys.workers(),
                keys.worker_queues(),
                keys.limits(),
                *(k for i in task_ids for k in (keys.task(i), keys.progress(i))),
            ],
            args=[ENABLED_FIELD, alive_since_ms, keys.lock(""), keys.limit_places(""), now_ms],
        )
        enabled, live, queues_flat, hashes, locked, per_limit, progress_raw = reply
        tasks: list[Task] = []
        locked_accounts: set[str] = set()
        progress: dict[str, RoundProgress] = {}
        for task_id, flat, held, raw in zip(task_ids, hashes, locked, progress_raw, strict=True):
            if not flat:
                continue
            task = Task.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)), task_id=task_id)
            tasks.append(task)
            if int(held):
                locked_accounts.add(task.account_id)
            if (shown := current_progress(task.run_id, raw)) is not None:
                progress[task.task_id] = shown
        limit_use: dict[str, tuple[int, int | None]] = {}
        for i in range(0, len(per_limit), 3):
            name, in_use, definition = per_limit[i : i + 3]
            if definition is not None:
                limit = Limit.from_json(reply_text(name), reply_text(definition))
                limit_use[limit.name] = (int(in_use), limit.max_concurrent)
        queues_of = dict(zip(queues_flat[::2], queues_flat[1::2], strict=True))
        world = World(
            now_ms=now_ms,
            dispatcher_enabled=dispatcher_enabled(enabled),
            live_queues=_live_queues(live, queues_of),
            locked_accounts=frozenset(locked_accounts),
            limit_use=limit_use,
        )
        return tasks, world, progress

    async def limits(self) -> dict[str, Limit]:
        raw = await self.redis.hgetall(self.keys.limits())
        return {
            reply_text(k): Limit.from_json(reply_text(k), reply_text(v)) for k, v in raw.items()
        }

    async def put_limit(
        self, name: str, build: Callable[[Limit | None], Limit], *, stamp: Stamp | None = None
    ) -> Limit:
        """Create or replace limit `name` with `build(the current one or None)`; bumps the
        definitions' version and wakes the waiters the change may let start, atomically."""
        keys = self.keys

        async def read(pipe: Any) -> Any:
            return await read_definition(
                pipe, keys.limits(), name, most=LIMITS_MAX, code="limits_too_many"
            )

        def plan(current: Any) -> tuple[Limit, Writes]:
            limit = build(None if current is None else Limit.from_json(name, reply_text(current)))

            def writes(pipe: Any) -> None:
                pipe.hset(keys.limits(), name, limit.to_json())
                pipe.incr(keys.limits_version())
                queue_wake_waiters(pipe, keys, limit, deleted=False, now_ms=limit.updated_ms)
                queue_event(pipe, keys, "limit.saved", name=name)
                if stamp is not None:
                    before = None if current is None else json.loads(reply_text(current))
                    after = json.loads(limit.to_json())
                    self.queue_audit(pipe, _limit_entry(stamp, name, before, after))

            return limit, writes

        return await aoptimistic(self.redis, [keys.limits()], read, plan)

    async def delete_limit(self, name: str, *, now_ms: int, stamp: Stamp | None = None) -> None:
        """Delete limit `name`; its waiters are woken at once (nothing holds them back now)."""
        keys = self.keys

        async def read(pipe: Any) -> Any:
            return await pipe.hget(keys.limits(), name)

        def plan(current: Any) -> tuple[None, Writes]:
            if current is None:
                raise LimitNotFoundError(name)
            limit = Limit.from_json(name, reply_text(current))

            def writes(pipe: Any) -> None:
                pipe.hdel(keys.limits(), name)
                pipe.incr(keys.limits_version())
                queue_wake_waiters(pipe, keys, limit, deleted=True, now_ms=now_ms)
                pipe.delete(
                    keys.limit_places(name), keys.limit_starts(name), keys.limit_waiters(name)
                )
                queue_event(pipe, keys, "limit.deleted", name=name)
                if stamp is not None:
                    before = json.loads(reply_text(current))
                    self.queue_audit(pipe, _limit_entry(stamp, name, before, None))

            return None, writes

        await aoptimistic(self.redis, [keys.limits()], read, plan)

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

    async def latest_runs(self, task_ids: list[str]) -> list[RunRecord | None]:
        """Each task's latest round record (None when it has none), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.lindex(self.keys.runs(task_id), 0)
            raw: list[Any] = await pipe.execute()
        return [None if item is None else RunRecord.from_json(reply_text(item)) for item in raw]

    async def runs(self, task_id: str, *, limit: int) -> list[RunRecord]:
        raw = await self.redis.lrange(self.keys.runs(task_id), 0, limit - 1)
        return [RunRecord.from_json(reply_text(item)) for item in raw]

    async def wake_beats(self) -> None:
        """Tell sleeping beats to look at the due index now (beat.py sleeps on the wake list)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_wake(pipe, self.keys)
            await pipe.execute()

    async def set_enabled(self, enabled: bool, *, stamp: Stamp | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.dispatcher(), ENABLED_FIELD, DISPATCHER_ON if enabled else DISPATCHER_OFF
            )
            kind = "dispatcher.started" if enabled else "dispatcher.stopped"
            queue_event(pipe, self.keys, kind)
            if stamp is not None:
                self.queue_audit(pipe, stamp.entry(changed={"enabled": {"after": enabled}}))
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
    # Messages waiting in each published queue no live worker consumes (those holding any).
    unconsumed: dict[str, int] = field(default_factory=dict)


def _limit_entry(
    stamp: Stamp, name: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> AuditEntry:
    """A limit's change: each definition field that differs (timestamps left out)."""
    fields = [
        f
        for f in dict.fromkeys([*(before or {}), *(after or {})])
        if f not in ("created_ms", "updated_ms")
    ]
    changed = {
        f: {"before": (before or {}).get(f), "after": (after or {}).get(f)}
        for f in fields
        if (before or {}).get(f) != (after or {}).get(f)
    }
    return stamp.entry(limit=name, changed=changed)


# How many trail entries one page may look at, and in what batches.
_AUDIT_SCAN = 10_000
_AUDIT_BATCH = 500


def _fields(raw: Mapping[Any, Any] | Sequence[Any] | None) -> dict[str, str]:
    """A stream entry's fields, as redis-py gives them (a mapping) or a script (flat)."""
    if not raw:
        return {}
    pairs = raw.items() if isinstance(raw, Mapping) else zip(raw[::2], raw[1::2], strict=True)
    return {reply_text(k): reply_text(v) for k, v in pairs}


def unconsumed_candidates(
    published: Iterable[Any], live: Iterable[Any], queues_of: Mapping[Any, Any]
) -> list[str]:
    """The queues a beat has published to (`published`) that none of the `live` workers
    consumes, sorted: where rounds may wait unserved, for the status's `unconsumed_queues`
    and the watcher's `queue.unserved` (conditions.py), once each queue's broker list is
    measured (`holding_messages`)."""
    return sorted({reply_text(q) for q in published} - _live_queues(live, queues_of))


def holding_messages(queues: Sequence[str], lengths: Sequence[Any]) -> dict[str, int]:
    """Each of `queues` with the messages waiting in it (`lengths`: their LLEN, in order),
    for those holding any."""
    return {q: int(n) for q, n in zip(queues, lengths, strict=True) if int(n)}


def _live_queues(live: Iterable[Any], queues_of: Mapping[Any, Any]) -> frozenset[str]:
    """The queues the `live` workers consume, from the hash of each worker's queues."""
    return frozenset(
        queue
        for worker in live
        for queue in reply_text(queues_of.get(worker, "")).split(",")
        if queue
    )
