"""2. Dispatch throughput: `due` slots due at once, published by one beat, against ceilings.

Compared in the same run, on the same Redis (also the broker; nobody consumes):
- taskdispatch's beat: `RedisScheduler.dispatch_due()` until every slot is claimed and
  published (claims of `claim_batch`, each published as one pipeline), with `task-sent`
  events as configured and, for reference, with them off;
- RedBeat: one `tick()` with all `due` entries due;
- the per-call ceiling: a loop of Celery `send_task` of the same message on one producer
  (what a beat does per due entry), and the same inside kombu's `producer.batch()`;
- the raw ceiling: redis-py LPUSH of the same message bytes, pipelined by 1,000.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from bench import apps
from bench.config import Profile
from bench.load import load_redbeat, load_tasks
from bench.profiling import profile_call
from bench.redisstats import RoundTrips, commandstats, connect, delta, flush
from bench.stats import Stat
from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.store.keys import Keys

__all__ = ["run"]

LPUSH_PIPELINE = 1_000


def _round_kwargs(i: int) -> dict[str, Any]:
    return {
        "task_id": str(uuid.uuid4()),
        "fence": 1,
        "slot_ms": time.time_ns() // 1_000_000,
        "account_id": f"bench-account-{i:07d}",
        "task_type": "noop",
    }


class _Run:
    """One timed run: wall and CPU time of this process, round trips, Redis busy time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __call__(self, fn: Callable[[], None]) -> dict[str, float]:
        before = commandstats(self.client)
        with RoundTrips() as trips:
            cpu0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        used = delta(before, commandstats(self.client))
        redis_s = sum(usec for _, usec in used.values()) / 1e6
        return {"wall_s": wall, "cpu_s": cpu, "round_trips": trips.count, "redis_s": redis_s}


def _summary(runs: list[dict[str, float]], due: int) -> dict[str, Any]:
    return {
        "rate": Stat.of([due / r["wall_s"] for r in runs]).to_json(),
        "round_trips": Stat.of([r["round_trips"] for r in runs]).to_json(),
        "cpu_share": Stat.of([r["cpu_s"] / r["wall_s"] for r in runs]).to_json(),
        "redis_share": Stat.of([r["redis_s"] / r["wall_s"] for r in runs]).to_json(),
    }


Once = Callable[[int], dict[str, float]]


def _taskdispatch(url: str, client: redis.Redis, *, events: bool) -> tuple[Once, Any]:
    """One timed dispatch of n due tasks by RedisScheduler; and its drain, for the profile."""
    app = apps.celery_app(url)
    app.conf.task_send_sent_event = events
    scheduler = apps.td_scheduler(app)
    queue = scheduler.td_settings.default_queue
    keys = Keys(scheduler.td_settings.key_prefix)
    timed = _Run(client)

    def drain() -> None:
        while scheduler.dispatch_due() == 0.0:  # 0.0: a full batch, more may be due
            pass

    def load(n: int) -> None:
        flush(client)
        load_tasks(url, keys, 0, n, now_ms=time.time_ns() // 1_000_000, due_now=True)

    def once(n: int) -> dict[str, float]:
        load(n)
        run = timed(drain)
        if client.llen(queue) != n:
            raise RuntimeError(f"taskdispatch published {client.llen(queue)} of {n}")
        return run

    return once, (load, drain, queue)


def _redbeat(url: str, client: redis.Redis) -> Once:
    app = apps.celery_app(url)
    queue = app.conf.task_default_queue
    timed = _Run(client)

    def once(n: int) -> dict[str, float]:
        flush(client)
        scheduler = apps.redbeat_scheduler(app)  # the flush dropped the previous one's lock
        load_redbeat(url, app, 0, n, now_s=time.time(), due_now=True)
        run = timed(scheduler.tick)
        if client.llen(queue) != n:
            raise RuntimeError(f"RedBeat published {client.llen(queue)} of {n}")
        return run

    return once


def _send_task(url: str, client: redis.Redis, *, batch: bool) -> Once:
    app = apps.celery_app(url)
    queue = app.conf.task_default_queue
    timed = _Run(client)
    limit = 600.0

    def send(producer: Any, n: int) -> None:
        for i in range(n):
            app.send_task(
                ROUND_TASK,
                kwargs=_round_kwargs(i),
                queue=queue,
                producer=producer,
                soft_time_limit=limit,
                time_limit=limit + 30,
            )

    def once(n: int) -> dict[str, float]:
        client.delete(queue)

        def send_all() -> None:
            with app.producer_or_acquire() as producer:
                if batch:
                    with producer.batch(max_size=1000):
                        send(producer, n)
                else:
                    send(producer, n)

        run = timed(send_all)
        client.delete(queue)
        return run

    return once


def _lpush(client: redis.Redis, payload: bytes) -> Once:
    timed = _Run(client)

    def once(n: int) -> dict[str, float]:
        client.delete("bench-raw")

        def push() -> None:
            for start in range(0, n, LPUSH_PIPELINE):
                with client.pipeline(transaction=False) as pipe:
                    for _ in range(min(LPUSH_PIPELINE, n - start)):
                        pipe.lpush("bench-raw", payload)
                    pipe.execute()

        run = timed(push)
        client.delete("bench-raw")
        return run

    return once


def run(url: str, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    """All publishers in interleaved rounds (each round runs every publisher once), so that
    drifting background load on a shared machine hits them alike; ratios are per round."""
    due, repeats = profile.dispatch_due, profile.dispatch_repeats
    client = connect(url)
    td, (td_load, td_drain, queue) = _taskdispatch(url, client, events=True)
    publishers: dict[str, Once] = {
        "taskdispatch": td,
        "taskdispatch_no_events": _taskdispatch(url, client, events=False)[0],
    }
    if apps.have_redbeat():
        publishers["redbeat"] = _redbeat(url, client)
    publishers["send_task"] = _send_task(url, client, batch=False)
    publishers["send_task_batch"] = _send_task(url, client, batch=True)

    td(50)  # warms the claim script and connections; leaves one real message to copy
    payload = client.lindex(queue, 0) or b""
    publishers["lpush"] = _lpush(client, payload)
    for once in publishers.values():
        once(50)  # warm-up of every path

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in publishers}
    for r in range(repeats):
        for name, once in publishers.items():
            log(f"dispatch: round {r + 1}/{repeats}, {name}, {due:,} due")
            runs[name].append(once(due))

    out: dict[str, Any] = {"due": due, "repeats": repeats, "redbeat": None}
    out |= {name: _summary(rs, due) for name, rs in runs.items()}
    out["taskdispatch"]["message_bytes"] = len(payload)

    def ratio(other: str) -> dict[str, Any]:
        pairs = zip(runs["taskdispatch"], runs[other], strict=True)
        return Stat.of([o["wall_s"] / t["wall_s"] for t, o in pairs]).to_json()

    out["ratios"] = {
        name: ratio(name) for name in ("redbeat", "send_task", "lpush") if name in runs
    }
    td_load(due)
    try:
        out["taskdispatch"]["profile"] = profile_call(td_drain)
    except ImportError:  # pyinstrument comes from requirements/bench.lock
        out["taskdispatch"]["profile"] = None
    flush(client)
    return out
