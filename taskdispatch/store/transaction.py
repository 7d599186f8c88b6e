"""The one optimistic read-modify-write (`optimistic`, `aoptimistic`), used by every writer
that reads before it writes, and the transaction on a task built on it (`transact`,
`atransact`), each in a synchronous and an asyncio flavour. A writer retries while other
writers change its watched keys, at most `MAX_ATTEMPTS` times.

On a task: `WATCH` the task key (and, for a create, the account key), read, let `plan` decide the
change in Python, then `MULTI` the hash, its indexes (`write.queue_task_write`) and the
plan's extra writes, and `EXEC`. Another writer in between makes `EXEC` fail with
`WatchError`, and the whole read-plan-write runs again on the fresh record, so `plan` must
be a pure function of what it is given.

A lost EXEC reply: redis-py turns a connection lost while a transaction WATCHes into a
`WatchError`, even when Redis had applied the `EXEC`. Each write therefore tags the hash
with its `write_id` (`write.WRITE_ID_FIELD`); a retry that finds its own tag (or, for a
delete, no task) returns what it wrote instead of planning again on the state its own
write produced (a reorder applied twice, a pause answered with 409).

A plan that keeps the record as it is (`Change.new` equal to what it read) writes only its
extra commands: no hash write, no `task.updated`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import WatchError

from taskdispatch.domain import lifecycle
from taskdispatch.domain.exceptions import InvalidTaskError, TransactionContendedError
from taskdispatch.domain.models import Task, retired_fields
from taskdispatch.store.keys import Keys, reply_text
from taskdispatch.store.write import new_write_id, queue_task_write, written_by

__all__ = [
    "MAX_ATTEMPTS",
    "Change",
    "Marker",
    "Read",
    "Result",
    "Writes",
    "aoptimistic",
    "atransact",
    "optimistic",
    "read_definition",
    "transact",
]

# Attempts of one read-modify-write, each found a watched key changed, before it gives up.
MAX_ATTEMPTS = 64

T = TypeVar("T")
R = TypeVar("R")
# Queues a transaction's writes into its pipeline (after MULTI).
Writes = Callable[[Any], None]


@dataclass(frozen=True)
class Read:
    """What a plan sees: the task (None if absent), for a create the account binding, and
    the value of the marker key the caller asked to watch (None if absent)."""

    task: Task | None
    account_task_id: str | None = None
    marker: str | None = None


@dataclass(frozen=True)
class Marker:
    """A string key watched with the task and shown to the plan: a bulk request records
    its outcome on one task there, in the same MULTI, so that a repeat finds it. One key
    per task, so that the transactions of one request do not invalidate each other."""

    key: str


@dataclass(frozen=True)
class Change:
    """What a plan decided: the new record (None deletes) and more commands for the MULTI."""

    new: Task | None
    extra: Callable[[Any], None] | None = None


Plan = Callable[[Read], Change | None]


@dataclass(frozen=True)
class Result:
    """The record the plan saw, the one it wanted, and whether anything was written."""

    old: Task | None
    new: Task | None
    wrote: bool


def optimistic(
    redis: Redis,
    watched: Sequence[str],
    read: Callable[[Any], T],
    plan: Callable[[T], tuple[R, Writes | None]],
) -> R:
    """One bounded optimistic read-modify-write: WATCH `watched`, `read` through the watching
    pipeline, let `plan` decide the answer and the writes (None: write nothing), queue them in
    a MULTI and EXEC; again from the read when a watched key changed meanwhile, at most
    `MAX_ATTEMPTS` times (then `TransactionContendedError`). `read` and `plan` may raise."""
    with redis.pipeline(transaction=True) as pipe:
        for _ in range(MAX_ATTEMPTS):
            try:
                pipe.watch(*watched)
                answer, writes = plan(read(pipe))
                if writes is None:
                    pipe.unwatch()
                    return answer
                pipe.multi()
                writes(pipe)
                pipe.execute()
                return answer
            except WatchError:
                continue
    raise TransactionContendedError(attempts=MAX_ATTEMPTS)


async def aoptimistic(
    redis: AsyncRedis,
    watched: Sequence[str],
    read: Callable[[Any], Awaitable[T]],
    plan: Callable[[T], tuple[R, Writes | None]],
) -> R:
    """`optimistic` for redis-py's asyncio client (`read` is awaited)."""
    async with redis.pipeline(transaction=True) as pipe:
        for _ in range(MAX_ATTEMPTS):
            try:
                await pipe.watch(*watched)
                answer, writes = plan(await read(pipe))
                if writes is None:
                    await pipe.unwatch()
                    return answer
                pipe.multi()
                writes(pipe)
                await pipe.execute()
                return answer
            except WatchError:
                continue
    raise TransactionContendedError(attempts=MAX_ATTEMPTS)


async def read_definition(pipe: Any, hash_key: str, name: str, *, most: int, code: str) -> Any:
    """The read of an `aoptimistic` on one of the named definitions kept in `hash_key` (the
    limits, the notifications): the stored value of `name`, or None for a new one, which is
    refused with `code` when the hash already holds `most`."""
    raw = await pipe.hget(hash_key, name)
    if raw is None and await pipe.hlen(hash_key) >= most:
        raise InvalidTaskError(code, field="name", max=most)
    return raw


def transact(
    redis: Redis, keys: Keys, task_id: str, plan: Plan, *, account_id: str | None = None
) -> Result:
    """Apply `plan` to task `task_id` atomically (see the module docstring)."""
    tx = _Tx(keys, task_id, account_id)

    def read(pipe: Any) -> tuple[Any, Any, Any]:
        raw = pipe.hgetall(tx.task_key)
        return raw, pipe.get(tx.account_key) if tx.account_key else None, None

    return optimistic(redis, tx.watched, read, lambda got: tx.decide(plan, *got))


async def atransact(
    redis: AsyncRedis,
    keys: Keys,
    task_id: str,
    plan: Plan,
    *,
    account_id: str | None = None,
    marker: Marker | None = None,
) -> Result:
    """`transact` for redis-py's asyncio client; `marker` is watched and read too."""
    tx = _Tx(keys, task_id, account_id, marker)

    async def read(pipe: Any) -> tuple[Any, Any, Any]:
        raw = await pipe.hgetall(tx.task_key)
        bound = await pipe.get(tx.account_key) if tx.account_key else None
        return raw, bound, await pipe.get(marker.key) if marker else None

    return await aoptimistic(redis, tx.watched, read, lambda got: tx.decide(plan, *got))


class _Tx:
    """The part of a transaction both flavours share: keys, the tag, the lost-reply check."""

    def __init__(
        self, keys: Keys, task_id: str, account_id: str | None, marker: Marker | None = None
    ) -> None:
        self.keys = keys
        self.task_id = task_id
        self.task_key = keys.task(task_id)
        self.account_key = keys.account(account_id) if account_id is not None else None
        self.watched = [
            self.task_key,
            *([self.account_key] if self.account_key else []),
            *([marker.key] if marker else []),
        ]
        self.write_id = new_write_id()
        self.attempt: Result | None = None

    def landed(self, raw: Mapping[Any, Any]) -> Result | None:
        """After a WatchError that followed our EXEC: the result, if that EXEC was applied."""
        if self.attempt is None:
            return None
        if self.attempt.new is None:
            # Deleted, by that write or by another one: the delete holds.
            return self.attempt if not raw else None
        return self.attempt if raw and written_by(raw, self.write_id) else None

    def decide(
        self, plan: Plan, raw: Mapping[Any, Any], bound: Any, mark: Any
    ) -> tuple[Result, Writes | None]:
        """What an attempt answers and writes: what an earlier EXEC of ours wrote when its
        reply was lost, else what `plan` decides on the record read."""
        done = self.landed(raw)
        if done is not None:
            return done, None
        read = Read(
            task=Task.from_hash(raw, task_id=self.task_id) if raw else None,
            account_task_id=reply_text(bound) if bound is not None else None,
            marker=reply_text(mark) if mark is not None else None,
        )
        change = plan(read)
        if change is None:
            return Result(read.task, read.task, False), None
        new = change.new
        if new is not None and lifecycle.wait_ends(read.task, new):
            new = lifecycle.without_wait(new)
        result = Result(read.task, new, True)

        def writes(pipe: Any) -> None:
            if new != read.task:
                # An unchanged record (a round bounced off a held account) is not written
                # again: its hash, indexes and events stay as they are; only the extra writes
                # go out.
                queue_task_write(
                    pipe,
                    self.keys,
                    read.task,
                    new,
                    write_id=self.write_id,
                    retired=retired_fields(raw),
                )
            if change.extra is not None:
                change.extra(pipe)
            self.attempt = result

        return result, writes
