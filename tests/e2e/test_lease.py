"""The per-account lease: rounds of one account never overlap and wait for a held lease."""

from __future__ import annotations

import pytest

from tests.support.probes import add_probe_task, now_ms, overlaps, wait_until

pytestmark = pytest.mark.e2e


async def test_round_longer_than_interval_and_lease_ttl_never_overlaps_itself(stack, dispatcher):
    """2.5 s rounds every 1 s (lease TTL 2 s, renewed) on 2 workers, 2 beats: no overlap."""
    s = stack(workers=2, beats=2, concurrency=2, env={"TASKDISPATCH_LEASE_TTL_S": "2"})
    task_id = await add_probe_task(dispatcher, "acct-long", sleep_s=2.5)

    wait_until(
        lambda: len(s.view.runs(task_id, "ok")) >= 4,
        timeout_s=30,
        interval_s=0.25,
        message="four ok rounds",
    )

    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    assert overlaps(starts, rounds, open_end_ms={}) == []
    assert s.view.runs(task_id, "lost") == [], "a renewed lease was declared lost"
    ok = s.view.runs(task_id, "ok")
    assert all(x["finished_ms"] - x["started_ms"] >= 2500 for x in ok)
    pids = {x["pid"] for x in rounds}
    print(f"\nok rounds: {len(ok)}; pool processes that ran them: {len(pids)}")


async def test_held_account_lease_defers_rounds_until_released(stack, dispatcher):
    """While another holder owns the account's lease, the slot is skipped and retried, not run."""
    s = stack(workers=1, beats=1)
    lock = s.keys.lock("acct-held")
    s.redis.set(lock, "someone-else")
    task_id = await add_probe_task(dispatcher, "acct-held")

    skipped = wait_until(
        lambda: (x := s.view.runs(task_id, "skipped")) and len(x) >= 2 and x,
        timeout_s=15,
        message="two account_locked skips",
    )
    assert {x["reason"] for x in skipped} == {"account_locked"}
    assert not s.view.probe_starts()
    assert s.view.task(task_id).round_num == 0

    released_ms = now_ms()
    s.redis.delete(lock)
    ok = wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=15, message="a round")
    # The slot that waited is the one that runs: it was deferred, not dropped.
    assert ok[0]["scheduled_ms"] == skipped[0]["scheduled_ms"]
    assert ok[0]["started_ms"] >= released_ms
