"""Several beats over the same Redis dispatch every slot exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.support.probes import add_probe_task, wait_until

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Asia/Shanghai")
TASKS = 20
ROUNDS_EACH = 6


async def test_two_beats_dispatch_no_slot_twice(stack, dispatcher):
    """20 tasks at 1 s with two beats: no (task, slot) runs twice and every task advances."""
    # Debug level: each beat logs every batch it dispatches (at info, one summary a minute).
    s = stack(workers=2, beats=2, concurrency=2, beat_log_level="debug")
    # Slots spread over a second, so the beats race for many small claims, not a few big ones.
    first = datetime.now(TZ) + timedelta(seconds=0.5)
    ids = [
        await add_probe_task(
            dispatcher,
            f"acct-{i:02d}",
            start_at=(first + timedelta(milliseconds=50 * i)).isoformat(timespec="milliseconds"),
        )
        for i in range(TASKS)
    ]

    wait_until(
        lambda: min(s.view.task(t).round_num for t in ids) >= ROUNDS_EACH,
        timeout_s=40,
        interval_s=0.5,
        message=f"{ROUNDS_EACH} rounds of every task",
    )
    await dispatcher.stop()
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=15, message="quiescence")

    rounds = s.view.probe_rounds()
    twice = [
        k for k, n in Counter((x["task_id"], x["scheduled_ms"]) for x in rounds).items() if n > 1
    ]
    assert twice == []
    assert len(s.view.probe_starts()) == len(rounds)
    per_task = Counter(x["task_id"] for x in rounds)
    assert {t: per_task[t] for t in ids} == {t: s.view.task(t).round_num for t in ids}
    dispatched = [b.log().count("dispatched") for b in s.beats]
    print(f"\nrounds: {len(rounds)}; claims per beat: {dispatched}")
    assert min(dispatched) > 0, "one beat never dispatched: the test did not exercise two beats"
