"""Calendars with real workers and beats: jitter inside its band, a run limit, a skipped misfire."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.domain import lifecycle, schedule
from tests.support.probes import add_probe_task, now_ms, wait_until

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Asia/Shanghai")


def _window_around_now(minutes: int) -> str:
    """A window from a minute ago to `minutes` later (local), so the test runs inside it."""
    start = datetime.now(TZ) - timedelta(minutes=1)
    end = start + timedelta(minutes=minutes)
    return f"{start:%H:%M}-{end:%H:%M}"


async def test_jittered_rounds_start_inside_their_band_and_window(stack, dispatcher):
    """jitter_s 2 on a 4 s interval: each round starts at its planned start (slot + the slot's
    jitter) or later, before the next slot, and inside its window."""
    s = stack(workers=1, beats=1)
    window = _window_around_now(30)
    task_id = await add_probe_task(
        dispatcher, "acct-jitter", interval=4, jitter_s=2, windows=[window], valid_time_range=None
    )
    rounds = wait_until(
        lambda: len(x := s.view.runs(task_id, "ok")) >= 4 and x,
        timeout_s=40,
        interval_s=0.25,
        message="four ok rounds",
    )
    task = s.view.task(task_id)
    delays = []
    for record in rounds:
        slot, started = record["scheduled_ms"], record["started_ms"]
        planned = lifecycle.start_of(task, slot)
        assert record["planned_ms"] == planned
        assert slot <= planned <= slot + 2000
        assert planned <= started < slot + 4000, record
        assert schedule.in_window(started, task.calendar)
        delays.append(planned - slot)
    assert len(set(delays)) > 1, "every round got the same jitter"
    print(f"\njitter of four rounds (ms): {delays}")


async def test_task_with_max_runs_completes_after_that_many_rounds(stack, dispatcher):
    """max_runs 3: three rounds run, then the task is completed with no run left."""
    s = stack(workers=1, beats=1)
    task_id = await add_probe_task(dispatcher, "acct-limited", max_runs=3)
    wait_until(
        lambda: s.view.task(task_id).status == "completed", timeout_s=20, message="completion"
    )
    task = s.view.task(task_id)
    assert (task.runs_done, task.next_ms) == (3, None)
    assert len(s.view.runs(task_id, "ok")) == 3
    assert s.view.due_score(task_id) is None
    info = (await dispatcher.get_task(task_id)).max_runs
    assert info == 3


async def test_skip_policy_records_slots_missed_without_a_beat_and_never_runs_them_late(
    stack, dispatcher
):
    """misfire_policy skip: with no beat across two slots, they are recorded as missed when
    a beat comes back, and no round runs for them late."""
    s = stack(workers=1, beats=0)
    first = datetime.now(TZ) + timedelta(seconds=1)
    task_id = await add_probe_task(
        dispatcher,
        "acct-misfire",
        interval=2,
        misfire_policy="skip",
        misfire_grace_s=1,
        start_at=first.isoformat(timespec="milliseconds"),
    )
    slot = s.view.task(task_id).next_ms
    wait_until(lambda: now_ms() > slot + 5_000, timeout_s=10, message="two slots to pass")
    beat_ms = now_ms()
    stack(workers=0, beats=1)
    missed = wait_until(
        lambda: [r for r in s.view.runs(task_id, "skipped") if r["reason"] == "missed"],
        timeout_s=20,
        message="the missed slots",
    )
    assert len(missed) >= 2
    assert missed[0]["scheduled_ms"] == slot
    ok = wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=20, message="a round after")
    # The first round that ran was for a slot inside the grace, not one of the missed.
    assert ok[0]["scheduled_ms"] >= beat_ms - 1_000 - 2_000
    assert {r["scheduled_ms"] for r in missed}.isdisjoint(r["scheduled_ms"] for r in ok)
    print(f"\nmissed slots: {len(missed)}; first round after the beat: {ok[0]['scheduled_ms']}")
