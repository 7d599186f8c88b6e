"""A worker told to stop (SIGTERM to its main process: a deploy, `docker compose restart`)
lets the rounds it runs finish, records them, and only then exits.

The worker has a free pool process while it drains (`-c 2`, one round): its consumer stops
fetching, so its own probe goes unanswered, which once made the consume watchdog declare
it deaf and cut the round (issue #23). The watchdog's limits are short here, so that a
watchdog that still judged a draining worker would fire well within the round.
"""

from __future__ import annotations

import signal

import pytest

from tests.support.probes import add_probe_task, now_ms, wait_until

pytestmark = pytest.mark.e2e

WATCHDOG = {"TASKDISPATCH_WORKER_PROBE_EVERY_S": "1", "TASKDISPATCH_WORKER_DEAF_AFTER_S": "3"}
ROUND_S = 25.0


def _start_of(s, task_id: str) -> dict:
    starts = [x for x in s.view.probe_starts() if x["task_id"] == task_id]
    return starts[0] if starts else {}


async def test_worker_sigterm_mid_round_finishes_the_round_records_it_ok_then_exits_0(
    stack, dispatcher
):
    """SIGTERM to the main process 2 s into a 25 s round: the handler runs to its end, the
    round is recorded ok (nothing lost), the worker exits 0 after it, and the slot is never
    run again once a new worker takes over."""
    s = stack(workers=1, beats=1, concurrency=2, env=WATCHDOG)
    task_id = await add_probe_task(dispatcher, "acct-warm", sleep_s=ROUND_S, interval=1)
    start = wait_until(lambda: _start_of(s, task_id), timeout_s=20, message="the round to start")
    worker = s.workers[0]
    wait_until(lambda: now_ms() - start["start_ms"] >= 2000, timeout_s=5, message="2 s of round")
    worker.popen.send_signal(signal.SIGTERM)  # the main process only, as docker and k8s do

    wait_until(lambda: not worker.alive(), timeout_s=ROUND_S + 20, message="the worker to exit")
    exited_ms = now_ms()
    assert worker.popen.returncode == 0, worker.tail()
    assert "consumer is deaf" not in worker.log()
    ended = [x for x in s.view.probe_rounds() if x["start_ms"] == start["start_ms"]]
    assert ended, "the handler did not record its end"
    assert ended[0]["end_ms"] - ended[0]["start_ms"] >= ROUND_S * 1000
    assert ended[0]["end_ms"] <= exited_ms
    runs = s.view.runs(task_id)
    assert [r["outcome"] for r in runs] == ["ok"], runs
    assert runs[0]["scheduled_ms"] == start["scheduled_ms"]

    # A new worker runs the task's next slot, not the one that finished.
    s.add_worker(concurrency=2)
    wait_until(
        lambda: len([x for x in s.view.probe_starts() if x["task_id"] == task_id]) >= 2,
        timeout_s=20,
        message="the next round on the new worker",
    )
    slots = [x["scheduled_ms"] for x in s.view.probe_starts() if x["task_id"] == task_id]
    assert slots.count(start["scheduled_ms"]) == 1, slots
    assert s.view.runs(task_id, "lost") == []


async def test_worker_sigterm_draining_worker_withdraws_its_heartbeat_at_once(stack, dispatcher):
    """While its last round finishes, a stopping worker no longer counts as a consumer: its
    heartbeat leaves the workers index within two watchdog steps, long before it exits."""
    s = stack(workers=1, beats=1, concurrency=2, env=WATCHDOG)
    node = s.node(0)
    wait_until(
        lambda: s.redis.zscore(s.keys.workers(), node) is not None,
        timeout_s=10,
        message="the worker's heartbeat",
    )
    task_id = await add_probe_task(dispatcher, "acct-drain", sleep_s=10, interval=1)
    start = wait_until(lambda: _start_of(s, task_id), timeout_s=20, message="the round to start")
    worker = s.workers[0]
    worker.popen.send_signal(signal.SIGTERM)
    signalled_ms = now_ms()
    wait_until(
        lambda: s.redis.zscore(s.keys.workers(), node) is None,
        timeout_s=3,
        message="the heartbeat to be withdrawn",
    )
    assert worker.alive(), "the worker must still be draining its round"
    assert now_ms() < start["start_ms"] + 10_000
    wait_until(lambda: not worker.alive(), timeout_s=25, message="the worker to exit")
    assert worker.popen.returncode == 0, worker.tail()
    assert [r["outcome"] for r in s.view.runs(task_id)] == ["ok"]
    assert s.redis.zscore(s.keys.workers(), node) is None
    print(f"\nSIGTERM -> exit {now_ms() - signalled_ms} ms")
