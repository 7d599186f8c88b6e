"""One scheduler at one stored size, in a fresh process: `python -m bench.tick_probe JSON`.

A fresh process per (scheduler, size) makes its RSS the beat's own. The parent has already
stored the N tasks (taskdispatch) or N entries (RedBeat) in Redis; PersistentScheduler keeps
its N entries in the beat process, so this process builds them. Prints one JSON line.

The timed unit is the work of a beat from the moment `due` slots are due until all are
published: `RedisScheduler.dispatch_due()` (tick() also sleeps) and `RedBeatScheduler.tick()`
once; PersistentScheduler sends one entry per tick, so `due` ticks. The same `due` slots are
due again in every run, as a periodic task's are: taskdispatch's beat has them in the
prediction its previous tick answered (engine/beat.py, `claim_tick`), so the timed ticks are
its steady ones. One more run, untimed, with the prediction emptied first, counts the round
trips of a tick whose due slots the prediction missed (`miss_round_trips`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import psutil
import redis

from bench import apps
from bench.load import task_id_of
from bench.redisstats import RoundTrips, commandstats, connect, delta
from taskdispatch.engine.beat import Prediction
from taskdispatch.store.keys import Keys

HOT_PERIOD_S = 1.0


def _measure(
    client: redis.Redis, queue: str, arm: Any, run: Any, expect: int, repeats: int
) -> dict[str, Any]:
    ticks, trips, commands, breakdown = [], [], [], {}
    for rep in range(repeats + 1):  # the first is a warm-up: connections, scripts, caches
        client.delete(queue)
        arm()
        before = commandstats(client)
        with RoundTrips() as counter:
            t0 = time.perf_counter()
            run()
            elapsed = time.perf_counter() - t0
        used = delta(before, commandstats(client))
        sent = client.llen(queue)
        if sent != expect:
            raise RuntimeError(f"expected {expect} messages on '{queue}', found {sent}")
        if rep:
            ticks.append(elapsed)
            trips.append(counter.count)
            commands.append(sum(calls for calls, _ in used.values()))
            breakdown = {name: calls for name, (calls, _) in sorted(used.items())}
    client.delete(queue)
    return {"tick_s": ticks, "round_trips": trips, "commands": commands, "breakdown": breakdown}


def _miss_round_trips(client: redis.Redis, queue: str, arm: Any, run: Any) -> int:
    """The round trips of one run of `run` after `arm` (untimed)."""
    client.delete(queue)
    arm()
    with RoundTrips() as counter:
        run()
    client.delete(queue)
    return counter.count


def taskdispatch(url: str, n: int, due: int, repeats: int, prefix: str) -> dict[str, Any]:
    app = apps.celery_app(url, key_prefix=prefix)
    scheduler = apps.td_scheduler(app)
    client = connect(url)
    keys = Keys(scheduler.td_settings.key_prefix)
    ids = [task_id_of(i) for i in range(due)]

    def arm() -> None:
        client.zadd(keys.due(), {task_id: time.time() * 1000 - 1 for task_id in ids})

    queue = scheduler.td_settings.default_queue
    result = _measure(client, queue, arm, scheduler.dispatch_due, due, repeats)
    scheduler._prediction = Prediction()  # as a fresh beat's, or after new tasks fell due
    miss = _miss_round_trips(client, queue, arm, scheduler.dispatch_due)
    return result | {"ticks": 1, "miss_round_trips": miss}


def redbeat(url: str, n: int, due: int, repeats: int, prefix: str) -> dict[str, Any]:
    from bench.load import redbeat_definition

    app = apps.celery_app(url, redbeat_prefix=prefix)
    scheduler = apps.redbeat_scheduler(app)
    client = connect(url)
    entry_keys = [redbeat_definition(app, i)[0] for i in range(due)]

    def arm() -> None:
        with client.pipeline(transaction=False) as pipe:
            for key in entry_keys:
                pipe.hdel(key, "meta")  # never run: due now
            pipe.zadd(app.redbeat_conf.schedule_key, {k: time.time() - 1 for k in entry_keys})
            pipe.execute()

    result = _measure(client, app.conf.task_default_queue, arm, scheduler.tick, due, repeats)
    scheduler.close()  # releases the leader lock, or the next probe waits out its timeout
    return result | {"ticks": 1}


def persistent(url: str, n: int, due: int, repeats: int, workdir: str) -> dict[str, Any]:
    from celery.schedules import schedule

    from taskdispatch.engine.beat import ROUND_TASK

    app = apps.celery_app(url)
    hot = [f"bench-entry-{i:07d}" for i in range(due)]
    app.conf.beat_schedule = {
        f"bench-entry-{i:07d}": {
            "task": ROUND_TASK,
            "schedule": schedule(run_every=HOT_PERIOD_S if i < due else 3600),
            "kwargs": {
                "task_id": task_id_of(i),
                "fence": 0,
                "slot_ms": 0,
                "account_id": f"bench-account-{i:07d}",
                "task_type": "noop",
            },
        }
        for i in range(n)
    }
    t0 = time.perf_counter()
    scheduler = apps.persistent_scheduler(app, f"{workdir}/celerybeat-schedule-{n}")
    setup_s = time.perf_counter() - t0
    client = connect(url)

    def arm() -> None:
        # Wait (untimed) until the last hot entry is due again.
        last = max(scheduler.schedule[name].last_run_at for name in hot)
        wait = (last - app.now()).total_seconds() + HOT_PERIOD_S + 0.05
        if wait > 0:
            time.sleep(wait)

    def run() -> None:
        sent = 0
        for _ in range(3 * due):
            if scheduler.tick() == 0:  # 0: it sent one due entry and wants to be called again
                sent += 1
                if sent == due:
                    return

    result = _measure(client, app.conf.task_default_queue, arm, run, due, repeats)
    scheduler.close()
    return result | {"ticks": due, "setup_s": setup_s}


def main() -> None:
    args = json.loads(sys.argv[1])
    kind, url, n, due, repeats = (
        args["scheduler"],
        args["url"],
        args["n"],
        args["due"],
        args["repeats"],
    )
    if kind == "taskdispatch":
        result = taskdispatch(url, n, due, repeats, args["prefix"])
    elif kind == "redbeat":
        result = redbeat(url, n, due, repeats, args["prefix"])
    elif kind == "persistent":
        result = persistent(url, n, due, repeats, args["workdir"])
    else:
        raise SystemExit(f"unknown scheduler {kind}")
    result |= {
        "scheduler": kind,
        "n": n,
        "due": due,
        "rss_bytes": psutil.Process().memory_info().rss,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
