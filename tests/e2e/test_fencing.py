"""A round message whose fence is no longer the task's is dropped by the worker."""

from __future__ import annotations

import pytest

from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.engine.worker import create_celery_app
from tests.support.probes import add_probe_task, holds_for, wait_until

pytestmark = pytest.mark.e2e


async def test_round_message_with_old_fence_is_dropped_without_running(stack, dispatcher):
    """A message issued before a pause/resume does not run; one with the current fence does."""
    s = stack(workers=1, beats=0)
    task_id = await add_probe_task(dispatcher, "acct-fence", interval=3600)
    old = s.view.task(task_id)
    await dispatcher.pause_task(task_id)
    await dispatcher.resume_task(task_id)
    current = s.view.task(task_id)
    assert current.status == "pending" and current.fence > old.fence

    app = create_celery_app(s.settings)

    def send(fence: int) -> str:
        kwargs = {
            "task_id": task_id,
            "fence": fence,
            "slot_ms": current.next_ms,
            "account_id": current.account_id,
            "task_type": current.task_type,
        }
        return str(app.send_task(ROUND_TASK, kwargs=kwargs, queue="celery").id)

    try:
        stale_id = send(old.fence)
        line = wait_until(
            lambda: next(
                (x for x in s.workers[0].log().splitlines() if stale_id in x and "succeeded" in x),
                None,
            ),
            timeout_s=15,
            message="the worker to handle the stale message",
        )
        assert "stale message" in line
        holds_for(
            lambda: not s.view.probe_starts() and not s.view.runs(task_id),
            duration_s=1.0,
            message="no round after the stale message",
        )
        after = s.view.task(task_id)
        assert (after.round_num, after.fence, after.status) == (0, current.fence, "pending")

        # Control: the same message with the task's current fence does run the round.
        send(current.fence)
        wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=15, message="the fresh round")
        assert len(s.view.probe_rounds()) == 1
        assert s.view.task(task_id).round_num == 1
    finally:
        app.close()
