"""Clock sanity: rounds longer than their interval, and rounds that hang past the time limit."""

from __future__ import annotations

import itertools

import pytest

from tests.support.probes import add_probe_task, overlaps, unfinished, wait_until

pytestmark = pytest.mark.e2e

TIME_LIMIT_S = 3
LONG_S = 2.0


async def test_rounds_longer_than_interval_never_run_concurrently_and_hangs_are_stopped(
    stack, dispatcher
):
    """2 s rounds every 1 s never overlap; a 60 s hang is cut at 3 s, failed, then error."""
    s = stack(
        workers=2,
        beats=2,
        concurrency=2,
        env={
            "TASKDISPATCH_ROUND_TIME_LIMIT_S": str(TIME_LIMIT_S),
            "TASKDISPATCH_LEASE_TTL_S": "1.5",  # shorter than a round: renewal must carry it
        },
    )
    long_id = await add_probe_task(dispatcher, "acct-long", sleep_s=LONG_S, interval=1)
    hang_id = await add_probe_task(dispatcher, "acct-hang", sleep_s=60, interval=1)

    wait_until(
        lambda: len(s.view.runs(long_id, "ok")) >= 3 and s.view.task(hang_id).status == "error",
        timeout_s=45,
        interval_s=0.25,
        message="three long rounds and the hanging task in error",
    )
    await dispatcher.stop()
    wait_until(lambda: s.view.is_idle(long_id), timeout_s=15, message="the long task to go idle")

    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    long_rounds = sorted(
        (x for x in rounds if x["task_id"] == long_id), key=lambda x: x["start_ms"]
    )
    assert (
        overlaps([x for x in starts if x["task_id"] == long_id], long_rounds, open_end_ms={}) == []
    )
    for a, b in itertools.pairwise(long_rounds):
        assert b["start_ms"] >= a["end_ms"], (a, b)
    assert all(x["end_ms"] - x["start_ms"] >= LONG_S * 1000 for x in long_rounds)
    assert s.view.runs(long_id, "lost") == [], "a renewed lease was declared lost"

    hang = s.view.task(hang_id)
    failed = s.view.runs(hang_id, "failed")
    assert len(failed) == 3 and s.view.runs(hang_id, "ok") == []
    for record in failed:
        assert "SoftTimeLimitExceeded" in record["error"], record
        took_ms = record["finished_ms"] - record["started_ms"]
        # Celery starts the clock a few ms before the round records its start.
        assert (TIME_LIMIT_S - 0.5) * 1000 <= took_ms < (TIME_LIMIT_S + 3) * 1000, record
    # The handler never got past its sleep; nothing of it runs any more, nothing is held.
    hang_starts = [x for x in starts if x["task_id"] == hang_id]
    assert len(hang_starts) == 3
    assert unfinished(hang_starts, rounds) == hang_starts
    assert hang.status == "error" and "SoftTimeLimitExceeded" in (hang.last_error or "")
    assert hang.run_id is None and s.view.runs(hang_id, "lost") == []
    assert not s.redis.exists(s.keys.lock("acct-hang"))
    print(
        f"\nlong rounds: {len(long_rounds)}; hang rounds stopped after "
        f"{[r['finished_ms'] - r['started_ms'] for r in failed]} ms"
    )
