"""The one place that turns a task change into Redis writes.

Every change to a task (API call, round start or end, recovery) goes through
`queue_task_write` inside a MULTI/EXEC after WATCHing the task key, so the hash and all
its indexes change together or not at all. It only queues commands, so the same code
serves redis-py's sync and asyncio pipelines.

A writer may tag its write with a `write_id` (stored in the hash field `WRITE_ID_FIELD`).
redis-py turns a connection lost while a transaction is WATCHing into a WatchError, even
when the EXEC had already been applied and only its reply was lost; a writer that retries
then finds its own tag and knows the write landed, instead of applying it a second time
(see `transaction.py`). The tag stays in the hash at rest, so it is a random integer
(`new_write_id`) that Redis keeps in 8 bytes: a uuid's 32 hex characters took a typical
task's hash past jemalloc's 512-byte size class (docs/benchmarks.md, section 5).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.lifecycle import due_at, is_scheduled
from taskdispatch.domain.models import Task, TaskStatus, stale_fields
from taskdispatch.store.events import queue_event
from taskdispatch.store.indexes import queue_index_writes
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import queue_leave

__all__ = ["WRITE_ID_FIELD", "new_write_id", "queue_task_write", "queue_wake", "written_by"]

# Not a Task field: Task.from_hash ignores it, and a later untagged write leaves it as is.
WRITE_ID_FIELD = "write_id"
# A tag is unique among the writes a retry could mistake for its own (those to one task
# while its reply was lost) with 63 random bits, and fits a listpack's 8-byte integer.
_WRITE_ID_BITS = 63


def new_write_id() -> str:
    """A fresh tag: the decimal text of a random integer, which Redis stores as one (a tag
    written by the release before, 32 hex characters, is still compared as text)."""
    return str(secrets.randbits(_WRITE_ID_BITS))


def written_by(raw: Mapping[Any, Any], write_id: str) -> bool:
    """Whether the task hash `raw` (as read back) carries the tag of the write `write_id`."""
    tag = raw.get(WRITE_ID_FIELD, raw.get(WRITE_ID_FIELD.encode()))
    if isinstance(tag, bytes):
        tag = tag.decode()
    return bool(tag == write_id)


def queue_wake(pipe: Any, keys: Keys) -> None:
    """Wake one sleeping beat; the list holds at most one token, so a burst costs one tick."""
    pipe.lpush(keys.wake(), "1")
    pipe.ltrim(keys.wake(), 0, 0)


def queue_task_write(
    pipe: Any,
    keys: Keys,
    old: Task | None,
    new: Task | None,
    *,
    write_id: str | None = None,
    retired: Sequence[str] = (),
) -> None:
    """Queue the writes that take the store from `old` to `new` (None = absent).

    `write_id` tags the stored hash so that a retry can tell whether this write landed;
    `retired` names fields the stored hash holds from an earlier release (`retired_fields`).
    """
    if new is None:
        if old is None:
            return
        pipe.delete(keys.task(old.task_id), keys.runs(old.task_id), keys.task_audit(old.task_id))
        pipe.delete(keys.account(old.account_id))
        queue_index_writes(pipe, keys, old, None)
        pipe.zrem(keys.due(), old.task_id)
        pipe.zrem(keys.running(), old.task_id)
        pipe.zrem(keys.resume(), old.task_id)
        if old.run_id is not None:
            pipe.delete(keys.progress(old.task_id))  # its round's progress goes with it
        for limit_name in old.waits:
            queue_leave(pipe, keys, old.task_id, limit_name, now_ms=now_ms())
        queue_event(pipe, keys, "task.deleted", task_id=old.task_id, account_id=old.account_id)
        return

    mapping = new.to_hash()
    stale = [*stale_fields(old.to_hash(), mapping), *retired] if old is not None else []
    if write_id is not None:
        mapping[WRITE_ID_FIELD] = write_id
    pipe.hset(keys.task(new.task_id), mapping=mapping)
    if stale:
        pipe.hdel(keys.task(new.task_id), *stale)
    if old is None:
        pipe.set(keys.account(new.account_id), new.task_id)
    queue_index_writes(pipe, keys, old, new)
    # A wait for limits ended by this change (lifecycle.wait_ends): out of their waiters.
    left_wait = old is not None and bool(old.waits) and not new.waits
    if left_wait:
        assert old is not None
        for limit_name in old.waits:
            queue_leave(pipe, keys, new.task_id, limit_name, now_ms=now_ms())

    if not is_scheduled(new):
        pipe.zrem(keys.due(), new.task_id)
    elif old is None or not is_scheduled(old) or _slot(old) != _slot(new) or left_wait:
        # A new slot or a new fence resets any claim a beat holds on the old one; an
        # unchanged slot keeps its claim (see beat.py), so edits do not re-dispatch.
        # Claimed at the slot's start: its jitter added (lifecycle.due_at). A slot that
        # stopped waiting for a limit is due again at its start, not at its park deadline.
        pipe.zadd(keys.due(), {new.task_id: due_at(new)})
        # The new slot may be sooner than a sleeping beat expects.
        queue_wake(pipe, keys)

    if new.status == TaskStatus.PAUSED and new.paused_until_ms is not None:
        pipe.zadd(keys.resume(), {new.task_id: new.paused_until_ms})
    elif old is not None and old.paused_until_ms is not None:
        pipe.zrem(keys.resume(), new.task_id)

    queue_event(
        pipe,
        keys,
        "task.created" if old is None else "task.updated",
        task_id=new.task_id,
        account_id=new.account_id,
        status=new.status.value,
        next_ms=new.next_ms,
        round_num=new.round_num,
    )
    # Entering and leaving `error` are alerts (notifier.py): in this transaction, so every
    # such change is reported once, whichever process made it.
    was_error = old is not None and old.status == TaskStatus.ERROR
    if new.status == TaskStatus.ERROR and not was_error:
        queue_event(
            pipe,
            keys,
            "task.error",
            task_id=new.task_id,
            account_id=new.account_id,
            last_error=new.last_error,
        )
    elif was_error and new.status != TaskStatus.ERROR:
        queue_event(pipe, keys, "task.recovered", task_id=new.task_id, account_id=new.account_id)


def _slot(task: Task) -> tuple[int | None, int]:
    """What identifies a claim: the slot and the fence it was claimed under."""
    return task.next_ms, task.fence
