"""9. The worker's floor: rounds of the `noop` handler against plain Celery no-op tasks.

One `celery worker` (prefork, the app's own settings: prefetch, events, acks) runs, in
alternating phases, N plain no-op tasks (`bench.noop`, registered beside the app's tasks by
`bench.worker_app`) and N rounds (N tasks due at once, claimed by one beat). Each phase is
timed from the moment its work is available to the moment the worker's own counters
(`celery inspect stats`) show all N done, so the ratio compares the same worker, pool,
concurrency and prefetch doing Celery's minimum and doing a whole round. The pool is the
lag section's (`lag_concurrency`), so its rounds/s is the capacity the lag loads are
measured against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery

from bench.config import Profile
from bench.load import load_tasks
from bench.procs import Child, bench_env, wait_until
from bench.redisstats import connect, flush
from bench.stats import Stat
from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys

__all__ = ["NOOP_TASK", "run"]

NOOP_TASK = "bench.noop"
WORKER = ["-m", "celery", "-A", "bench.worker_app", "worker", "-P", "prefork"]
BEAT = ["-m", "celery", "-A", "celery_app", "beat", "--loglevel", "WARNING"]


def _done(app: Celery, name: str) -> int:
    """How many tasks called `name` every worker has run (its own counter)."""
    stats = app.control.inspect(timeout=1.0).stats() or {}
    return sum(int(node.get("total", {}).get(name, 0)) for node in stats.values())


def _timed(app: Celery, name: str, n: int, start: Callable[[], None], timeout_s: float) -> float:
    """Seconds from `start()` to N more tasks `name` done."""
    before = _done(app, name)
    t0 = time.perf_counter()
    start()
    if not wait_until(lambda: _done(app, name) >= before + n, timeout_s, step_s=0.05):
        raise TimeoutError(f"{name}: {_done(app, name) - before} of {n} done in {timeout_s} s")
    return time.perf_counter() - t0


def run(url: str, profile: Profile, workdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    client = connect(url)
    flush(client)
    keys = Keys("td:")
    n = profile.worker_n
    env = bench_env(url, TASKDISPATCH_ALLOW_EVICTION="true", TASKDISPATCH_RUNS_KEPT="2")
    work = Path(workdir)
    app = create_celery_app(Settings(redis_url=url))
    concurrency = str(profile.lag_concurrency)
    worker = Child("worker-floor", [*WORKER, "-c", concurrency, "-l", "WARNING"], env, work)
    beat = Child("beat-floor", BEAT, env, work)
    plain: list[float] = []
    rounds: list[float] = []
    offset = 0
    try:
        if not wait_until(lambda: _done(app, NOOP_TASK) >= 0 and bool(app.control.ping()), 60):
            raise RuntimeError(f"the worker did not start:\n{worker.log_tail()}")
        for r in range(profile.worker_repeats):
            log(f"worker: round {r + 1}, {n:,} plain no-op tasks")

            def publish() -> None:
                with app.producer_or_acquire() as producer:
                    for _ in range(n):
                        app.send_task(NOOP_TASK, producer=producer)

            plain.append(n / _timed(app, NOOP_TASK, n, publish, 300))
            log(f"worker: round {r + 1}, {n:,} rounds of noop")

            def due(start: int = offset) -> None:
                now = time.time_ns() // 1_000_000
                load_tasks(url, keys, start, start + n, now_ms=now, due_now=True)
                client.lpush(keys.wake(), "1")

            rounds.append(n / _timed(app, ROUND_TASK, n, due, 300))
            offset += n
    finally:
        beat.stop()
        worker.stop()
        app.close()
        flush(client)
    ratio = [a / b for a, b in zip(rounds, plain, strict=True)]
    return {
        "n": n,
        "concurrency": profile.lag_concurrency,
        "plain_per_s": Stat.of(plain).to_json(),
        "rounds_per_s": Stat.of(rounds).to_json(),
        "ratio": Stat.of(ratio).to_json(),
    }
