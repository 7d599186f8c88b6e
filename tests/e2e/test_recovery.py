"""A round whose worker is killed is recorded lost and the account runs again."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.engine.beat import claim_tick
from tests.support.probes import add_probe_task, now_ms, overlaps, unfinished, wait_until

pytestmark = pytest.mark.e2e


async def test_worker_killed_mid_round_round_is_lost_and_account_runs_again(stack, dispatcher):
    """SIGKILL mid-round: `lost` record, a later ok round, no overlap, nothing left running."""
    s = stack(workers=2, beats=2, concurrency=2, env={"TASKDISPATCH_LEASE_TTL_S": "3"})
    task_id = await add_probe_task(dispatcher, "acct-kill", sleep_s=3.0)

    first = wait_until(s.view.probe_starts, timeout_s=15, message="a round to start")[0]
    victim = s.worker_running_pid(first["pid"])
    assert not s.view.probe_rounds(), "the round finished before the kill"
    kill_ms = s.kill_worker(victim)

    lost = wait_until(lambda: s.view.runs(task_id, "lost"), timeout_s=20, message="the lost record")
    assert len(lost) == 1
    assert lost[0]["reason"] == "lease_expired"
    assert lost[0]["worker"] == s.node(victim)
    assert lost[0]["scheduled_ms"] == first["scheduled_ms"]
    assert lost[0]["started_ms"] <= first["start_ms"] <= kill_ms
    after = wait_until(
        lambda: [x for x in s.view.runs(task_id, "ok") if x["started_ms"] > kill_ms],
        timeout_s=20,
        message="an ok round after the kill",
    )
    print(
        f"\nkill -> lost: {lost[0]['finished_ms'] - kill_ms} ms; kill -> rerun start: "
        f"{after[0]['started_ms'] - kill_ms} ms"
    )
    assert after[0]["worker"] != s.node(victim)

    # Quiesce: no new dispatch, the round in progress ends, nothing stays running.
    await dispatcher.stop()
    wait_until(lambda: s.view.is_idle(task_id), timeout_s=15, message="the task to go idle")
    task = s.view.task(task_id)
    assert task.status == "pending" and s.view.running_ids() == []
    assert not s.redis.exists(s.keys.lock("acct-kill"))
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    assert [x["pid"] for x in unfinished(starts, rounds)] == [first["pid"]]
    assert overlaps(starts, rounds, open_end_ms={first["pid"]: kill_ms}) == []


async def test_claim_of_beat_that_died_before_publishing_is_dispatched_again(stack, dispatcher):
    """A slot claimed by a beat that died before publishing runs once the dispatch timeout ends."""
    s = stack(workers=1, beats=0)
    task_id = await add_probe_task(dispatcher, "acct-orphan-claim", start_at=_iso_now())
    wait_until(lambda: s.view.task(task_id).next_ms <= now_ms(), timeout_s=5, message="due")

    # Exactly what a beat's tick does before it publishes; then it "dies".
    claim_ms = now_ms()
    tick = claim_tick(
        s.redis, s.keys, now_ms=claim_ms, beat_id="dead-beat", batch=10, dispatch_timeout_ms=5000
    )
    assert [c.task_id for c in tick.claimed] == [task_id], tick
    s.redis.zrem(s.keys.beats(), "dead-beat")

    stack(workers=0, beats=1)  # a surviving beat
    ok = wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=20, message="the round")
    waited_ms = ok[0]["started_ms"] - claim_ms
    print(f"\nclaim -> round start: {waited_ms} ms (dispatch timeout 5000 ms)")
    assert waited_ms >= 5000, "the orphaned claim was re-dispatched before its timeout"
    slot_ms = tick.claimed[0].slot_ms
    assert ok[0]["scheduled_ms"] == slot_ms
    assert [x["scheduled_ms"] for x in s.view.probe_starts()].count(slot_ms) == 1


def _iso_now() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).isoformat(timespec="milliseconds")
