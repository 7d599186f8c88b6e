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

from taskdispatch.domain.lifecycle import is_scheduled
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.settings import get_settings
from taskdispatch.store.connections import api_client, masked
from taskdispatch.store.indexes import SEARCH_SEPARATOR, entries
from taskdispatch.store.keys import Keys

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
    return {
        i: (Task.from_hash(raw, task_id=i) if raw else None)
        for i, raw in zip(ids, raws, strict=True)
    }


async def check_consistency(redis: Redis, keys: Keys) -> list[str]:
    """Every disagreement between task hashes and their indexes, as readable sentences."""
    problems: list[str] = []
    ids = sorted({member async for member, _ in _members(redis, keys.all_tasks())})
    for start in range(0, len(ids), _PAGE):
        page = await _load(redis, keys, ids[start : start + _PAGE])
        for task_id, task in page.items():
            if task is None:
                problems.append(f"task {task_id} is listed but its hash is missing")
        tasks = [task for task in page.values() if task is not None]
        problems.extend(await _check_page(redis, keys, tasks))
    problems.extend(await _check_members(redis, keys))
    return problems


async def _check_members(redis: Redis, keys: Keys) -> list[str]:
    """Every member of every index belongs to a stored task that should be there."""
    # SCAN (never KEYS) for the per-value listing indexes; the limits' waiters by name.
    listings = [keys.all_tasks(), keys.next_runs(), keys.search()]
    listings += [keys.status(s) for s in TaskStatus]
    listings += [str(k) async for k in redis.scan_iter(match=keys.indexes(), count=_PAGE)]
    waiters = [keys.limit_waiters(str(name)) for name in await redis.hkeys(keys.limits())]
    problems: list[str] = []
    for index in [*listings, keys.due(), keys.running(), *waiters]:
        members = [member async for member, _ in _members(redis, index)]
        for start in range(0, len(members), _PAGE):
            chunk = members[start : start + _PAGE]
            owners = [m.rsplit(SEARCH_SEPARATOR, 1)[-1] for m in chunk]
            tasks = await _load(redis, keys, sorted(set(owners)))
            for member, owner in zip(chunk, owners, strict=True):
                task = tasks[owner]
                if task is None:
                    problems.append(f"{index} holds {member!r}, which is not a stored task")
                elif index in listings and (index, member) not in entries(keys, task):
                    problems.append(f"{index} holds {member!r}, which task {owner} no longer has")
    return problems


async def _check_page(redis: Redis, keys: Keys, tasks: list[Task]) -> list[str]:
    expected = [entries(keys, task) for task in tasks]
    async with redis.pipeline(transaction=False) as pipe:
        for task, wanted in zip(tasks, expected, strict=True):
            pipe.get(keys.account(task.account_id))
            pipe.zscore(keys.due(), task.task_id)
            pipe.zscore(keys.running(), task.task_id)
            for key, member in wanted:
                pipe.zscore(key, member)
            for limit_name in task.waits:
                pipe.zscore(keys.limit_waiters(limit_name), task.task_id)
        replies: list[Any] = await pipe.execute()
    problems: list[str] = []
    at = 0
    for task, wanted in zip(tasks, expected, strict=True):
        account, due, running = replies[at : at + 3]
        scores = replies[at + 3 : at + 3 + len(wanted)]
        at += 3 + len(wanted)
        problems.extend(_check_task(task, account, due, running))
        for ((key, member), score), found in zip(wanted.items(), scores, strict=True):
            if found is None:
                problems.append(f"task {task.task_id} is missing from {key} ({member!r})")
            elif float(found) != score:
                problems.append(f"task {task.task_id} has score {found} in {key}, not {score}")
        for limit_name in task.waits:
            at += 1
            if replies[at - 1] is None:
                problems.append(
                    f"task {task.task_id} waits for limit {limit_name!r} but is not "
                    "among its waiters"
                )
    return problems


def _check_task(task: Task, account: Any, due: Any, running: Any) -> list[str]:
    out: list[str] = []
    tid = task.task_id
    if account != tid:
        out.append(f"account {task.account_id} points to {account!r}, not to its task {tid}")
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
    # The API's client: the same Redis (or Sentinel-named master) the API checks.
    redis = api_client(settings)
    try:
        problems = await check_consistency(redis, Keys(settings.key_prefix))
    finally:
        await redis.aclose()
    print(json.dumps({"consistent": not problems, "problems": problems}, ensure_ascii=False))
    return 1 if problems else 0
