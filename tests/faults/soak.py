"""Soak: many tasks, several workers and beats, a fixed time; then count what went wrong.

    python -m tests.faults.soak --tasks 10000 --seconds 120 [--workers 2 --beats 2]

Starts its own Redis (or uses `--redis-url`, which it FLUSHES: never point it at a Redis
you care about), real `celery worker` and `celery beat` processes (the e2e suite's `Stack`)
and stores `--tasks` probe tasks with intervals of 1-5 s whose first slots are spread over
one interval. After `--seconds` it stops dispatching, lets the rounds in flight finish and
checks, from the probe handler's own start/end records and from the round history:

- overlaps: two rounds of one account running at the same instant (must be 0);
- duplicate slots: one (task, slot) run twice (must be 0);
- lost rounds: `lost` records, rounds that started and never ended, tasks left running or
  whose round count disagrees with the rounds the handler saw (must be 0);
- lag: how late each round started after its slot (p50 / p99 / max), throughput, and
  how many messages were dropped as stale (superseded by a re-claim).

`tests/faults/test_soak.py` runs the short version (300 tasks, 20 s) in `make test`;
docs/reliability.md records the figures of the long one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.domain import lifecycle
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.service.consistency import check_consistency
from taskdispatch.store.keys import Keys
from taskdispatch.store.write import queue_task_write
from tests.support.handlers import ROUNDS_KEY, STARTS_KEY
from tests.support.probes import (
    duplicate_slots,
    now_ms,
    overlaps,
    percentile,
    unfinished,
    wait_until,
)
from tests.support.stack import Stack, e2e_env

__all__ = ["SoakReport", "run_soak"]

# Production timings (settings.py defaults), not the e2e suite's shortened ones: the soak
# measures the system as deployed. The e2e base also sets the probe handler.
SOAK_ENV = {
    "TASKDISPATCH_LEASE_TTL_S": "15",
    "TASKDISPATCH_DISPATCH_TIMEOUT_S": "30",
    "TASKDISPATCH_BEAT_MAX_SLEEP_S": "5",
    "TASKDISPATCH_RUNS_KEPT": "500",
}


@dataclass
class SoakReport:
    tasks: int
    seconds: float
    workers: int
    beats: int
    concurrency: int
    rounds_ok: int
    rounds_in_window: int
    rounds_per_s: float
    overlaps: int
    duplicate_slots: int
    lost_records: int
    unfinished_rounds: int
    round_count_mismatches: int
    tasks_left_running: int
    tasks_never_run: int
    stale_messages_dropped: int
    skipped: dict[str, int]
    failed: int
    consistency_problems: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    drain_s: float

    def violations(self) -> dict[str, int]:
        """The counts that must be zero for the invariants to hold."""
        keys = (
            "overlaps",
            "duplicate_slots",
            "lost_records",
            "unfinished_rounds",
            "round_count_mismatches",
            "tasks_left_running",
            "consistency_problems",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


def _load(client: redis.Redis, keys: Keys, count: int, *, seed: int) -> list[str]:
    """Store `count` probe tasks (as the API would), first slots spread over one interval."""
    rng = random.Random(seed)
    start_ms = now_ms() + 2000
    ids = []
    with client.pipeline(transaction=False) as pipe:
        for i in range(count):
            interval = rng.randint(1, 5)
            fields = {
                "sys_type": "mac_intel",
                "xhs_account_id": f"soak-{i:06d}",
                "xhs_account_name": f"soak {i}",
                "task_type": "probe",
                "interval": interval,
                "valid_time_range": [0, 24],
            }
            task = lifecycle.created(
                TaskSpec.model_validate(fields),
                task_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                now_ms=now_ms(),
                default_timezone="Asia/Shanghai",
                task_types={"probe"},
            ).evolve(next_ms=start_ms + rng.randrange(interval * 1000))
            queue_task_write(pipe, keys, None, task)
            ids.append(task.task_id)
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.execute()
    return ids


def _read_json_list(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, int(client.llen(key)), 10_000):
        out += [json.loads(x) for x in client.lrange(key, start, start + 9_999)]
    return out


def _histories(client: redis.Redis, keys: Keys, ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        with client.pipeline(transaction=False) as pipe:
            for task_id in chunk:
                pipe.lrange(keys.runs(task_id), 0, -1)
            for task_id, raw in zip(chunk, pipe.execute(), strict=True):
                out[task_id] = [json.loads(x) for x in raw]
    return out


def _round_nums(client: redis.Redis, keys: Keys, ids: list[str]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        with client.pipeline(transaction=False) as pipe:
            for task_id in chunk:
                pipe.hmget(keys.task(task_id), "round_num", "run_id")
            for task_id, (num, run_id) in zip(chunk, pipe.execute(), strict=True):
                out[task_id] = (int(num or 0), run_id or "")
    return out


def _drained(client: redis.Redis, keys: Keys) -> bool:
    """Nothing queued, reserved or running: every dispatched round has ended."""
    return (
        client.llen("celery") == 0
        and client.hlen("unacked") == 0
        and client.zcard(keys.running()) == 0
    )


def run_soak(
    *,
    tasks: int,
    seconds: float,
    workers: int = 2,
    beats: int = 2,
    concurrency: int = 2,
    redis_url: str | None = None,
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
    seed: int = 1,
    progress: bool = False,
) -> SoakReport:
    """Run the soak and return its figures (see the module docstring)."""
    server = None
    if redis_url is None:
        server = EmbeddedRedis()
        server.start()
        redis_url = server.url
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="taskdispatch-soak-"))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys("td:")
    stack = Stack(redis_url, e2e_env(redis_url, {**SOAK_ENV, **(env or {})}), log_dir)
    try:
        client.flushall()
        client.hset(keys.dispatcher(), "enabled", "1")
        stack.start(workers=workers, beats=beats, concurrency=concurrency, queues="celery")
        ids = _load(client, keys, tasks, seed=seed)
        began = time.monotonic()
        while (left := seconds - (time.monotonic() - began)) > 0:
            time.sleep(min(5.0, left))
            if progress:
                print(
                    f"t={time.monotonic() - began:5.0f}s rounds={client.llen(ROUNDS_KEY)} "
                    f"queue={client.llen('celery')} "
                    f"due_backlog={client.zcount(keys.due(), '-inf', now_ms())}",
                    flush=True,
                )
        client.hset(keys.dispatcher(), "enabled", "0")
        stopped, stopped_ms = time.monotonic(), now_ms()
        wait_until(
            lambda: _drained(client, keys),
            timeout_s=max(60.0, tasks / 20),
            interval_s=0.5,
            message="the rounds in flight to finish",
        )
        drain_s = time.monotonic() - stopped
        elapsed = stopped - began
        return _analyse(
            stopped_ms,
            redis_url,
            client,
            keys,
            stack,
            ids,
            tasks,
            elapsed,
            drain_s,
            workers,
            beats,
            concurrency,
        )
    finally:
        try:
            stack.stop()
        finally:
            client.close()
            if server is not None:
                server.close()


def _analyse(
    stopped_ms: int,
    redis_url: str,
    client: redis.Redis,
    keys: Keys,
    stack: Stack,
    ids: list[str],
    tasks: int,
    elapsed: float,
    drain_s: float,
    workers: int,
    beats: int,
    concurrency: int,
) -> SoakReport:
    starts = _read_json_list(client, STARTS_KEY)
    rounds = _read_json_list(client, ROUNDS_KEY)
    histories = _histories(client, keys, ids)
    outcomes = Counter(r["outcome"] for records in histories.values() for r in records)
    skipped = Counter(
        r["reason"] for records in histories.values() for r in records if r["outcome"] == "skipped"
    )
    ran = Counter(x["task_id"] for x in rounds)
    nums = _round_nums(client, keys, ids)
    lags = [x["start_ms"] - x["scheduled_ms"] for x in starts] or [0]
    in_window = sum(1 for x in rounds if x["start_ms"] <= stopped_ms)

    async def consistency() -> list[str]:
        async_client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await check_consistency(async_client, keys)
        finally:
            await async_client.aclose()

    problems = asyncio.run(consistency())
    stale = sum(w.log().count("stale message") for w in stack.workers)
    return SoakReport(
        tasks=tasks,
        seconds=round(elapsed, 1),
        workers=workers,
        beats=beats,
        concurrency=concurrency,
        rounds_ok=outcomes["ok"],
        rounds_in_window=in_window,
        rounds_per_s=round(in_window / elapsed, 1),
        overlaps=len(overlaps(starts, rounds, open_end_ms={})),
        duplicate_slots=len(duplicate_slots(starts)),
        lost_records=outcomes["lost"],
        unfinished_rounds=len(unfinished(starts, rounds)),
        round_count_mismatches=sum(1 for t in ids if nums[t][0] != ran[t]),
        tasks_left_running=sum(1 for t in ids if nums[t][1]),
        tasks_never_run=sum(1 for t in ids if nums[t][0] == 0),
        stale_messages_dropped=stale,
        skipped=dict(skipped),
        failed=outcomes["failed"],
        consistency_problems=len(problems),
        lag_p50_ms=percentile(lags, 50),
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags),
        drain_s=round(drain_s, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--beats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--redis-url", help="an EMPTY Redis to use (it is flushed)")
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = run_soak(
        tasks=args.tasks,
        seconds=args.seconds,
        workers=args.workers,
        beats=args.beats,
        concurrency=args.concurrency,
        redis_url=args.redis_url,
        log_dir=args.log_dir,
        seed=args.seed,
        progress=True,
    )
    print(json.dumps(asdict(report), indent=2))
    bad = report.violations()
    print("invariants hold" if not bad else f"INVARIANTS VIOLATED: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
