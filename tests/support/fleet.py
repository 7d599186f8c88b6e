"""A fleet of tasks stored at once, as `TaskStore.create` would store each (indexes included),
for tests that need thousands of accounts without creating them one request at a time."""

from __future__ import annotations

from collections.abc import Callable

import redis

from taskdispatch.domain.models import Task
from taskdispatch.store.keys import Keys
from taskdispatch.store.write import queue_task_write
from tests.support.tasks import task_record

__all__ = ["fleet_task", "seed_fleet"]

HOUR_MS = 3_600_000


def fleet_task(i: int, *, now_ms: int, tags: tuple[str, ...] = ()) -> Task:
    """Account `acct-{i:05d}`: pending, hourly, always in window, created i ms after now."""
    return task_record(
        task_id=f"fleet-{i:05d}",
        account_id=f"acct-{i:05d}",
        account_name=f"账号{i}",
        created_ms=now_ms + i,
        next_ms=now_ms + HOUR_MS + i,
        tags=tags,
        kwargs={"user_query": "开始运营"},
    )


def seed_fleet(
    url: str,
    keys: Keys,
    count: int,
    *,
    now_ms: int,
    tags_of: Callable[[int], tuple[str, ...]] = lambda i: (),
) -> list[str]:
    """Store tasks 0..count-1 (pipelined in batches); returns their ids in creation order."""
    client = redis.Redis.from_url(url)
    try:
        tasks = [fleet_task(i, now_ms=now_ms, tags=tags_of(i)) for i in range(count)]
        for start in range(0, count, 500):
            with client.pipeline(transaction=False) as pipe:
                for task in tasks[start : start + 500]:
                    queue_task_write(pipe, keys, None, task)
                pipe.execute()
        return [t.task_id for t in tasks]
    finally:
        client.close()
