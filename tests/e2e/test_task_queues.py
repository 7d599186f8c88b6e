"""A task's own queue with real workers: one worker per device queue (dev-a, dev-b), rounds
judged by the probe handler's own record of the Celery node that ran them."""

from __future__ import annotations

from typing import Any

import pytest

from taskdispatch.domain.bodies import TaskChange
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.probes import (
    add_probe_task,
    duplicate_slots,
    holds_for,
    overlaps,
    unfinished,
    wait_until,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _two_devices(stack: Any) -> Stack:
    """Worker w1 consumes dev-a only, w2 dev-b only; nobody consumes the default queue."""
    s: Stack = stack(workers=1, beats=1, concurrency=2, queues="dev-a")
    s.add_worker(concurrency=2, queues="dev-b")
    return s


def _starts_of(s: Stack, task_id: str) -> list[dict[str, Any]]:
    return [x for x in s.view.probe_starts() if x["task_id"] == task_id]


async def test_pinned_tasks_every_round_runs_on_its_queues_worker(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """Two tasks on dev-a and two on dev-b: every round of each ran on the worker of its
    queue, none overlapped, no slot ran twice."""
    s = _two_devices(stack)
    node_of = {"dev-a": s.node(0), "dev-b": s.node(1)}
    queue_of = {}
    for n, queue in enumerate(("dev-a", "dev-a", "dev-b", "dev-b")):
        task_id = await add_probe_task(dispatcher, f"acct-{n}", sleep_s=0.2, queue=queue)
        queue_of[task_id] = queue
    wait_until(
        lambda: all(len(s.view.runs(t, "ok")) >= 3 for t in queue_of),
        timeout_s=30,
        message="three ok rounds of every task",
    )
    await dispatcher.stop()
    wait_until(lambda: all(s.view.is_idle(t) for t in queue_of), timeout_s=20, message="quiet")
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    ran_on = {(x["task_id"], x["node"]) for x in starts}
    assert ran_on == {(t, node_of[q]) for t, q in queue_of.items()}
    assert all(r["worker"] == node_of[q] for t, q in queue_of.items() for r in s.view.runs(t))
    assert overlaps(starts, rounds, open_end_ms={}) == []
    assert duplicate_slots(starts) == []


async def test_task_on_a_queue_without_worker_waits_and_runs_once_moved(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """A task on dev-c, which no worker consumes, waits with no_worker_for_queue naming
    dev-c and counts in the backlog; moved to dev-a, its waiting slot runs there, once."""
    s = _two_devices(stack)
    task_id = await add_probe_task(dispatcher, "acct-stranded", queue="dev-c")
    wait_until(
        lambda: s.redis.llen("dev-c") >= 1, timeout_s=15, message="a round published to dev-c"
    )
    status = await dispatcher.status()
    assert status.unconsumed_queues.get("dev-c", 0) >= 1
    assert status.due_backlog >= status.unconsumed_queues["dev-c"]
    why = (await dispatcher.read_one(task_id))[1]
    assert why == {"code": "no_worker_for_queue", "queue": "dev-c"}
    holds_for(lambda: not _starts_of(s, task_id), duration_s=3, message="nothing runs it")

    waiting = s.view.task(task_id).next_ms
    await dispatcher.update_task(task_id, TaskChange(queue="dev-a"))
    first = wait_until(lambda: _starts_of(s, task_id), timeout_s=15, message="a round on dev-a")
    assert (first[0]["node"], first[0]["scheduled_ms"]) == (s.node(0), waiting)
    why = (await dispatcher.read_one(task_id))[1]
    assert why is None or why["code"] != "no_worker_for_queue"


async def test_queue_move_under_load_moves_later_rounds_without_overlap_or_duplicate(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """Six 1 s tasks of 0.5 s rounds on dev-a (more than its two pool processes keep up
    with, so messages wait on dev-a), all moved to dev-b at once: every round after the one
    in progress at the move ran on dev-b's worker, every earlier one on dev-a's; no round
    overlapped another of its account, no slot ran twice, and nothing was left stuck."""
    s = _two_devices(stack)
    ids = [
        await add_probe_task(dispatcher, f"acct-load-{n}", sleep_s=0.5, queue="dev-a")
        for n in range(6)
    ]
    wait_until(
        lambda: all(len(_starts_of(s, t)) >= 2 for t in ids),
        timeout_s=30,
        message="two rounds of every task on dev-a",
    )
    waiting_at_move = s.redis.llen("dev-a")
    moved_from: dict[str, int] = {}
    for task_id in ids:
        task = await dispatcher.update_task(task_id, TaskChange(queue="dev-b"))
        # The round in progress at the move (round_num + 1) may end where it is.
        moved_from[task_id] = task.round_num + (2 if task.status == "running" else 1)

    def moved_rounds(task_id: str) -> list[dict[str, Any]]:
        return [x for x in _starts_of(s, task_id) if x["round_num"] >= moved_from[task_id]]

    wait_until(
        lambda: all(len(moved_rounds(t)) >= 3 for t in ids),
        timeout_s=40,
        message="three rounds of every task after the move",
    )
    await dispatcher.stop()
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=20, message="quiet")
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    assert unfinished(starts, rounds) == []
    for task_id in ids:
        for x in _starts_of(s, task_id):
            expected = s.node(1) if x["round_num"] >= moved_from[task_id] else s.node(0)
            assert x["node"] == expected, (x, moved_from[task_id])
    assert overlaps(starts, rounds, open_end_ms={}) == []
    assert duplicate_slots(starts) == []
    # The messages left on dev-a were consumed there and dropped as stale.
    wait_until(lambda: s.redis.llen("dev-a") == 0, timeout_s=10, message="dev-a drained")
    assert all(s.view.task(t).status == "pending" for t in ids)
    print(
        f"\nmessages waiting on dev-a at the move: {waiting_at_move}; rounds: {len(rounds)}; "
        f"moved from round (per task): {sorted(moved_from.values())}"
    )
