"""A worker cut off from Redis mid-round stops its round before the rerun can start."""

from __future__ import annotations

import time

import pytest

from tests.support.probes import add_probe_task, now_ms, probe_file_records, wait_until
from tests.support.stack import START_TIMEOUT_S, Stack, e2e_env

pytestmark = pytest.mark.e2e

TTL_S = 3.0
# A's round must still run when the cut comes, after worker B started (however long that
# takes under load, up to START_TIMEOUT_S); the fence ends it within a TTL of the cut. An
# 8 s round could end on its own before a slow B was up. B's rerun, as long, cannot end
# (and be recorded) before the test has looked.
ROUND_S = START_TIMEOUT_S + 4 * TTL_S
# How Celery logs a round task that ended with RoundFailedError (the round lost or failed).
_ROUND_TASK_FAILED = "raised expected: RoundFailedError("


async def test_worker_partitioned_for_twice_the_lease_never_overlaps_the_rerun(
    stack, dispatcher, proxy, redis_url, tmp_path
):
    """Worker A reaches Redis through a proxy that drops every packet for 2x the lease TTL
    mid-round: A stops its handler, recovery reruns the slot on worker B, and B starts only
    after A's handler ended (judged from the handler's own records, kept in files)."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    env = {"TASKDISPATCH_LEASE_TTL_S": str(TTL_S), "E2E_PROBE_DIR": str(probe_dir)}
    # Worker A: store and broker through the proxy. Beat and (later) worker B: direct.
    log_a = tmp_path / "worker-a"
    log_a.mkdir()
    a = Stack(proxy.url, e2e_env(proxy.url, env), log_a)
    try:
        a.start(workers=1, beats=0, concurrency=1, queues="celery")
        s = stack(workers=0, beats=1, env=env)
        task_id = await add_probe_task(
            dispatcher, "acct-cut", sleep_s=ROUND_S, task_type="probe_file"
        )
        first = wait_until(
            lambda: probe_file_records(probe_dir)[0], timeout_s=15, message="A's round"
        )[0]
        assert first["pid"] in {p.pid for p in a.workers[0].group()}
        b = stack(workers=1, beats=0, env=env)

        a_ended = [x for x in probe_file_records(probe_dir)[1] if x["pid"] == first["pid"]]
        assert not a_ended, f"A's round ended before the cut: {a_ended}"
        proxy.partition()
        cut_s = time.monotonic()
        rerun = wait_until(
            lambda: [x for x in probe_file_records(probe_dir)[0] if x["pid"] != first["pid"]],
            timeout_s=4 * TTL_S,
            interval_s=0.05,
            message="the rerun on worker B",
        )[0]
        time.sleep(max(0.0, 2 * TTL_S - (time.monotonic() - cut_s)))
        proxy.heal()

        ends = {x["pid"]: x for x in probe_file_records(probe_dir)[1]}
        assert first["pid"] in ends, "A's handler never stopped"
        a_end = ends[first["pid"]]["end_ms"]
        assert rerun["start_ms"] > a_end, (first, ends[first["pid"]], rerun)
        assert rerun["scheduled_ms"] >= first["scheduled_ms"]
        assert rerun["fencing_token"] > first["fencing_token"]
        lost = wait_until(
            lambda: s.view.runs(task_id, "lost"), timeout_s=10, message="the lost record"
        )
        assert len(lost) == 1 and lost[0]["scheduled_ms"] == first["scheduled_ms"]
        assert lost[0]["reason"] in ("lease_expired", "lease_unrenewable")
        # A comes back by itself after the partition, and its stale outcome is fenced out.
        healed_ms = now_ms()
        wait_until(
            lambda: (s.redis.zscore(s.keys.workers(), a.node(0)) or 0) > healed_ms,
            timeout_s=15,
            message="worker A's heartbeat after the partition",
        )
        # A's round task ends after its final write was tried: from then on, a single record
        # by A shows that write was fenced out.
        [a_task_end] = wait_until(
            lambda: [x for x in a.workers[0].log().splitlines() if _ROUND_TASK_FAILED in x],
            timeout_s=30,
            message="A's round task to end",
        )
        assert "(account acct-cut) lost:" in a_task_end, a_task_end
        assert a.workers[0].alive() and b.workers[0].alive()
        assert [r["worker"] for r in s.view.runs(task_id)] == [a.node(0)], s.view.runs(task_id)
        print(
            f"\nA handler end -> B rerun start: {rerun['start_ms'] - a_end} ms; A ran "
            f"{a_end - first['start_ms']} ms, lost reason {lost[0]['reason']}"
        )
        b.kill_worker(0)  # its rerun has shown all it had to; a warm stop would wait it out
    finally:
        a.kill()
