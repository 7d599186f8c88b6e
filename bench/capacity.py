"""7. Capacity of one Redis: how much of its one core the system uses, and the fleet that
fills it.

Redis runs commands on one thread, so the figure that bounds a deployment is the CPU time of
that thread (`INFO cpu` `used_cpu_user_main_thread` + `used_cpu_sys_main_thread`: command
execution, socket reads and writes, replies), measured here as deltas while a known load runs:

- **Rounds.** One beat and one prefork worker run `capacity_tasks` tasks (each count of the
  sweep in turn; the `noop` handler, one interval, phases spread over it) with the task
  store on the bench Redis and the Celery broker on a second one started here (both with
  append-only persistence, as in production), so the two costs come apart: the store's
  (claims, leases and admissions, round transactions, history, events, heartbeats) and the
  broker's (publishes, consumes, acks, task events). After a warm-up, per window: rounds
  finished (from the history), both servers' main-thread CPU and commands, the worker's and
  the beat's CPU. Then the dispatcher is stopped and an idle window gives the fixed cost of
  the processes themselves (heartbeats, blocking waits, the watchdog), which is subtracted.
- **Stored tasks.** `capacity_stored` tasks loaded as the store writes them: memory, the
  fork and duration of an AOF rewrite (what persistence costs per stored task), the Redis CPU
  of API reads at that size (one uvicorn process, load from wrk or bench/loadgen.py):
  `GET /tasks/{id}`, a listing page of 100, `GET /dispatcher/status`.

The fleet figures derived from them (`fleet`) are the rounds per second at which one Redis
core would be busy, and what drives that many rounds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.api import api_server, load_once
from bench.config import Profile
from bench.lag import create_tasks, run_records
from bench.load import load_tasks, task_id_of
from bench.probe import ProbeError
from bench.procs import Child, bench_env, wait_until
from bench.redisstats import commandstats, connect, delta, flush
from bench.stats import Stat
from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys

__all__ = ["fleet", "run"]

WORKER = ["-m", "celery", "-A", "celery_app", "worker", "-P", "prefork", "--loglevel", "WARNING"]
BEAT = ["-m", "celery", "-A", "celery_app", "beat", "--loglevel", "WARNING"]
READS = {
    "GET /tasks/{id}": "/api/v1/tasks/{id}",
    "GET /tasks/?limit=100": "/api/v1/tasks/?limit=100",
    "GET /dispatcher/status": "/api/v1/dispatcher/status",
}
# Ids cycled by the single-task read.
READ_IDS = 200
# Of one core, the share a primary should stay under (room for bursts, forks, failovers).
HEADROOM = 0.5


def main_thread_cpu_s(client: redis.Redis) -> float:
    """CPU seconds of the server's main thread (all threads where Redis does not say)."""
    cpu = client.info("cpu")
    if "used_cpu_user_main_thread" in cpu:
        return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


class _Meter:
    """CPU of both servers and of the processes, and the commands run, between two marks."""

    def __init__(self, servers: dict[str, redis.Redis], children: dict[str, Child]) -> None:
        self.servers = servers
        self.children = children
        self._mark: dict[str, Any] = {}

    def _read(self) -> dict[str, Any]:
        return {
            "t": time.perf_counter(),
            "cpu": {n: main_thread_cpu_s(c) for n, c in self.servers.items()},
            "procs": {n: c.cpu_seconds() for n, c in self.children.items()},
            "commands": {n: commandstats(c) for n, c in self.servers.items()},
        }

    def start(self) -> None:
        self._mark = self._read()

    def stop(self) -> dict[str, Any]:
        end, begin = self._read(), self._mark
        return {
            "seconds": end["t"] - begin["t"],
            "cpu_s": {n: end["cpu"][n] - begin["cpu"][n] for n in self.servers},
            "proc_cpu_s": {n: end["procs"][n] - begin["procs"][n] for n in self.children},
            "commands": {n: delta(begin["commands"][n], end["commands"][n]) for n in self.servers},
        }


def _rounds(
    url: str, n: int, profile: Profile, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    store = connect(url)
    keys = Keys("td:")
    flush(store)
    interval = profile.capacity_interval_s
    rnd = random.Random(n)
    phases = [rnd.uniform(0, interval) for _ in range(n)]
    with EmbeddedRedis(appendonly=True) as broker_server:
        broker = connect(broker_server.url)
        env = bench_env(url, TASKDISPATCH_BROKER_URL=broker_server.url)
        worker = Child(
            f"capacity-{n}-worker",
            [*WORKER, "-c", str(profile.capacity_concurrency), "-n", "capacity@%h"],
            env,
            workdir,
        )
        beat: Child | None = None
        try:
            if not wait_until(lambda: store.zcard(keys.workers()) > 0, 60):
                raise ProbeError(f"the worker did not start:\n{worker.log_tail()}")
            beat = Child(
                f"capacity-{n}-beat",
                [*BEAT, "-s", str(workdir / f"capacity-{n}-schedule")],
                env,
                workdir,
            )
            log(f"capacity: {n} tasks every {interval} s, worker and beat running")
            ids = asyncio.run(create_tasks(url, [interval] * n, phases))
            time.sleep(profile.capacity_warmup_s)
            meter = _Meter({"store": store, "broker": broker}, {"worker": worker, "beat": beat})
            windows = []
            for _ in range(profile.capacity_windows):
                w0 = time.time_ns() // 1_000_000
                meter.start()
                time.sleep(profile.capacity_window_s)
                windows.append(
                    {"start_ms": w0, "end_ms": time.time_ns() // 1_000_000} | meter.stop()
                )
            asyncio.run(_stop_dispatching(url))
            # Rounds already published finish; then nothing is due any more.
            if not wait_until(lambda: broker.llen("celery") == 0, 30):
                raise ProbeError("the queue did not drain after the dispatcher stopped")
            time.sleep(2.0)
            meter.start()
            time.sleep(profile.capacity_idle_s)
            idle = meter.stop()
            if not (worker.alive() and beat.alive()):
                raise ProbeError(f"a process died:\n{worker.log_tail()}\n{beat.log_tail()}")
        finally:
            if beat is not None:
                beat.stop()
            worker.stop(timeout_s=10)
        records = run_records(store, keys, ids)
        broker.close()
    flush(store)
    return {"tasks": n} | _per_round(n / interval, windows, idle, records)


async def _stop_dispatching(url: str) -> None:
    async with TaskDispatcher(Settings(redis_url=url)) as dispatcher:
        await dispatcher.stop()


def _per_round(
    demand: float, windows: list[dict[str, Any]], idle: dict[str, Any], records: list[Any]
) -> dict[str, Any]:
    """Per round: what each window cost beyond the idle rate, divided by its rounds."""
    idle_rate = {n: cpu / idle["seconds"] for n, cpu in idle["cpu_s"].items()}
    idle_procs = {n: cpu / idle["seconds"] for n, cpu in idle["proc_cpu_s"].items()}
    per_window = []
    for w in windows:
        done = sum(
            1
            for r in records
            if r.outcome == "ok" and r.finished_ms and w["start_ms"] <= r.finished_ms < w["end_ms"]
        )
        if done == 0:
            raise ProbeError("no round finished in a measured window")
        extra = {n: w["cpu_s"][n] - idle_rate[n] * w["seconds"] for n in w["cpu_s"]}
        procs = {n: w["proc_cpu_s"][n] - idle_procs[n] * w["seconds"] for n in w["proc_cpu_s"]}
        per_window.append(
            {
                "rounds_per_s": done / w["seconds"],
                "redis_cpu_ms": {n: 1000 * v / done for n, v in extra.items()},
                "proc_cpu_ms": {n: 1000 * v / done for n, v in procs.items()},
                "commands": {
                    n: sum(calls for calls, _ in cmds.values()) / done
                    for n, cmds in w["commands"].items()
                },
                "by_command": {
                    n: {c: calls / done for c, (calls, _) in cmds.items()}
                    for n, cmds in w["commands"].items()
                },
            }
        )

    def stat(pick: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
        return Stat.of([pick(w) for w in per_window]).to_json()

    servers = list(idle["cpu_s"])
    names = {c for w in per_window for n in servers for c in w["by_command"][n]}
    return {
        "demand_per_s": demand,
        "rounds_per_s": stat(lambda w: w["rounds_per_s"]),
        "redis_cpu_ms": {n: stat(lambda w, n=n: w["redis_cpu_ms"][n]) for n in servers},
        "redis_cpu_ms_total": stat(lambda w: sum(w["redis_cpu_ms"].values())),
        "proc_cpu_ms": {n: stat(lambda w, n=n: w["proc_cpu_ms"][n]) for n in idle["proc_cpu_s"]},
        "commands": {n: stat(lambda w, n=n: w["commands"][n]) for n in servers},
        "by_command": {
            n: {
                c: sum(w["by_command"][n].get(c, 0.0) for w in per_window) / len(per_window)
                for c in sorted(names)
                if any(c in w["by_command"][n] for w in per_window)
            }
            for n in servers
        },
        "idle_cpu_per_s": idle_rate,
        "idle_proc_cpu_per_s": idle_procs,
    }


def _stored(
    url: str, profile: Profile, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    client = connect(url)
    keys = Keys("td:")
    n = profile.capacity_stored
    flush(client)
    before = int(client.info("memory")["used_memory"])
    log(f"capacity: {n:,} tasks stored")
    load_tasks(url, keys, 0, n, now_ms=time.time_ns() // 1_000_000)
    memory = int(client.info("memory")["used_memory"]) - before
    _wait_no_rewrite(client)
    began = time.perf_counter()
    client.bgrewriteaof()
    time.sleep(0.05)
    _wait_no_rewrite(client)
    rewrite_s = time.perf_counter() - began
    fork_ms = int(client.info("stats")["latest_fork_usec"]) / 1000
    port = free_port()
    server = api_server(url, port, workdir)
    base_url = f"http://127.0.0.1:{port}"
    reads: dict[str, Any] = {}
    try:
        if not wait_until(lambda: _answers(base_url), 30):
            raise ProbeError(f"the API did not start:\n{server.log_tail()}")
        ids = [task_id_of(i) for i in range(0, n, max(1, n // READ_IDS))][:READ_IDS]
        for name, path in READS.items():
            paths = [path.format(id=i) for i in ids] if "{id}" in path else [path]
            spec = {"method": "GET", "paths": paths}
            load_once(base_url, spec, profile, workdir, 1.0)  # warm-up
            runs = []
            for _ in range(profile.api_repeats):
                cpu0 = main_thread_cpu_s(client)
                result = load_once(base_url, spec, profile, workdir, profile.api_duration_s)
                cpu = main_thread_cpu_s(client) - cpu0
                if result["errors"]:
                    raise ProbeError(f"{name}: {result['errors']} failed requests")
                runs.append({"rps": result["rps"], "us": 1e6 * cpu / result["requests"]})
            reads[name] = {
                "rps": Stat.of([r["rps"] for r in runs]).to_json(),
                "redis_cpu_us": Stat.of([r["us"] for r in runs]).to_json(),
            }
            log(f"capacity: {name} with {n:,} stored")
    finally:
        server.stop()
    flush(client)
    return {
        "stored": n,
        "memory_bytes_per_task": memory / n,
        "aof_rewrite_s": rewrite_s,
        "fork_ms": fork_ms,
        "reads": reads,
    }


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def fleet(rounds: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """What one Redis core carries, from the measured costs (medians).

    `core_per_1k_rounds`: the share of one core that 1,000 rounds/s take (store, broker,
    both on one server). `ceiling_rounds_per_s`: the rate that fills the core (and the rate
    at the HEADROOM share); `worker_cores_at_ceiling`: the worker and beat CPU that drives
    that rate with a handler that does nothing (real handlers need more processes, not
    more Redis). `reads_per_core`: API reads one core serves.
    """
    store = rounds["redis_cpu_ms"]["store"]["median"] / 1000
    broker = rounds["redis_cpu_ms"]["broker"]["median"] / 1000
    procs = sum(s["median"] for s in rounds["proc_cpu_ms"].values()) / 1000
    per_1k = {"store": 1000 * store, "broker": 1000 * broker, "one_server": 1000 * (store + broker)}
    ceiling = {name: 1000 / share for name, share in per_1k.items()}
    return {
        "core_per_1k_rounds": per_1k,
        "ceiling_rounds_per_s": ceiling,
        "headroom": HEADROOM,
        "at_headroom_rounds_per_s": {name: HEADROOM * rate for name, rate in ceiling.items()},
        "worker_cores_per_1k_rounds": 1000 * procs,
        "worker_cores_at_ceiling": {name: rate * procs for name, rate in ceiling.items()},
        "reads_per_core": {
            name: 1e6 / read["redis_cpu_us"]["median"] for name, read in stored["reads"].items()
        },
        "memory_mib_per_100k": stored["memory_bytes_per_task"] * 100_000 / 2**20,
    }


def _wait_no_rewrite(client: redis.Redis) -> None:
    if not wait_until(
        lambda: int(client.info("persistence")["aof_rewrite_in_progress"]) == 0, 600, 0.02
    ):
        raise ProbeError("the AOF rewrite did not finish")


def run(url: str, profile: Profile, workdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Both points of the rounds sweep and the stored-tasks costs, with append-only
    persistence on (as production runs: the AOF's writes are part of the main thread's
    work); the fleet figures come from the busiest point."""
    work = Path(workdir)
    store = connect(url)
    store.config_set("appendonly", "yes")
    try:
        _wait_no_rewrite(store)
        points = [_rounds(url, n, profile, work, log) for n in profile.capacity_tasks]
        stored = _stored(url, profile, work, log)
    finally:
        store.config_set("appendonly", "no")
    return {
        "interval_s": profile.capacity_interval_s,
        "concurrency": profile.capacity_concurrency,
        "window_s": profile.capacity_window_s,
        "windows": profile.capacity_windows,
        "points": points,
        "stored": stored,
        "fleet": fleet(points[-1], stored),
    }
