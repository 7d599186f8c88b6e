"""The hour window defers rounds to its start; an end time completes the task."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.domain import schedule
from tests.support.probes import add_probe_task, holds_for, now_ms, wait_until

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Asia/Shanghai")


def window_excluding_now() -> tuple[int, int]:
    """A one-hour window starting two hours from now (local hour in TZ)."""
    start = (datetime.now(TZ).hour + 2) % 24
    return start, start + 1


async def test_window_excluding_now_defers_first_round_to_window_start(stack, dispatcher):
    """A task created outside its window is scheduled at the window start and does not run."""
    s = stack(workers=1, beats=1)
    window = window_excluding_now()
    task_id = await add_probe_task(dispatcher, "acct-window", valid_time_range=list(window))

    task = s.view.task(task_id)
    tz = ZoneInfo(task.timezone)
    calendar = schedule.Calendar(schedule.hour_window(window), tz)
    assert task.next_ms == schedule.next_window_start(now_ms(), calendar)
    assert schedule.to_datetime(task.next_ms, tz).hour == window[0]
    holds_for(
        lambda: (
            s.view.task(task_id).round_num == 0
            and not s.view.probe_starts()
            and not s.view.runs(task_id)
            and s.view.due_score(task_id) == task.next_ms
        ),
        duration_s=3.5,
        message="no round outside the window",
    )


async def test_round_due_outside_window_is_skipped_and_moved_to_window_start(stack, dispatcher):
    """A round that comes due outside the window is recorded skipped, not run, and deferred."""
    s = stack(workers=1, beats=1)
    window = window_excluding_now()
    task_id = await add_probe_task(dispatcher, "acct-late", valid_time_range=list(window))
    window_start = s.view.task(task_id).next_ms

    # Store state of a round that was due while the window was still open (a late claim).
    await dispatcher.store.mutate(task_id, lambda t: t.evolve(next_ms=now_ms()))

    skipped = wait_until(
        lambda: s.view.runs(task_id, "skipped"), timeout_s=15, message="the skip record"
    )
    assert [x["reason"] for x in skipped] == ["outside_window"]
    task = s.view.task(task_id)
    assert (task.status, task.round_num, task.next_ms) == ("pending", 0, window_start)
    assert s.view.due_score(task_id) == window_start
    assert not s.view.probe_starts()


async def test_task_end_time_reached_completes_task_and_leaves_schedule(stack, dispatcher):
    """With an end 1.5 s after the first slot, the task runs its rounds then is completed."""
    s = stack(workers=1, beats=1)
    start = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=1)
    end = start + timedelta(seconds=1.5)
    task_id = await add_probe_task(
        dispatcher,
        "acct-end",
        start_at=start.isoformat(timespec="milliseconds"),
        task_end_time=end.isoformat(timespec="milliseconds"),
    )
    end_ms = s.view.task(task_id).end_ms
    assert end_ms == int(end.timestamp() * 1000)

    wait_until(
        lambda: s.view.task(task_id).status == "completed", timeout_s=15, message="completion"
    )

    task = s.view.task(task_id)
    ok = s.view.runs(task_id, "ok")
    print(f"\nrounds before the end: {len(ok)}")
    assert 1 <= len(ok) <= 2, ok
    assert all(x["scheduled_ms"] <= end_ms for x in ok)
    assert task.next_ms is None and task.round_num == len(ok)
    assert s.view.due_score(task_id) is None
    holds_for(
        lambda: len(s.view.probe_starts()) == len(ok),
        duration_s=1.5,
        message="no round after completion",
    )


async def test_slot_dispatched_after_task_end_time_is_not_run(stack, dispatcher):
    """A slot before the end whose dispatch comes after task_end_time completes the task unrun."""
    s = stack(workers=1, beats=1)
    await dispatcher.stop()  # hold dispatching, as a beat outage would
    end = datetime.now(TZ) + timedelta(seconds=1.5)
    task_id = await add_probe_task(
        dispatcher,
        "acct-late-end",
        start_at=datetime.now(TZ).isoformat(timespec="milliseconds"),
        task_end_time=end.isoformat(timespec="milliseconds"),
    )
    task = s.view.task(task_id)
    assert task.end_ms is not None and task.next_ms is not None and task.next_ms <= task.end_ms
    wait_until(lambda: now_ms() > task.end_ms + 200, timeout_s=5, message="the end to pass")

    await dispatcher.start()
    wait_until(
        lambda: s.view.task(task_id).status == "completed", timeout_s=15, message="completion"
    )
    starts = s.view.probe_starts()
    assert starts == [], f"a round ran {starts[0]['start_ms'] - task.end_ms} ms after the end"
    assert [x["reason"] for x in s.view.runs(task_id)] == ["past_end"]
    assert s.view.task(task_id).next_ms is None and s.view.due_score(task_id) is None
