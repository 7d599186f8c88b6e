"""Messages that waited in a long queue past the dispatch timeout still run their slot, once."""

from __future__ import annotations

from taskdispatch.domain.models import Task
from taskdispatch.engine.beat import claim_tick
from taskdispatch.engine.rounds import RoundMessage
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task, now_ms
from tests.support.runner import runner_for

KEYS = Keys("td:")
TIMEOUT_MS = 5000


def _claim(client, at_ms: int) -> list[RoundMessage]:
    """What a beat's tick claims at `at_ms` (its messages, unpublished)."""
    tick = claim_tick(
        client, KEYS, now_ms=at_ms, beat_id="test-beat", batch=100, dispatch_timeout_ms=TIMEOUT_MS
    )
    return [RoundMessage(task_id=c.task_id, fence=c.fence, slot_ms=c.slot_ms) for c in tick.claimed]


async def _task(url: str, account: str) -> str:
    async with TaskDispatcher(Settings(redis_url=url, key_prefix="td:"), task_types={"probe"}) as d:
        task_id = await add_probe_task(d, account, interval=3600)
        await d.run_now(task_id)
        return task_id


async def test_message_of_reclaimed_slot_runs_it_and_the_newer_one_is_dropped(redis_url: str):
    """Claim, re-claim after the timeout, then the FIRST message arrives: it runs the slot once."""
    task_id = await _task(redis_url, "acct-backlog")
    runner, client = runner_for(redis_url, lambda ctx: "ran")
    claimed_at = now_ms()
    [first] = _claim(client, claimed_at)
    # The first message waits in a queue longer than the dispatch timeout: a beat re-claims.
    [second] = _claim(client, claimed_at + TIMEOUT_MS + 1)
    assert (first.slot_ms, second.fence) == (second.slot_ms, first.fence + 1)

    assert runner.run(first)["outcome"] == "ok"
    assert runner.run(second) == {"outcome": "dropped", "reason": "stale message"}
    raw = client.hgetall(KEYS.task(task_id))
    assert int(raw["round_num"]) == 1
    assert client.llen(KEYS.runs(task_id)) == 1


async def test_message_of_older_claim_for_another_slot_is_dropped(redis_url: str):
    """An old message whose slot is no longer the task's (paused, resumed: new slot) never runs."""
    task_id = await _task(redis_url, "acct-moved")
    runner, client = runner_for(redis_url, lambda ctx: "ran")
    [old] = _claim(client, now_ms())
    async with TaskDispatcher(
        Settings(redis_url=redis_url, key_prefix="td:"), task_types={"probe"}
    ) as d:
        await d.pause_task(task_id)
        await d.reorder_task(task_id, 60)  # the paused task's slot moves a minute on
        await d.resume_task(task_id)
    assert runner.run(old) == {"outcome": "dropped", "reason": "stale message"}
    assert Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id).round_num == 0


async def test_message_of_older_claim_for_a_future_slot_is_dropped(redis_url: str):
    """An old message never runs a slot before it is due."""
    task_id = await _task(redis_url, "acct-future")
    runner, client = runner_for(redis_url, lambda ctx: "ran")
    task = Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert task.next_ms is not None
    future = task.next_ms + 3_600_000
    client.hset(KEYS.task(task_id), mapping={"next_ms": future, "fence": task.fence + 1})
    old = RoundMessage(task_id=task_id, fence=task.fence, slot_ms=future)
    assert runner.run(old) == {"outcome": "dropped", "reason": "stale message"}


async def test_reclaims_of_one_slot_back_off_exponentially_then_reset_for_the_next_slot(
    redis_url: str,
):
    """Claims of one slot hold it 1x, 2x, 4x... the timeout (max 32x); a new slot starts at 1x."""
    task_id = await _task(redis_url, "acct-backoff")
    runner, client = runner_for(redis_url, lambda ctx: "ran")
    at = now_ms()
    holds = []
    for _ in range(7):
        [msg] = _claim(client, at)
        until = int(client.zscore(KEYS.due(), task_id))
        holds.append((until - at) // TIMEOUT_MS)
        at = until + 1
    assert holds == [1, 2, 4, 8, 16, 32, 32]

    assert runner.run(msg)["outcome"] == "ok"  # the round runs; the task has its next slot
    client.hset(KEYS.task(task_id), "next_ms", now_ms() - 1)  # and that slot is due now
    client.zadd(KEYS.due(), {task_id: now_ms() - 1})
    claim_ms = now_ms()
    _claim(client, claim_ms)
    assert int(client.zscore(KEYS.due(), task_id)) == claim_ms + TIMEOUT_MS
