"""3. Scheduling lag end to end: real `celery worker` (prefork) and `celery beat` processes.

For each task count of the sweep: tasks with intervals of 1–10 s (seeded) and the `noop`
handler are created through `TaskDispatcher` while a worker and a beat run; after a warm-up,
fixed windows are observed. Per window, from the run history (`td:runs:*`, RunRecord):
lag = started_ms − scheduled_ms of every round that started in it (p50/p99/max), and rounds
completed per second. The CPU each process used during the windows names the bound.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.config import Profile
from bench.procs import Child, bench_env, wait_until
from bench.redisstats import connect, flush
from bench.stats import Stat, percentile
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.history import RunRecord
from taskdispatch.store.keys import Keys

__all__ = ["counts", "create_tasks", "run", "run_records"]

# Enough history per task for the whole run of a 1-second task (the default keeps 50).
RUNS_KEPT = 1_000
QUEUE = "celery"  # the default queue the rounds go to
SHORTEST_S, LONGEST_S = 1, 10  # each task's interval, drawn uniformly (whole seconds)
# Rounds/s a task asks on average: the mean of 1/interval over the intervals drawn.
DEMAND_PER_TASK = sum(1 / i for i in range(SHORTEST_S, LONGEST_S + 1)) / (
    LONGEST_S - SHORTEST_S + 1
)
# The lag claim holds up to this share of the worker's measured capacity: one load is put
# there whatever the fixed counts are, so the claim is measured at its edge, not below it.
CLAIM_SHARE = 0.8
WORKER = ["-m", "celery", "-A", "celery_app", "worker", "-P", "prefork", "--loglevel", "WARNING"]
BEAT = ["-m", "celery", "-A", "celery_app", "beat", "--loglevel", "WARNING"]


async def create_tasks(url: str, intervals: list[int], phases: list[float]) -> list[str]:
    """Create the tasks; task i's first run is `phases[i]` seconds after the creation loop
    starts (+2 s), so slots are spread as for tasks created over time, not in one burst."""
    start_s = time.time() + 2
    async with TaskDispatcher(Settings(redis_url=url)) as dispatcher:
        ids = []
        for i, interval in enumerate(intervals):
            first = datetime.fromtimestamp(start_s + phases[i], UTC).isoformat()
            task = await dispatcher.create_task(
                TaskSpec(
                    sys_type="mac_intel",
                    task_type="noop",
                    xhs_account_id=f"lag-account-{i:05d}",
                    xhs_account_name=f"lag {i}",
                    interval=interval,
                    valid_time_range=[0, 24],
                    start_at=first,
                )
            )
            ids.append(task.task_id)
        return ids


def run_records(client: redis.Redis, keys: Keys, ids: list[str]) -> list[RunRecord]:
    records: list[RunRecord] = []
    for start in range(0, len(ids), 500):
        with client.pipeline(transaction=False) as pipe:
            for task_id in ids[start : start + 500]:
                pipe.lrange(keys.runs(task_id), 0, -1)
            for raw_list in pipe.execute():
                records.extend(RunRecord.from_json(raw.decode()) for raw in raw_list)
    return records


def _cpu(children: dict[str, Child], redis_proc: psutil.Process) -> dict[str, float]:
    times = redis_proc.cpu_times()
    return {name: c.cpu_seconds() for name, c in children.items()} | {
        "redis": times.user + times.system
    }


def _one(
    url: str, n: int, profile: Profile, log_dir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    client = connect(url)
    keys = Keys("td:")
    flush(client)
    rnd = random.Random(n)
    intervals = _intervals(rnd, n)
    phases = [rnd.uniform(0, interval) for interval in intervals]
    env = bench_env(url, TASKDISPATCH_RUNS_KEPT=str(RUNS_KEPT))
    redis_proc = psutil.Process(int(client.info("server")["process_id"]))
    worker = Child(
        f"lag-{n}-worker",
        [*WORKER, "-c", str(profile.lag_concurrency), "-n", f"lag{n}@%h"],
        env,
        log_dir,
    )
    beat = None
    try:
        if not wait_until(lambda: client.zcard(keys.workers()) > 0, 60):
            raise RuntimeError(f"the worker did not start:\n{worker.log_tail()}")
        beat = Child(
            f"lag-{n}-beat",
            [*BEAT, "-s", str(log_dir / f"beat-{n}-schedule")],
            env,
            log_dir,
        )
        log(f"lag: {n:,} tasks, creating them while worker and beat run")
        ids = asyncio.run(create_tasks(url, intervals, phases))
        time.sleep(profile.lag_warmup_s)
        windows = []
        for _ in range(profile.lag_windows):
            cpu0 = _cpu({"worker": worker, "beat": beat}, redis_proc)
            sys0 = psutil.cpu_times()
            w0 = time.time_ns() // 1_000_000
            time.sleep(profile.lag_window_s)
            w1 = time.time_ns() // 1_000_000
            cpu1 = _cpu({"worker": worker, "beat": beat}, redis_proc)
            sys1 = psutil.cpu_times()
            total = sum(sys1) - sum(sys0)
            idle = (sys1.idle + getattr(sys1, "iowait", 0)) - (
                sys0.idle + getattr(sys0, "iowait", 0)
            )
            busy = 1 - idle / total if total > 0 else float("nan")
            # Rounds published but not yet taken by a worker: where a backlog piles up.
            queued = client.llen(QUEUE)
            cores = {k: (cpu1[k] - cpu0[k]) / ((w1 - w0) / 1000) for k in cpu0}
            windows.append(
                {"start_ms": w0, "end_ms": w1, "queued": queued, "cores": cores, "busy": busy}
            )
        if not (worker.alive() and beat.alive()):
            raise RuntimeError(f"a process died:\n{worker.log_tail()}\n{beat.log_tail()}")
    finally:
        if beat is not None:
            beat.stop()
        worker.stop(timeout_s=10)
    records = run_records(client, keys, ids)
    flush(client)
    return _summarise(n, intervals, records, windows)


def _summarise(
    n: int, intervals: list[int], records: list[RunRecord], windows: list[dict[str, Any]]
) -> dict[str, Any]:
    per_window, all_lags = [], []
    for w in windows:
        w0, w1 = w["start_ms"], w["end_ms"]
        lags = [
            (r.started_ms - r.scheduled_ms) / 1000
            for r in records
            if r.started_ms is not None and r.scheduled_ms is not None and w0 <= r.started_ms < w1
        ]
        done = sum(
            1 for r in records if r.outcome == "ok" and r.finished_ms and w0 <= r.finished_ms < w1
        )
        skipped = sum(
            1
            for r in records
            if r.outcome == "skipped" and r.scheduled_ms and w0 <= r.scheduled_ms < w1
        )
        all_lags.extend(lags)
        per_window.append(
            {
                "p50": percentile(lags, 50),
                "p99": percentile(lags, 99),
                "max": max(lags, default=float("nan")),
                "rounds_per_s": done / ((w1 - w0) / 1000),
                "started": len(lags),
                "skipped": skipped,
                "queued": w["queued"],
                "busy": w["busy"],
                "cores": w["cores"],
            }
        )
    cores = {
        k: Stat.of([w["cores"][k] for w in per_window]).to_json() for k in per_window[0]["cores"]
    }
    return {
        "tasks": n,
        "demand_per_s": sum(1 / i for i in intervals),
        "p50_s": Stat.of([w["p50"] for w in per_window]).to_json(),
        "p99_s": Stat.of([w["p99"] for w in per_window]).to_json(),
        "max_s": Stat.of([w["max"] for w in per_window]).to_json(),
        "rounds_per_s": Stat.of([w["rounds_per_s"] for w in per_window]).to_json(),
        "queued": Stat.of([w["queued"] for w in per_window]).to_json(),
        "machine_busy": Stat.of([w["busy"] for w in per_window]).to_json(),
        "skipped": sum(w["skipped"] for w in per_window),
        "cores": cores,
        "windows": per_window,
        "lags_s": all_lags,
    }


def _intervals(rnd: random.Random, n: int) -> list[int]:
    """The n tasks' intervals (drawn first from the run's seeded generator)."""
    return [rnd.randint(SHORTEST_S, LONGEST_S) for _ in range(n)]


def _demand_per_s(n: int) -> float:
    """Rounds/s the n tasks of a load ask (the same draw as the load's own)."""
    return sum(1 / i for i in _intervals(random.Random(n), n))


def counts(profile: Profile, capacity_per_s: float | None) -> list[int]:
    """The profile's task counts, plus the largest one asking at most `CLAIM_SHARE` of the
    worker's capacity (section 9) when it was measured."""
    if not capacity_per_s:
        return sorted(profile.lag_counts)
    target = CLAIM_SHARE * capacity_per_s
    # Each count draws its own intervals, so its demand strays a few % from the mean: the
    # search starts well above the expected count and comes down to the first that fits.
    n = round(1.1 * target / DEMAND_PER_TASK)
    while n > 1 and _demand_per_s(n) > target:
        n -= 1
    return sorted({*profile.lag_counts, n})


def run(
    url: str,
    profile: Profile,
    workdir: str,
    log: Callable[[str], None],
    *,
    capacity_per_s: float | None = None,
) -> dict[str, Any]:
    log_dir = Path(workdir)
    out: dict[str, Any] = {
        "window_s": profile.lag_window_s,
        "windows": profile.lag_windows,
        "warmup_s": profile.lag_warmup_s,
        "concurrency": profile.lag_concurrency,
        "points": [],
    }
    out["blpop_overshoot_ms"] = _blpop_overshoot(url)
    for n in counts(profile, capacity_per_s):
        out["points"].append(_one(url, n, profile, log_dir, log))
    return out


def _blpop_overshoot(url: str, timeout_s: float = 0.05, samples: int = 10) -> dict[str, Any]:
    """How late an idle Redis ends a BLPOP timeout (the beat sleeps in BLPOP until due).

    Redis checks blocked clients' timeouts on its event-loop ticks, `hz` (10) per second when
    idle, so a sleeping beat can wake up to ~100 ms after the slot it waited for.
    """
    client = connect(url)
    late = []
    for _ in range(samples):
        t0 = time.perf_counter()
        client.blpop(["bench:nothing"], timeout=timeout_s)
        late.append((time.perf_counter() - t0 - timeout_s) * 1000)
    client.close()
    return Stat.of(late).to_json()
