"""An async handler on a worker cut off from Redis is cancelled before its lease expires."""

from __future__ import annotations

import json

import pytest

from tests.support.probes import add_probe_task, probe_file_records, wait_until
from tests.support.stack import Stack, e2e_env

pytestmark = pytest.mark.e2e

TTL_S = 3.0


async def test_async_handler_partitioned_is_cancelled_before_its_lease_expires(
    stack, dispatcher, proxy, redis_url, tmp_path
):
    """Worker A reaches Redis through a proxy that drops every packet mid-round: A's
    coroutine gets CancelledError at its await (naming the lease) and its finally runs while
    Redis still holds the lease; the rerun on worker B starts only after that."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    env = {"TASKDISPATCH_LEASE_TTL_S": str(TTL_S), "E2E_PROBE_DIR": str(probe_dir)}
    log_a = tmp_path / "worker-a"
    log_a.mkdir()
    a = Stack(proxy.url, e2e_env(proxy.url, env), log_a)
    try:
        a.start(workers=1, beats=0, concurrency=1, queues="celery")
        s = stack(workers=0, beats=1, env=env)
        task_id = await add_probe_task(
            dispatcher, "acct-async-cut", sleep_s=30.0, task_type="probe_async_file"
        )
        [first] = wait_until(
            lambda: probe_file_records(probe_dir)[0], timeout_s=15, message="A's round"
        )
        assert first["pid"] in {p.pid for p in a.workers[0].group()}
        b = stack(workers=1, beats=0, env=env)

        # Cut after a renewal A made (its running score moved on), not at a guessed moment.
        started_score = s.redis.zscore(s.keys.running(), task_id)
        wait_until(
            lambda: (s.redis.zscore(s.keys.running(), task_id) or 0) > (started_score or 0),
            timeout_s=2 * TTL_S,
            message="a renewal of A's lease",
        )
        proxy.partition()
        [end] = wait_until(
            lambda: [x for x in probe_file_records(probe_dir)[1] if x["pid"] == first["pid"]],
            timeout_s=2 * TTL_S,
            interval_s=0.02,
            message="A's coroutine to end",
        )
        # Nothing A sends reaches Redis now: the lease's expiry can only have been set before.
        expiry_ms = s.redis.pexpiretime(s.keys.lock("acct-async-cut"))
        assert expiry_ms > end["end_ms"], (expiry_ms, end)
        [cancelled] = [x for x in _events(probe_dir, "cancelled") if x["pid"] == first["pid"]]
        assert "lease could not be renewed" in cancelled["message"], cancelled
        assert cancelled["at_ms"] <= end["end_ms"]

        rerun = wait_until(
            lambda: [x for x in probe_file_records(probe_dir)[0] if x["pid"] != first["pid"]],
            timeout_s=4 * TTL_S,
            message="the rerun on worker B",
        )[0]
        assert rerun["pid"] in {p.pid for p in b.workers[0].group()}
        assert rerun["start_ms"] > end["end_ms"], (end, rerun)
        assert rerun["fencing_token"] > first["fencing_token"]
        proxy.heal()
        lost = wait_until(
            lambda: s.view.runs(task_id, "lost"), timeout_s=10, message="the lost record"
        )
        assert len(lost) == 1 and lost[0]["scheduled_ms"] == first["scheduled_ms"]
    finally:
        a.kill()


def _events(probe_dir, event):
    """Every record of one event the file probes wrote, from every process's file."""
    lines = [json.loads(x) for f in probe_dir.glob("*.jsonl") for x in f.read_text().splitlines()]
    return [x for x in lines if x["event"] == event]
