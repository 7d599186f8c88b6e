"""The one optimistic transaction on a task, in a synchronous and an asyncio flavour.

`WATCH` the task key (and, for a create, the account key), read, let `plan` decide the
change in Python, then `MULTI` the hash, its indexes (`write.queue_task_write`) and the
plan's extra writes, and `EXEC`. Another writer in between makes `EXEC` fail with
`WatchError`, and the whole read-plan-write runs again on the fresh record, so `plan` must
be a pure function of what it is given.

A lost EXEC reply: redis-py turns a connection lost while a transaction WATCHes into a
`WatchError`, even when Redis had applied the `EXEC`. Each write therefore tags the hash
with its `write_id` (`write.WRITE_ID_FIELD`); a retry that finds its own tag (or, for a
delete, no task) returns what it wrote instead of planning again on the state its own
write produced (a reorder applied twice, a pause answered with 409).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import WatchError

from taskdispatch import lifecycle
from taskdispatch.keys import Keys
from taskdispatch.models import Task
from taskdispatch.write import new_write_id, queue_task_write, written_by

__all__ = ["Change", "Marker", "Read", "Result", "atransact", "transact"]


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


def transact(
    redis: Redis, keys: Keys, task_id: str, plan: Plan, *, account_id: str | None = None
) -> Result:
    """Apply `plan` to task `task_id` atomically (see the module docstring)."""
    tx = _Tx(keys, task_id, account_id)
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(*tx.watched)
                raw = pipe.hgetall(tx.task_key)
                bound = pipe.get(tx.account_key) if tx.account_key else None
                done = tx.landed(raw)
                if done is not None:
                    pipe.unwatch()
                    return done
                read = tx.read(raw, bound)
                change = plan(read)
                if change is None:
                    pipe.unwatch()
                    return Result(read.task, read.task, False)
                pipe.multi()
                result = tx.queue(pipe, read, change)
                pipe.execute()
                return result
            except WatchError:
                continue


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
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*tx.watched)
                raw = await pipe.hgetall(tx.task_key)
                bound = await pipe.get(tx.account_key) if tx.account_key else None
                done = tx.landed(raw)
                if done is not None:
                    await pipe.unwatch()
                    return done
                mark = await pipe.get(marker.key) if marker else None
                read = tx.read(raw, bound, mark)
                change = plan(read)
                if change is None:
                    await pipe.unwatch()
                    return Result(read.task, read.task, False)
                pipe.multi()
                result = tx.queue(pipe, read, change)
                await pipe.execute()
                return result
            except WatchError:
                continue


class _Tx:
    """The part of a transaction both flavours share: keys, the tag, the lost-reply check."""

    def __init__(
        self, keys: Keys, task_id: str, account_id: str | None, marker: Marker | None = None
    ) -> None:
        self.keys = keys
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

    @staticmethod
    def read(raw: Mapping[Any, Any], bound: Any, mark: Any = None) -> Read:
        return Read(
            task=Task.from_hash(raw) if raw else None,
            account_task_id=bound.decode() if isinstance(bound, bytes) else bound,
            marker=mark.decode() if isinstance(mark, bytes) else mark,
        )

    def queue(self, pipe: Any, read: Read, change: Change) -> Result:
        new = change.new
        if new is not None and lifecycle.wait_ends(read.task, new):
            new = lifecycle.without_wait(new)
        queue_task_write(pipe, self.keys, read.task, new, write_id=self.write_id)
        if change.extra is not None:
            change.extra(pipe)
        attempt = self.attempt = Result(read.task, new, True)
        return attempt
