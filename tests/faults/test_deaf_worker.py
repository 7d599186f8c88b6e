"""A worker whose consumer stops receiving (alive, but deaf) notices and exits to be restarted."""

from __future__ import annotations

import pytest

from taskdispatch.engine.watchdog import EXIT_DEAF
from tests.support.probes import add_probe_task, now_ms, wait_until
from tests.support.stack import Stack, e2e_env

pytestmark = pytest.mark.e2e

WATCHDOG = {"TASKDISPATCH_WORKER_PROBE_EVERY_S": "1", "TASKDISPATCH_WORKER_DEAF_AFTER_S": "4"}


async def test_deaf_worker_exits_with_its_status_and_a_restart_consumes_again(
    stack, dispatcher, proxy, redis_url, tmp_path
):
    """The worker's BRPOP connection goes silent while everything else works: within the
    watchdog's limits it exits with EXIT_DEAF, and a replacement runs the rounds again
    within 30 s of the fault."""
    env = e2e_env(redis_url, WATCHDOG)
    env["TASKDISPATCH_BROKER_URL"] = proxy.url  # only the broker connection goes through it
    log_dir = tmp_path / "deaf"
    log_dir.mkdir()
    deaf = Stack(redis_url, env, log_dir)
    try:
        deaf.start(workers=1, beats=0, concurrency=2, queues="celery")
        s = stack(workers=0, beats=1, env=WATCHDOG)
        task_id = await add_probe_task(dispatcher, "acct-deaf", sleep_s=0.1)
        wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=15, message="a first round")

        proxy.deafen_next(b"BRPOP")
        fault_ms = now_ms()
        wait_until(lambda: proxy.deafened == 1, timeout_s=5, message="the consumer to go silent")
        worker = deaf.workers[0]
        wait_until(lambda: not worker.alive(), timeout_s=30, message="the deaf worker to exit")
        exit_ms = now_ms()
        assert worker.popen.returncode == EXIT_DEAF, worker.tail()
        assert "consumer is deaf" in worker.log()

        # The supervisor's part (compose's restart policy, Kubernetes, make run): start anew.
        deaf.workers.clear()
        deaf.start(workers=1, beats=0, concurrency=2, queues="celery")
        again = wait_until(
            lambda: [r for r in s.view.runs(task_id, "ok") if r["started_ms"] > exit_ms],
            timeout_s=20,
            message="a round on the restarted worker",
        )
        back_ms = again[0]["started_ms"] - fault_ms
        assert back_ms <= 30_000
        print(f"\nfault -> exit {exit_ms - fault_ms} ms; fault -> rounds again {back_ms} ms")
    finally:
        deaf.kill()
