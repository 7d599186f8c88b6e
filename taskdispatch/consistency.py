"""A consistency checker for operators and tests: do the indexes agree with the tasks?

It reads every task and every index entry (ZSCAN/HGETALL in pages, never KEYS), so it
costs O(tasks); run it on demand (`GET /api/v1/dispatcher/check` or
`taskdispatch consistency`), not on a hot path. Reads are not one snapshot:
on a busy store, re-run to tell a transient mismatch from a real one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from taskdispatch.connections import masked
from taskdispatch.keys import Keys
from taskdispatch.lifecycle import is_scheduled
from taskdispatch.models import Task, TaskStatus
from taskdispatch.settings import get_settings

__all__ = ["check_consistency", "main"]

_PAGE = 500


async def _members(redis: Redis, key: str) -> AsyncIterator[tuple[str, float]]:
    async for member, score in redis.zscan_iter(key, count=_PAGE):
        yield str(member), float(score)


async def _load(redis: Redis, keys: Keys, ids: list[str]) -> dict[str, Task | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hgetall(keys.task(task_id))
        raws = await pipe.execute()
    return {i: (Task.from_hash(raw) if raw else None) for i, raw in zip(ids, raws, strict=True)}


async def check_consistency(redis: Redis, keys: Keys) -> list[str]:
    """Every disagreement between task hashes and their indexes, as readable sentences."""
    problems: list[str] = []
    ids = sorted({member async for member, _ in _members(redis, keys.all_tasks())})
    live: set[str] = set()
    for start in range(0, len(ids), _PAGE):
        page = await _load(redis, keys, ids[start : start + _PAGE])
        for task_id, task in page.items():
            if task is None:
                problems.append(f"task {task_id} is listed but its hash is missing")
        tasks = [task for task in page.values() if task is not None]
        live.update(task.task_id for task in tasks)
        problems.extend(await _check_page(redis, keys, tasks))

    # SCAN (never KEYS) for the per-tag indexes; the limits' waiters come from their names.
    tag_indexes = [str(k) async for k in redis.scan_iter(match=keys.tag("*"), count=_PAGE)]
    waiters = [keys.limit_waiters(str(name)) for name in await redis.hkeys(keys.limits())]
    indexes = [keys.due(), keys.running(), *(keys.status(s) for s in TaskStatus)]
    for index in [*indexes, *tag_indexes, *waiters]:
        async for member, _ in _members(redis, index):
            if member not in live:
                problems.append(f"{index} holds {member}, which is not a stored task")
    return problems


async def _check_page(redis: Redis, keys: Keys, tasks: list[Task]) -> list[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for task in tasks:
            pipe.get(keys.account(task.account_id))
            for status in TaskStatus:
                pipe.zscore(keys.status(status), task.task_id)
            pipe.zscore(keys.due(), task.task_id)
            pipe.zscore(keys.running(), task.task_id)
            for tag in task.tags:
                pipe.zscore(keys.tag(tag), task.task_id)
            if task.wait_limit is not None:
                pipe.zscore(keys.limit_waiters(task.wait_limit), task.task_id)
        replies: list[Any] = await pipe.execute()
    problems: list[str] = []
    at = 0
    for task in tasks:
        width = 3 + len(TaskStatus) + len(task.tags) + (task.wait_limit is not None)
        account, *scores, due, running = replies[at : at + 3 + len(TaskStatus)]
        extra = replies[at + 3 + len(TaskStatus) : at + width]
        at += width
        by_status = {s.value: score for s, score in zip(TaskStatus, scores, strict=True)}
        problems.extend(_check_task(task, account, by_status, due, running))
        for tag, score in zip(task.tags, extra, strict=False):
            if score is None:
                problems.append(f"task {task.task_id} is missing from the index of tag {tag!r}")
        if task.wait_limit is not None and extra[-1] is None:
            problems.append(
                f"task {task.task_id} waits for limit {task.wait_limit!r} but is not among "
                "its waiters"
            )
    return problems


def _check_task(
    task: Task, account: Any, status_scores: dict[str, Any], due: Any, running: Any
) -> list[str]:
    out: list[str] = []
    tid = task.task_id
    if account != tid:
        out.append(f"account {task.account_id} points to {account!r}, not to its task {tid}")
    for status, score in status_scores.items():
        if (score is not None) != (status == task.status.value):
            where = "missing from" if score is None else "also in"
            out.append(f"task {tid} ({task.status.value}) is {where} the {status} index")
    scheduled = is_scheduled(task)
    if scheduled and due is None:
        out.append(f"task {tid} is pending but not in the due index (it would never run)")
    if not scheduled and due is not None:
        out.append(f"task {tid} is {task.status.value} but still in the due index")
    if (task.run_id is not None) != (running is not None):
        out.append(f"task {tid} run_id={task.run_id!r} disagrees with the running index")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`taskdispatch consistency`: print the problems as JSON; exit 1 if there are any."""
    argparse.ArgumentParser(prog="taskdispatch consistency", description=__doc__).parse_args(argv)
    try:
        return asyncio.run(_check())
    except (RedisError, OSError):
        url = masked(get_settings().redis_url)
        print(f"consistency: Redis at {url} cannot be reached", file=sys.stderr)
        return 1


async def _check() -> int:
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        problems = await check_consistency(redis, Keys(settings.key_prefix))
    finally:
        await redis.aclose()
    print(json.dumps({"consistent": not problems, "problems": problems}, ensure_ascii=False))
    return 1 if problems else 0
