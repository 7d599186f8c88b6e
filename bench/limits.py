"""6. The cost of features per round: one round run in this process (`RoundRunner.run`, a
handler that returns at once) of a plain task, then with 1 and 3 concurrency limits and one
rate limit covering it, with a calendar (two windows, weekdays, a blackout date, jitter) and
with five tags. Per round: the commands Redis runs (`INFO commandstats` delta, those run
inside Lua included), the round trips the runner makes and its wall time; the ratios are
against the plain round, measured in the same run.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.config import Profile
from bench.redisstats import RoundTrips, commandstats, connect, delta, flush
from bench.stats import Stat
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.models import Task
from taskdispatch.engine.handlers import HandlerRegistry
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import Limit, Match

__all__ = ["CASES", "run"]

TAG = "device:bench"
# A calendar whose windows cover every hour, so that every round runs: what is measured is
# the work of placing slots in it, not waiting for it.
_CALENDAR = {
    "windows": ["00:00-12:00", "12:00-24:00"],
    "valid_time_range": None,
    "weekdays": [1, 2, 3, 4, 5, 6, 7],
    "blackout_dates": ["2099-01-01"],
    "jitter_s": 1,
}
# (case, limits covering the task, fields of the task beyond the plain one)
CASES: tuple[tuple[str, tuple[Limit, ...], dict[str, object]], ...] = (
    ("plain (no limit)", (), {}),
    ("1 concurrency limit", (Limit("device", Match(tag=TAG), max_concurrent=5),), {}),
    (
        "3 concurrency limits",
        tuple(Limit(f"group-{i}", Match(tag=TAG), max_concurrent=5) for i in range(3)),
        {},
    ),
    ("1 rate limit", (Limit("paced", Match(tag=TAG), max_starts=10**6, per_s=3600),), {}),
    ("calendar: 2 windows, weekdays, blackout, jitter", (), _CALENDAR),
    ("5 tags", (), {"tags": [TAG, "team:a", "team:b", "group:c", "region:d"]}),
)


def _task(keys: Keys, client: redis.Redis, now_ms: int, fields: dict[str, object]) -> str:
    """One task as the store writes it, due now, tagged for every limit."""
    from taskdispatch.domain import lifecycle
    from taskdispatch.store.transaction import Change, transact

    task = lifecycle.created(
        TaskSpec.model_validate(
            {
                "sys_type": "mac_intel",
                "xhs_account_id": "bench-limits",
                "xhs_account_name": "bench",
                "task_type": "noop",
                "interval": 1,
                "valid_time_range": [0, 24],
                "tags": [TAG],
                **fields,
            }
        ),
        task_id="bench-limits-task",
        now_ms=now_ms,
        default_timezone="UTC",
        task_types={"noop"},
    )
    transact(client, keys, task.task_id, lambda read: Change(task))
    return task.task_id


def _rounds(runner: RoundRunner, client: redis.Redis, keys: Keys, task_id: str, n: int) -> None:
    for _ in range(n):
        task = Task.from_hash(client.hgetall(keys.task(task_id)), task_id=task_id)
        assert task.next_ms is not None
        outcome = runner.run(RoundMessage(task_id, task.fence, task.next_ms))["outcome"]
        if outcome != "ok":
            raise RuntimeError(f"a bench round ended {outcome}, not ok")


def run(url: str, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    admin = connect(url)
    keys = Keys("td:")
    settings = Settings(redis_url=url, key_prefix="td:")
    n, repeats = profile.limits_rounds, profile.limits_repeats
    cases: list[dict[str, Any]] = []
    for case, limits, fields in CASES:
        flush(admin)
        for limit in limits:
            admin.hset(keys.limits(), limit.name, limit.to_json())
        admin.incr(keys.limits_version())
        client = redis.Redis.from_url(url, decode_responses=True)
        runner = RoundRunner(
            client,
            settings,
            HandlerRegistry({"noop": lambda ctx: None}),
            hostname=socket.gethostname(),
        )
        task_id = _task(keys, client, time.time_ns() // 1_000_000, fields)
        _rounds(runner, client, keys, task_id, 20)  # warm: scripts loaded, book read
        log(f"limits: {case}, {repeats} x {n} rounds")
        per_round_s, commands, trips, lua = [], [], [], []
        for _ in range(repeats):
            before = commandstats(admin)
            with RoundTrips() as counted:
                t0 = time.perf_counter()
                _rounds(runner, client, keys, task_id, n)
                per_round_s.append((time.perf_counter() - t0) / n)
            ran = delta(before, commandstats(admin))
            # INFO itself is left out by `delta`; the bookkeeping client ran nothing else.
            commands.append(sum(calls for calls, _ in ran.values()) / n)
            lua.append(sum(ran.get(c, (0, 0))[0] for c in ("evalsha", "eval")) / n)
            trips.append(counted.count / n)
        runner.lease_redis.close()
        client.close()
        cases.append(
            {
                "case": case,
                "limits": len(limits),
                "round_s": Stat.of(per_round_s).to_json(),
                "commands": Stat.of(commands).to_json(),
                "scripts": Stat.of(lua).to_json(),
                "round_trips": Stat.of(trips).to_json(),
            }
        )
    floor = cases[0]
    for item in cases:
        item["time_ratio"] = item["round_s"]["median"] / floor["round_s"]["median"]
        item["extra_commands"] = item["commands"]["median"] - floor["commands"]["median"]
        item["extra_round_trips"] = item["round_trips"]["median"] - floor["round_trips"]["median"]
    return {"rounds": n, "repeats": repeats, "cases": cases}
