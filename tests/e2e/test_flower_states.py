"""Flower shows each round's Celery task in the state its outcome calls for (a real Flower
reading the events of a real worker): a failed round as FAILURE with the handler's error,
a round that ran fine as SUCCESS with its summary."""

from __future__ import annotations

import pytest

from tests.support.flower import start_flower
from tests.support.probes import add_probe_task, holds_for, wait_until

pytestmark = pytest.mark.e2e


async def test_flower_failed_round_is_listed_as_failure_with_the_handler_error(
    stack, dispatcher, tmp_path
):
    """A handler that raises: its round is recorded failed, Flower lists its Celery task as
    FAILURE with the handler's error naming the task and account, and the worker logs the
    failure without a traceback."""
    s = stack(workers=1, beats=1)
    with start_flower(s.env, tmp_path / "flower.log") as flower:
        wait_until(lambda: flower.sees_worker(s.node(0)), 30, message="Flower to see the worker")
        kwargs = {"sleep_s": 0, "error": "boom from the handler"}
        task_id = await add_probe_task(dispatcher, "acct-flower", kwargs=kwargs)
        wait_until(lambda: s.view.runs(task_id, "failed"), 20, message="a failed round")
        failed = wait_until(
            lambda: [t for t in flower.round_tasks(task_id) if t["state"] == "FAILURE"],
            10,
            message="Flower to list the round as FAILURE",
        )
        info = flower.task_info(failed[0]["uuid"])
    assert info["state"] == "FAILURE"
    assert "RuntimeError: boom from the handler" in info["exception"]
    assert task_id in info["exception"] and "acct-flower" in info["exception"]
    log = s.workers[0].log()
    assert "raised expected: RoundFailedError(" in log
    assert "Traceback" not in log


async def test_flower_round_that_ran_ok_is_listed_as_success_with_its_summary(
    stack, dispatcher, tmp_path
):
    """A round recorded ok: Flower lists its Celery task as SUCCESS, the summary (outcome
    ok) as its result."""
    s = stack(workers=1, beats=1)
    with start_flower(s.env, tmp_path / "flower.log") as flower:
        wait_until(lambda: flower.sees_worker(s.node(0)), 30, message="Flower to see the worker")
        task_id = await add_probe_task(dispatcher, "acct-flower-ok")
        wait_until(lambda: s.view.runs(task_id, "ok"), 20, message="a round recorded ok")
        done = wait_until(
            lambda: [t for t in flower.round_tasks(task_id) if t["state"] == "SUCCESS"],
            10,
            message="Flower to list the round as SUCCESS",
        )
    assert "'outcome': 'ok'" in str(done[0]["result"])


async def test_flower_cancelled_round_is_listed_as_revoked(stack, dispatcher, tmp_path):
    """A round cancelled mid-handler: recorded cancelled, and Flower lists its Celery task as
    REVOKED, not SUCCESS or FAILURE."""
    s = stack(workers=1, beats=1)
    with start_flower(s.env, tmp_path / "flower.log") as flower:
        wait_until(lambda: flower.sees_worker(s.node(0)), 30, message="Flower to see the worker")
        task_id = await add_probe_task(dispatcher, "acct-flower-cancel", sleep_s=30)
        wait_until(
            lambda: any(x["task_id"] == task_id for x in s.view.probe_starts()),
            20,
            message="the round to start",
        )
        await dispatcher.cancel_round(task_id)
        wait_until(lambda: s.view.runs(task_id, "cancelled"), 15, message="a cancelled round")
        revoked = wait_until(
            lambda: [t for t in flower.round_tasks(task_id) if t["state"] == "REVOKED"],
            10,
            message="Flower to list the round as REVOKED",
        )
    assert len(revoked) == 1
    assert "cancelled; Celery state REVOKED" in s.workers[0].log()


async def test_flower_terminate_of_a_running_round_cancels_it_instead_of_killing_it(
    stack, dispatcher, tmp_path
):
    """Flower's Terminate (revoke with terminate=true) on a running round: the handler is
    interrupted inside (RoundCancelled), its pool process lives on, the round is recorded
    cancelled with no failure and not run again, Flower lists it as REVOKED, and a run-now
    starts at once."""
    s = stack(workers=1, beats=1)
    with start_flower(s.env, tmp_path / "flower.log") as flower:
        wait_until(lambda: flower.sees_worker(s.node(0)), 30, message="Flower to see the worker")
        task_id = await add_probe_task(dispatcher, "acct-flower-term", sleep_s=120, interval=600)
        await dispatcher.run_now(task_id)
        running = wait_until(
            lambda: [t for t in flower.round_tasks(task_id) if t["state"] == "STARTED"],
            20,
            message="Flower to list the round as STARTED",
        )
        [start] = wait_until(s.view.probe_starts, 20, message="the handler to start")
        pid = start["pid"]
        flower.terminate(running[0]["uuid"])
        [record] = wait_until(
            lambda: s.view.runs(task_id, "cancelled"), 10, message="a cancelled round"
        )
        wait_until(
            lambda: flower.task_info(running[0]["uuid"])["state"] == "REVOKED",
            10,
            message="Flower to list the round as REVOKED",
        )
        assert record["cancelled_by"] == "celery control revoke --terminate (SIGTERM)"
        assert [x["by"] for x in s.view.probe_interrupts()] == ["RoundCancelled"]
        assert s.view.task(task_id).failures == 0
        holds_for(
            lambda: len(s.view.probe_starts()) == 1 and not s.view.runs(task_id, "lost"),
            duration_s=9,
            message="no rerun of the terminated slot",
        )
        await dispatcher.run_now(task_id)
        wait_until(lambda: len(s.view.probe_starts()) == 2, 5, message="the run-now round")
        assert s.view.probe_starts()[1]["pid"] == pid
