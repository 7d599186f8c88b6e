"""Waiting on real processes, reading the state they leave in Redis, and judging the probe
handler's records (overlaps, duplicates)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import redis

from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.models import CLAIMS_FIELD, Task
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.handlers import FINALLY_KEY, INTERRUPTS_KEY, ROUNDS_KEY, STARTS_KEY

__all__ = [
    "E2E_KEYS",
    "ProbeRound",
    "View",
    "add_due_task",
    "add_probe_task",
    "await_until",
    "duplicate_slots",
    "holds_for",
    "now_ms",
    "overlaps",
    "overlaps_by_history",
    "percentile",
    "probe_file_records",
    "stored_task",
    "wait_until",
]

T = TypeVar("T")
ProbeRound = dict[str, Any]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy (returned); fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.1f}s waiting for {message} (last value: {value!r})"
            )
        time.sleep(interval_s)


async def await_until(
    predicate: Callable[[], Awaitable[T]],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str = "condition",
) -> T:
    """`wait_until` for a coroutine predicate, sleeping in the event loop between looks."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.1f}s waiting for {message} (last value: {value!r})"
            )
        await asyncio.sleep(interval_s)


def holds_for(
    predicate: Callable[[], Any],
    duration_s: float,
    interval_s: float = 0.1,
    message: str = "condition",
) -> None:
    """Poll `predicate` for `duration_s` and fail as soon as it is falsy."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        value = predicate()
        assert value, f"{message} stopped holding (value: {value!r})"
        time.sleep(interval_s)


# The key prefix of the stores the unit and e2e specs run against.
E2E_KEYS = Keys("td:")


def stored_task(client: redis.Redis, task_id: str, keys: Keys = E2E_KEYS) -> Task:
    """The task as stored now (read with a client that decodes responses)."""
    return Task.from_hash(client.hgetall(keys.task(task_id)), task_id=task_id)


class View:
    """Synchronous read access to the state the e2e tests check."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def _hash(self, task_id: str) -> dict[str, str]:
        raw: dict[str, str] = self.r.hgetall(self.keys.task(task_id))
        assert raw, f"task {task_id} does not exist"
        return raw

    def task(self, task_id: str) -> Task:
        return Task.from_hash(self._hash(task_id), task_id=task_id)

    def runs(self, task_id: str, outcome: str | None = None) -> list[dict[str, Any]]:
        """History records, oldest first (the list itself is newest first)."""
        records = [json.loads(x) for x in reversed(self.r.lrange(self.keys.runs(task_id), 0, -1))]
        return [x for x in records if outcome is None or x["outcome"] == outcome]

    def due_score(self, task_id: str) -> float | None:
        score = self.r.zscore(self.keys.due(), task_id)
        return None if score is None else float(score)

    def running_ids(self) -> list[str]:
        return [str(x) for x in self.r.zrange(self.keys.running(), 0, -1)]

    def is_idle(self, task_id: str) -> bool:
        """No round of the task runs and none is claimed (a claimed one runs soon).

        A due score other than the next run means a claim holds the slot, unless the claim
        count is 0: its message was handled without running (account locked, parked), and
        the score is when to look again, which a stopped dispatcher never does.
        """
        raw = self._hash(task_id)
        task = Task.from_hash(raw, task_id=task_id)
        unclaimed = (
            task.next_ms is None
            or self.due_score(task_id) in (None, task.next_ms)
            or raw.get(CLAIMS_FIELD, "0") == "0"
        )
        return task.run_id is None and task.status != "running" and unclaimed

    def probe_starts(self) -> list[ProbeRound]:
        return [json.loads(x) for x in self.r.lrange(STARTS_KEY, 0, -1)]

    def probe_rounds(self) -> list[ProbeRound]:
        return [json.loads(x) for x in self.r.lrange(ROUNDS_KEY, 0, -1)]

    def probe_interrupts(self) -> list[ProbeRound]:
        """Rounds interrupted inside the probe handler, with the exception's name (`by`)."""
        return [json.loads(x) for x in self.r.lrange(INTERRUPTS_KEY, 0, -1)]

    def probe_finally(self) -> list[ProbeRound]:
        """Rounds of the async probe whose `finally` block ran, and when (`at_ms`)."""
        return [json.loads(x) for x in self.r.lrange(FINALLY_KEY, 0, -1)]


def _key(x: ProbeRound) -> tuple[Any, ...]:
    return (x["task_id"], x["start_ms"], x["pid"])


def probe_file_records(probe_dir: Path) -> tuple[list[ProbeRound], list[ProbeRound]]:
    """(starts, ends) that `handlers.probe_file_round` wrote, from every process's file."""
    lines = [json.loads(x) for f in probe_dir.glob("*.jsonl") for x in f.read_text().splitlines()]
    return [x for x in lines if x["event"] == "start"], [x for x in lines if x["event"] == "end"]


def unfinished(starts: Iterable[ProbeRound], rounds: Iterable[ProbeRound]) -> list[ProbeRound]:
    """Rounds that started but never recorded their end (killed, or still running)."""
    done = {_key(x) for x in rounds}
    return [x for x in starts if _key(x) not in done]


def overlaps(
    starts: list[ProbeRound], rounds: list[ProbeRound], *, open_end_ms: dict[int, int]
) -> list[tuple[ProbeRound, ProbeRound]]:
    """Pairs of rounds of one account whose [start, end] intervals intersect.

    A round that never finished lasts until `open_end_ms[pid]` (when its process was
    killed); one missing from that map is taken as still running (it never ended).
    """
    intervals: dict[str, list[ProbeRound]] = {}
    for x in rounds:
        intervals.setdefault(x["account_id"], []).append(x)
    for x in unfinished(starts, rounds):
        end = open_end_ms.get(x["pid"], 2**62)
        intervals.setdefault(x["account_id"], []).append({**x, "end_ms": end})
    bad = []
    for items in intervals.values():
        items.sort(key=lambda x: x["start_ms"])
        bad.extend((a, b) for a, b in itertools.pairwise(items) if b["start_ms"] <= a["end_ms"])
    return bad


async def add_due_task(url: str, account: str) -> str:
    """An hourly `noop` task of `account` (always in window, store prefix `E2E_KEYS`) whose
    next run was moved to now: its id."""
    settings = Settings(redis_url=url, key_prefix=E2E_KEYS.prefix)
    async with TaskDispatcher(settings, task_types={"noop"}) as d:
        task = await d.create_task(
            TaskSpec(
                sys_type="mac_intel",
                task_type="noop",
                xhs_account_id=account,
                xhs_account_name=account,
                interval=3600,
                valid_time_range=[0, 24],
            )
        )
        await d.run_now(task.task_id)
        return task.task_id


async def add_probe_task(
    d: TaskDispatcher, account: str, *, sleep_s: float = 0.0, **fields: Any
) -> str:
    """A probe task of `account` (interval 1 s, always in window unless overridden)."""
    body: dict[str, Any] = {
        "sys_type": "mac_intel",
        "xhs_account_id": account,
        "xhs_account_name": f"name-{account}",
        "interval": 1,
        "valid_time_range": [0, 24],
        "task_type": "probe",
        "kwargs": {"sleep_s": sleep_s},
        **fields,
    }
    return await d.add_task(TaskSpec.model_validate(body))


def duplicate_slots(records: Iterable[ProbeRound]) -> list[tuple[str, int]]:
    """(task_id, scheduled_ms) pairs that ran more than once."""
    seen = Counter((x["task_id"], x["scheduled_ms"]) for x in records)
    return [key for key, n in seen.items() if n > 1]


def overlaps_by_history(
    view: View, starts: list[ProbeRound], rounds: list[ProbeRound]
) -> list[tuple[ProbeRound, ProbeRound]]:
    """Overlapping rounds of one account, where the probe's own end record may be missing.

    A probe round whose handler failed before it wrote its end (its Redis call failed
    during an outage) ended when its history record says; one with no such record is
    taken as never ended, so it overlaps everything after it.
    """
    ended = list(rounds)
    history: dict[str, list[dict[str, Any]]] = {}
    for x in unfinished(starts, rounds):
        records = history.setdefault(x["task_id"], view.runs(x["task_id"]))
        match = [
            r
            for r in records
            if r["scheduled_ms"] == x["scheduled_ms"] and r["outcome"] in ("ok", "failed")
        ]
        if match:
            ended.append({**x, "end_ms": match[0]["finished_ms"]})
    return overlaps(starts, ended, open_end_ms={})


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
