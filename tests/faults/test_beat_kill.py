"""A beat SIGKILLed in the middle of dispatching a large due batch, with a second beat."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from taskdispatch.service.consistency import check_consistency
from tests.support.api import iso_now
from tests.support.probes import add_probe_task, duplicate_slots, now_ms, wait_until

pytestmark = pytest.mark.e2e

TASKS = 2000
BATCH = 250
DISPATCH_TIMEOUT_S = 5


async def test_beat_sigkill_after_first_claim_no_slot_lost_or_dispatched_twice(stack, dispatcher):
    """2,000 tasks due at once; beat A killed right after its first claim: each runs once."""
    s = stack(
        workers=2,
        beats=2,
        concurrency=3,
        env={
            "TASKDISPATCH_CLAIM_BATCH": str(BATCH),
            "TASKDISPATCH_DISPATCH_TIMEOUT_S": str(DISPATCH_TIMEOUT_S),
        },
    )
    beat_a, beat_b = s.beats
    await dispatcher.stop()  # the batch becomes due all at once when dispatching starts
    start_at = iso_now()
    ids: list[str] = []
    for chunk in range(0, TASKS, 50):
        ids += await asyncio.gather(
            *(
                add_probe_task(dispatcher, f"acct-{i:04d}", interval=3600, start_at=start_at)
                for i in range(chunk, min(chunk + 50, TASKS))
            )
        )
    slots = {t: s.view.task(t).next_ms for t in ids}
    due = s.keys.due()
    assert s.redis.zcount(due, "-inf", now_ms()) == TASKS

    # B is held still (SIGSTOP) for the instant of A's first claim, so the claim is A's.
    beat_b.signal_group(signal.SIGSTOP)
    try:
        await dispatcher.start()
        wait_until(
            lambda: s.redis.zcount(due, "-inf", now_ms()) < TASKS,
            timeout_s=15,
            interval_s=0.002,
            message="beat A's first claim",
        )
        beat_a.kill()
        kill_ms = now_ms()
        claimed_by_a = TASKS - s.redis.zcount(due, "-inf", kill_ms)
    finally:
        beat_b.signal_group(signal.SIGCONT)

    wait_until(
        lambda: sum(1 for t in ids if s.view.task(t).round_num >= 1) == TASKS,
        timeout_s=120,
        interval_s=1.0,
        message="a round of every task",
    )
    # No slot runs a second time later either: give stale messages time to surface.
    wait_until(
        lambda: s.redis.llen("celery") == 0 and s.redis.hlen("unacked") == 0,
        timeout_s=30,
        interval_s=0.5,
        message="the queue to drain (stale messages included)",
    )

    starts = s.view.probe_starts()
    rounds = s.view.probe_rounds()
    assert duplicate_slots(starts) == []
    assert Counter(x["task_id"] for x in starts) == Counter(dict.fromkeys(ids, 1))
    assert {x["task_id"]: x["scheduled_ms"] for x in starts} == slots
    assert len(rounds) == TASKS
    assert {s.view.task(t).round_num for t in ids} == {1}
    assert await check_consistency(dispatcher.redis, dispatcher.keys) == []
    first_ms, last_ms = min(x["start_ms"] for x in starts), max(x["start_ms"] for x in starts)
    redispatched = sum(1 for x in starts if x["start_ms"] >= kill_ms + DISPATCH_TIMEOUT_S * 1000)
    print(
        f"\nclaimed by A before its kill: {claimed_by_a}; A logged a dispatch: "
        f"{'dispatched' in beat_a.log()}; rounds started after the dispatch timeout: "
        f"{redispatched}; rounds started {first_ms - kill_ms}..{last_ms - kill_ms} ms after it"
    )
