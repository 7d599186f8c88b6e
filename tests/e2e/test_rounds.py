"""Rounds run on their slots and the round counter climbs (one worker, one beat)."""

from __future__ import annotations

import itertools

import pytest

from tests.support.probes import add_probe_task, wait_until

pytestmark = pytest.mark.e2e


async def test_task_interval_one_second_runs_rounds_on_time_and_counts_them(stack, dispatcher):
    """Rounds of a 1 s task start near their slot, slots are >= 1 s apart, round_num climbs."""
    s = stack(workers=1, beats=1)
    task_id = await add_probe_task(dispatcher, "acct-rounds")

    wait_until(
        lambda: len(s.view.runs(task_id, "ok")) >= 3,
        timeout_s=20,
        message="three ok rounds",
    )

    ok = s.view.runs(task_id, "ok")
    assert [x["round_num"] for x in ok] == list(range(1, len(ok) + 1))
    assert s.view.task(task_id).round_num >= len(ok)
    slots = [x["scheduled_ms"] for x in ok]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap >= 1000 for gap in gaps), f"slots closer than the interval: {gaps}"
    lateness = [x["started_ms"] - x["scheduled_ms"] for x in ok]
    print(f"\nstart - scheduled (ms): {lateness}; slot gaps (ms): {gaps}")
    assert all(0 <= late < 3000 for late in lateness), f"rounds started late: {lateness}"
    # The probe ran once per recorded round, for the slot the history names.
    probes = [(x["scheduled_ms"], x["round_num"]) for x in s.view.probe_rounds()]
    assert [(x["scheduled_ms"], x["round_num"]) for x in ok] == probes[: len(ok)]
