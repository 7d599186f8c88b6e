"""The dispatcher flag in Redis halts and resumes dispatching by every beat."""

from __future__ import annotations

import pytest

from tests.support.probes import add_probe_task, holds_for, wait_until

pytestmark = pytest.mark.e2e


async def test_dispatcher_status_counts_live_beats(stack, dispatcher):
    """Two running beats are alive in the status; stopping turns is_running off, not the beats."""
    stack(workers=0, beats=2)

    status = await dispatcher.status()
    assert status.beats_alive == 2 and status.enabled and status.is_running

    await dispatcher.stop()
    status = await dispatcher.status()
    assert status.beats_alive == 2 and not status.enabled and not status.is_running


async def test_dispatcher_stop_freezes_rounds_and_start_resumes_them(stack, dispatcher):
    """After stop() (and the round in flight) round_num is frozen; start() brings rounds back."""
    s = stack(workers=1, beats=1)
    task_id = await add_probe_task(dispatcher, "acct-flag", sleep_s=0.5)
    wait_until(lambda: s.view.task(task_id).round_num >= 2, timeout_s=15, message="two rounds")

    await dispatcher.stop()
    wait_until(lambda: s.view.is_idle(task_id), timeout_s=10, message="the round to end")
    frozen = s.view.task(task_id)
    starts = len(s.view.probe_starts())
    holds_for(
        lambda: (
            s.view.task(task_id).round_num == frozen.round_num
            and len(s.view.probe_starts()) == starts
        ),
        duration_s=3.5,
        message="no round while the dispatcher is stopped",
    )
    assert frozen.status == "pending"

    await dispatcher.start()
    wait_until(
        lambda: s.view.task(task_id).round_num >= frozen.round_num + 2,
        timeout_s=15,
        message="rounds after start",
    )
