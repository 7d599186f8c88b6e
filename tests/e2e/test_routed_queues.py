"""Rounds routed by sys_type to workers that consume only their own queue: recovery and
timed pauses still work, because they run in the beat, not on a queue."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.support.probes import add_probe_task, now_ms, overlaps, unfinished, wait_until

pytestmark = pytest.mark.e2e

ROUTED = {"TASKDISPATCH_ROUTE_BY_SYS_TYPE": "true"}


def _iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, ZoneInfo("Asia/Shanghai")).isoformat()


async def test_routed_worker_killed_mid_round_rounds_lost_and_rerun_within_15_s(stack, dispatcher):
    """Workers on -Q mac_intel only: each round cut off by a SIGKILL is recorded lost and
    runs again within 15 s, with no overlap."""
    s = stack(workers=2, beats=1, concurrency=2, env=ROUTED, queues="mac_intel")
    ids = [await add_probe_task(dispatcher, f"acct-r{i}", sleep_s=2.0) for i in range(4)]
    first = wait_until(s.view.probe_starts, timeout_s=15, message="a round to start")[0]
    victim = s.worker_running_pid(first["pid"])
    pids = {p.pid for p in s.workers[victim].group()}
    kill_ms = s.kill_worker(victim)
    ended = {(x["task_id"], x["start_ms"]) for x in s.view.probe_rounds()}
    cut = [
        x
        for x in unfinished(s.view.probe_starts(), s.view.probe_rounds())
        if x["pid"] in pids and (x["task_id"], x["start_ms"]) not in ended
    ]
    assert cut, "no round of the killed worker was in progress"

    def rerun_of(x: dict) -> dict | None:
        lost = [
            r for r in s.view.runs(x["task_id"], "lost") if r["scheduled_ms"] == x["scheduled_ms"]
        ]
        later = [r for r in s.view.runs(x["task_id"], "ok") if r["started_ms"] > kill_ms]
        return later[0] if lost and later else None

    reruns = wait_until(
        lambda: all(rerun_of(x) for x in cut) and [rerun_of(x) for x in cut],
        timeout_s=15,
        interval_s=0.1,
        message="every round cut off to be lost and run again",
    )
    slowest = max(r["started_ms"] for r in reruns) - kill_ms
    assert slowest <= 15_000
    # Nothing was ever sent to the default queue, which no worker here consumes.
    assert s.redis.llen("celery") == 0
    await dispatcher.stop()
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=20, message="quiescence")
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    assert overlaps(starts, rounds, open_end_ms=dict.fromkeys(pids, kill_ms)) == []
    print(f"\nrounds cut off: {len(cut)}; kill -> slowest rerun start: {slowest} ms")


async def test_routed_timed_pause_ends_on_time(stack, dispatcher):
    """Workers on -Q mac_intel only: a pause with `until` ends by itself at `until`."""
    s = stack(workers=1, beats=1, env=ROUTED, queues="mac_intel")
    task_id = await add_probe_task(dispatcher, "acct-until")
    wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=15, message="a first round")
    until_ms = now_ms() + 3000
    await dispatcher.pause_task(task_id, until=_iso(until_ms))
    wait_until(lambda: s.view.task(task_id).status == "pending", timeout_s=10, message="the resume")
    resumed_ms = now_ms()
    assert resumed_ms >= until_ms
    after = wait_until(
        lambda: [r for r in s.view.runs(task_id, "ok") if r["started_ms"] >= until_ms],
        timeout_s=10,
        message="a round after the pause",
    )
    late_ms = after[0]["started_ms"] - until_ms
    assert late_ms <= 2_000, f"the first round after the pause came {late_ms} ms late"
    print(f"\nuntil -> resumed: {resumed_ms - until_ms} ms; until -> round: {late_ms} ms")
