"""Pausing a task stops its rounds; resuming restarts them."""

from __future__ import annotations

import pytest

from tests.support.probes import add_probe_task, holds_for, wait_until

pytestmark = pytest.mark.e2e


async def test_paused_task_runs_no_rounds_until_resumed(stack, dispatcher):
    """round_num stays constant for > 3 intervals while paused and climbs again on resume."""
    s = stack(workers=1, beats=1)
    task_id = await add_probe_task(dispatcher, "acct-pause", sleep_s=0.3)
    wait_until(lambda: s.view.task(task_id).round_num >= 2, timeout_s=15, message="two rounds")

    await dispatcher.pause_task(task_id)
    # A round in progress finishes and is not rescheduled.
    wait_until(
        lambda: s.view.task(task_id).run_id is None, timeout_s=10, message="the round to end"
    )
    paused = s.view.task(task_id)
    assert paused.status == "paused"
    assert s.view.due_score(task_id) is None
    starts = len(s.view.probe_starts())
    holds_for(
        lambda: (
            s.view.task(task_id).round_num == paused.round_num
            and len(s.view.probe_starts()) == starts
        ),
        duration_s=3.5,
        message="no round while paused",
    )

    await dispatcher.resume_task(task_id)
    wait_until(
        lambda: s.view.task(task_id).round_num >= paused.round_num + 2,
        timeout_s=15,
        message="rounds after resume",
    )
