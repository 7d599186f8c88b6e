"""10. The cost of notifications per round: rounds run in this process (`RoundRunner.run`, a
handler that raises, so that every round writes `round.failed`, an event a notification may
want) with no notification, with one that matches no round (its tag is not the task's) and
with one that takes every round. Per round, on the round's path: the commands Redis runs
(`INFO commandstats` delta, those inside Lua included), the round trips the runner makes and
its wall time, against the round with no notification, measured in the same run. Then, off
that path, what the notifier's intake (`Notifier.intake`, run by a beat's or an API
process's notifier thread) spends per round to take the rounds' events in, every
`INTAKE_EVERY` rounds; and the notifier loop's fixed cost per iteration (once a second per
process) when no notification is defined, when it reads nothing of the stream.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.config import Profile
from bench.redisstats import RoundTrips, commandstats, connect, delta, flush
from bench.stats import Stat
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.models import Task
from taskdispatch.engine.handlers import HandlerRegistry
from taskdispatch.engine.notifier import GROUP, Notifier, NotifyLoop
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from taskdispatch.store.notifications import Notification, NotifyMatch

__all__ = ["CASES", "INTAKE_EVERY", "run"]

TAG = "device:bench"
# The intake runs once a second in each process: about this many events per batch on a
# fleet finishing ten rounds a second.
INTAKE_EVERY = 10
# A window long enough that nothing is flushed or sent while a case runs: what is measured
# is taking events in, which is the part that grows with rounds (a message is per window).
_WINDOW_S = 3600
# (case, the notification defined, if any)
CASES: tuple[tuple[str, Notification | None], ...] = (
    ("no notification", None),
    (
        "1 notification, matching no round",
        Notification(
            name="other-team",
            url="http://127.0.0.1:9/",
            events=("task.error", "round.failed"),
            match=NotifyMatch(tags=("device:elsewhere",)),
            group_window_s=_WINDOW_S,
        ),
    ),
    (
        "1 notification, taking every round",
        Notification(
            name="ops",
            url="http://127.0.0.1:9/",
            events=("task.error", "round.failed"),
            group_window_s=_WINDOW_S,
        ),
    ),
)


class _Failed(Exception):
    """What the bench handler raises: each round ends `failed`."""


def _fail(ctx: object) -> None:
    raise _Failed("bench")


def _task(keys: Keys, client: redis.Redis, now_ms: int) -> str:
    """One task as the store writes it, due now, with the tag a notification may match."""
    from taskdispatch.domain import lifecycle
    from taskdispatch.store.transaction import Change, transact

    task = lifecycle.created(
        TaskSpec.model_validate(
            {
                "sys_type": "mac_intel",
                "xhs_account_id": "bench-notify",
                "xhs_account_name": "bench",
                "task_type": "failing",
                "interval": 1,
                "valid_time_range": [0, 24],
                "tags": [TAG],
            }
        ),
        task_id="bench-notify-task",
        now_ms=now_ms,
        default_timezone="UTC",
        task_types={"failing"},
    )
    transact(client, keys, task.task_id, lambda read: Change(task))
    return task.task_id


def _round(runner: RoundRunner, client: redis.Redis, keys: Keys, task_id: str) -> None:
    task = Task.from_hash(client.hgetall(keys.task(task_id)), task_id=task_id)
    assert task.next_ms is not None
    outcome = runner.run(RoundMessage(task_id, task.fence, task.next_ms))["outcome"]
    if outcome != "failed":
        raise RuntimeError(f"a bench round ended {outcome}, not failed")


def _commands_since(admin: redis.Redis, before: dict[str, tuple[int, int]]) -> int:
    """Commands Redis ran since `before` (INFO itself left out by `delta`)."""
    return sum(calls for calls, _ in delta(before, commandstats(admin)).values())


def _idle_loop(url: str, settings: Settings, repeats: int) -> dict[str, Any]:
    """Round trips and commands of one notifier iteration with no notification defined."""
    admin = connect(url)
    flush(admin)
    client = redis.Redis.from_url(url, decode_responses=True)
    loop = NotifyLoop(settings, redis=client)
    loop.run_once(now_ms=time.time_ns() // 1_000_000)  # warm: connection made
    trips, commands = [], []
    for _ in range(repeats):
        before = commandstats(admin)
        with RoundTrips() as counted:
            loop.run_once(now_ms=time.time_ns() // 1_000_000)
        trips.append(float(counted.count))
        commands.append(float(_commands_since(admin, before)))
    loop.stop()
    client.close()
    admin.close()
    return {"round_trips": Stat.of(trips).to_json(), "commands": Stat.of(commands).to_json()}


@dataclass
class _Case:
    """One case set up under its own key prefix, so that the cases run side by side."""

    name: str
    notification: Notification | None
    keys: Keys
    client: redis.Redis
    runner: RoundRunner
    notifier: Notifier
    task_id: str
    figures: dict[str, list[float]] = field(default_factory=dict)

    def close(self) -> None:
        self.notifier.close()
        self.runner.lease_redis.close()
        self.client.close()


def _setup(url: str, index: int, name: str, notification: Notification | None) -> _Case:
    prefix = f"tdn{index}:"
    # Failures never stop the task (it would go to `error` and run no more rounds).
    settings = Settings(redis_url=url, key_prefix=prefix, max_consecutive_failures=10**9)
    keys = Keys(prefix)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.xgroup_create(keys.events(), GROUP, id="$", mkstream=True)
    if notification is not None:
        client.hset(keys.notifications(), notification.name, notification.to_json())
    runner = RoundRunner(
        client, settings, HandlerRegistry({"failing": _fail}), hostname=socket.gethostname()
    )
    notifier = Notifier(client, settings)
    task_id = _task(keys, client, time.time_ns() // 1_000_000)
    for _ in range(20):  # warm: scripts loaded, connections made
        _round(runner, client, keys, task_id)
    notifier.intake()
    return _Case(name, notification, keys, client, runner, notifier, task_id)


def _measure(case: _Case, admin: redis.Redis, n: int) -> None:
    """One run of `n` rounds, the intake every INTAKE_EVERY of them; figures per round."""
    # Consecutive failures double the retry backoff: keep the count small.
    admin.hset(case.keys.task(case.task_id), "failures", 0)
    totals = dict.fromkeys(
        ("round_s", "commands", "round_trips", "intake_s", "intake_commands", "intake_round_trips"),
        0.0,
    )
    for i in range(n):
        before = commandstats(admin)
        with RoundTrips() as counted:
            t0 = time.perf_counter()
            _round(case.runner, case.client, case.keys, case.task_id)
            totals["round_s"] += time.perf_counter() - t0
        totals["round_trips"] += counted.count
        totals["commands"] += _commands_since(admin, before)
        if (i + 1) % INTAKE_EVERY and i + 1 < n:
            continue
        before = commandstats(admin)
        with RoundTrips() as counted:
            t0 = time.perf_counter()
            # What a notifier thread runs each second: only while one is defined.
            if case.notification is not None:
                case.notifier.intake()
            totals["intake_s"] += time.perf_counter() - t0
        totals["intake_round_trips"] += counted.count
        totals["intake_commands"] += _commands_since(admin, before)
    for key, total in totals.items():
        case.figures.setdefault(key, []).append(total / n)


def run(url: str, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    admin = connect(url)
    flush(admin)
    n, repeats = profile.limits_rounds, profile.limits_repeats
    # The worker logs one line per failed round: thousands here, none of them news.
    logging.getLogger("taskdispatch").setLevel(logging.ERROR)
    cases = [_setup(url, i, name, notification) for i, (name, notification) in enumerate(CASES)]
    log(f"notifications: {len(cases)} cases, {repeats} x {n} rounds each, interleaved")
    # Interleaved runs: background load drifting on a shared machine biases no case.
    for _ in range(repeats):
        for case in cases:
            _measure(case, admin, n)
    results: list[dict[str, Any]] = []
    for case in cases:
        grouped = 0
        if case.notification is not None:
            group = case.keys.notify_group(case.notification.name, "round.failed")
            grouped = int(admin.hlen(group))
        case.close()
        results.append(
            {
                "case": case.name,
                **{key: Stat.of(values).to_json() for key, values in case.figures.items()},
                # Subjects in the open group: 1 (the one task) when the notification takes
                # the rounds, 0 when it matches none.
                "grouped_tasks": grouped,
            }
        )
    floor = results[0]
    for item in results:
        item["time_ratio"] = item["round_s"]["median"] / floor["round_s"]["median"]
        item["extra_commands"] = item["commands"]["median"] - floor["commands"]["median"]
        item["extra_round_trips"] = item["round_trips"]["median"] - floor["round_trips"]["median"]
    admin.close()
    settings = Settings(redis_url=url, key_prefix="tdn-idle:")
    return {
        "rounds": n,
        "repeats": repeats,
        "intake_every": INTAKE_EVERY,
        "cases": results,
        "idle_loop": _idle_loop(url, settings, repeats),
    }
