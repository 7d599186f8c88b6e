"""Bulk loads: N stored tasks as the store writes them, and N RedBeat entries as RedBeat does.

Creating 1M tasks through the API (one HTTP request and one WATCH/MULTI transaction each)
would take hours on two cores, so the benchmarks write the same records directly: each task
is a `taskdispatch.domain.models.Task` written by
`taskdispatch.store.write.queue_task_write` (the code every API write goes through), and
each RedBeat entry gets the three writes of `RedBeatSchedulerEntry.save()`, all in big
non-transactional pipelines (see bench/resp.py).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.resp import RespPipe
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.domain.schedule import hour_window
from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.store.keys import Keys
from taskdispatch.store.write import queue_task_write

__all__ = ["RUN_PARAMS", "bench_task", "load_redbeat", "load_tasks", "task_id_of"]

# The run parameters of the design document's example body: a typical task's kwargs.
RUN_PARAMS = {
    "user_query": "开始运营",
    "user_topic": "科技",
    "user_style": "专业",
    "user_target_audience": "技术爱好者",
}
HOUR_MS = 3_600_000
PARALLEL_FROM = 50_000


def task_id_of(i: int) -> str:
    """A uuid4-shaped id (as the API makes), the same for the same i in every run."""
    return str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4))


def bench_task(i: int, *, now_ms: int, next_ms: int | None = None) -> Task:
    """Task i: pending, hourly, always in window, next run an hour (and i ms) from now."""
    return Task(
        task_id=task_id_of(i),
        account_id=f"bench-account-{i:07d}",
        account_name=f"账号{i}",
        task_type="noop",
        sys_type="mac_intel",
        status=TaskStatus.PENDING,
        interval_s=3600,
        windows=hour_window((0, 24)),
        timezone="Asia/Shanghai",
        created_ms=now_ms + i,
        updated_ms=now_ms + i,
        next_ms=now_ms + HOUR_MS + i if next_ms is None else next_ms,
        kwargs=dict(RUN_PARAMS),
    )


def load_tasks(
    redis_url: str, keys: Keys, start: int, stop: int, *, now_ms: int, due_now: bool = False
) -> None:
    """Store tasks start..stop-1 exactly as `TaskStore.create` would (indexes included);
    with `due_now` their next run is a millisecond ago instead of in an hour.

    Big loads are split between two processes: building each Task and its commands in
    Python is the bound (~10k tasks/s per process), not Redis. They are spawned, not
    forked: a forked child would inherit whatever Celery connection pool an earlier section
    left in this process, and kombu's after-fork cleanup of it blocks in a BRPOP read.
    """
    if stop - start < PARALLEL_FROM:
        _load_range(redis_url, keys, start, stop, now_ms, due_now)
        return
    middle = (start + stop) // 2
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        halves = [(start, middle), (middle, stop)]
        futures = [
            pool.submit(_load_range, redis_url, keys, a, b, now_ms, due_now) for a, b in halves
        ]
        for future in futures:
            future.result()


def _load_range(
    redis_url: str, keys: Keys, start: int, stop: int, now_ms: int, due_now: bool
) -> None:
    next_ms = now_ms - 1 if due_now else None
    with RespPipe(redis_url) as pipe:
        for i in range(start, stop):
            queue_task_write(pipe, keys, None, bench_task(i, now_ms=now_ms, next_ms=next_ms))


def redbeat_definition(app: Any, i: int) -> tuple[str, str]:
    """(key, definition JSON) of RedBeat entry i, encoded by RedBeat's own encoder."""
    from celery.schedules import schedule
    from redbeat.decoder import RedBeatJSONEncoder
    from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf

    ensure_conf(app)
    name = f"bench-entry-{i:07d}"
    definition = {
        "name": name,
        "task": ROUND_TASK,
        "args": [],
        "kwargs": {
            "task_id": task_id_of(i),
            "fence": 0,
            "slot_ms": 0,
            "account_id": f"bench-account-{i:07d}",
            "task_type": "noop",
        },
        "options": {},
        "schedule": schedule(run_every=3600, app=app),
        "enabled": True,
    }
    key = RedBeatSchedulerEntry.generate_key(app, name)
    return key, json.dumps(definition, cls=RedBeatJSONEncoder)


def load_redbeat(
    redis_url: str, app: Any, start: int, stop: int, *, now_s: float, due_now: bool = False
) -> None:
    """Entries start..stop-1 written as `RedBeatSchedulerEntry.save()` writes them: the
    definition, the meta (last run now) and the schedule score (due in an hour); with
    `due_now`, never run (no meta) and scored a second ago, so RedBeat sends them at once."""
    from redbeat.decoder import RedBeatJSONEncoder
    from redbeat.schedulers import ensure_conf

    schedule_key = ensure_conf(app).schedule_key
    meta = json.dumps({"last_run_at": datetime.fromtimestamp(now_s, UTC)}, cls=RedBeatJSONEncoder)
    with RespPipe(redis_url) as pipe:
        for i in range(start, stop):
            key, definition = redbeat_definition(app, i)
            pipe.hset(key, "definition", definition)
            if due_now:
                pipe.zadd(schedule_key, {key: now_s - 1})
            else:
                pipe.hsetnx(key, "meta", meta)
                pipe.zadd(schedule_key, {key: now_s + 3600 + i / 1000})
