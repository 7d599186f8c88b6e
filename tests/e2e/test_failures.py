"""Repeated handler failures take a task out of the schedule in `error`."""

from __future__ import annotations

import pytest

from taskdispatch.domain.bodies import TaskSpec
from tests.support.probes import holds_for, wait_until

pytestmark = pytest.mark.e2e


async def test_handler_failing_three_times_in_a_row_puts_task_in_error(stack, dispatcher):
    """Three failed rounds (with their error text) in history, then `error`, off the schedule."""
    s = stack(workers=1, beats=1)
    task_id = await dispatcher.add_task(
        TaskSpec(
            sys_type="mac_intel",
            xhs_account_id="acct-fail",
            xhs_account_name="name-acct-fail",
            interval=1,
            valid_time_range=[0, 24],
            task_type="xhs_type",
            kwargs={"demo_fail": True, "demo_duration_s": 0},
        )
    )

    wait_until(lambda: s.view.task(task_id).status == "error", timeout_s=20, message="error")

    task = s.view.task(task_id)
    runs = s.view.runs(task_id)
    assert [x["outcome"] for x in runs] == ["failed"] * 3, runs
    assert all("demo_fail is set" in x["error"] for x in runs)
    assert [x["round_num"] for x in runs] == [1, 2, 3]
    assert task.failures == 3 and "demo_fail is set" in (task.last_error or "")
    assert task.run_id is None and s.view.due_score(task_id) is None
    assert task_id not in s.view.running_ids()
    holds_for(
        lambda: len(s.view.runs(task_id)) == 3 and s.view.task(task_id).status == "error",
        duration_s=2.0,
        message="no round after error",
    )
