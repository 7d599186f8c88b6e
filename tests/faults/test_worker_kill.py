"""Workers SIGKILLed mid-round, again and again: every killed round is lost, then run again."""

from __future__ import annotations

import json

import pytest

from taskdispatch.service.consistency import check_consistency
from tests.support.probes import add_probe_task, now_ms, overlaps, unfinished, wait_until

pytestmark = pytest.mark.e2e

TASKS = 20
KILLS = 5
CONCURRENCY = 4


def _busy_worker(s, dead_pids: set[int]) -> tuple[int, list[dict]] | None:
    """A live worker in the middle of at least one probe round, with those rounds."""
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    fresh = [
        x
        for x in unfinished(starts, rounds)
        if x["pid"] not in dead_pids and now_ms() - x["start_ms"] < 600  # rounds last ~1 s
    ]
    for x in fresh:
        for i, worker in enumerate(s.workers):
            if worker.alive() and any(p.pid == x["pid"] for p in worker.group()):
                pids = {p.pid for p in worker.group()}
                return i, [y for y in fresh if y["pid"] in pids]
    return None


async def test_worker_sigkill_repeated_mid_round_rounds_lost_rerun_never_overlap(stack, dispatcher):
    """5 kills of a busy worker, 20 accounts: each killed round lost + rerun, no overlap."""
    # A cut round runs again at once, so its rerun is among the fresh rounds the next kill
    # looks for: one account's round can be cut at every kill (run 9 of a repeat cut 3
    # accounts' rounds 3 times in a row, and they went to error). The product's rule (a task
    # whose rounds are lost max_consecutive_failures times in a row goes to error, unit spec
    # test_recover_lost_at_the_failure_limit_puts_the_task_in_error) must not end the test's
    # accounts, so the limit is above the number of kills.
    s = stack(
        workers=2,
        beats=1,
        concurrency=CONCURRENCY,
        env={"TASKDISPATCH_MAX_CONSECUTIVE_FAILURES": str(KILLS + 1)},
    )
    ids = [
        await add_probe_task(dispatcher, f"acct-{i:02d}", sleep_s=1.0, interval=1 + i % 2)
        for i in range(TASKS)
    ]
    killed_at: dict[int, int] = {}  # pid -> when its process group was dead
    killed_rounds: list[tuple[dict, int, str]] = []  # (probe start, kill ms, worker node)

    for _ in range(KILLS):
        victim, in_flight = wait_until(
            lambda: _busy_worker(s, set(killed_at)),
            timeout_s=20,
            interval_s=0.05,
            message="a worker in the middle of a round",
        )
        pids = {p.pid for p in s.workers[victim].group()}
        kill_ms = s.kill_worker(victim)
        killed_at.update(dict.fromkeys(pids, kill_ms))
        # A round that wrote its end just before the kill finished; the rest were cut off.
        ended = {(x["task_id"], x["start_ms"]) for x in s.view.probe_rounds()}
        cut = [x for x in in_flight if (x["task_id"], x["start_ms"]) not in ended]
        killed_rounds += [(x, kill_ms, s.node(victim)) for x in cut]
        s.add_worker(concurrency=CONCURRENCY)
        # Pace the kills by the recovery itself: every round just cut off is declared lost.
        wait_until(
            lambda cut=cut: all(
                any(
                    r["scheduled_ms"] == x["scheduled_ms"]
                    for r in s.view.runs(x["task_id"], "lost")
                )
                for x in cut
            ),
            timeout_s=20,
            interval_s=0.25,
            message="the rounds cut off by the kill to be recorded lost",
        )

    last_kill_ms = max(killed_at.values())
    wait_until(
        lambda: all(any(r["started_ms"] > last_kill_ms for r in s.view.runs(t, "ok")) for t in ids),
        timeout_s=30,
        interval_s=0.5,
        message="an ok round of every task after the last kill",
    )
    await dispatcher.stop()
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=20, message="quiescence")

    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    assert killed_rounds, "no round was in progress at any kill"
    for start, kill_ms, node in killed_rounds:
        lost = [
            r
            for r in s.view.runs(start["task_id"], "lost")
            if r["scheduled_ms"] == start["scheduled_ms"]
        ]
        assert len(lost) == 1, (start, s.view.runs(start["task_id"]))
        assert lost[0]["worker"] == node and lost[0]["reason"] == "lease_expired"
        rerun = [r for r in s.view.runs(start["task_id"], "ok") if r["started_ms"] > kill_ms]
        assert rerun, f"the round killed at {kill_ms} was never run again: {start}"
    # Every lost record comes from a killed worker: a live worker's lease never lapsed.
    killed_nodes = {node for _, _, node in killed_rounds} | {
        s.node(i) for i, w in enumerate(s.workers) if not w.alive()
    }
    all_lost = [r for t in ids for r in s.view.runs(t, "lost")]
    assert {r["worker"] for r in all_lost} <= killed_nodes, json.dumps(all_lost)
    # Only the killed processes left rounds unfinished; no account ever ran two at once.
    assert {x["pid"] for x in unfinished(starts, rounds)} <= set(killed_at)
    assert overlaps(starts, rounds, open_end_ms=killed_at) == []
    tasks = [s.view.task(t) for t in ids]
    assert {t.status for t in tasks} == {"pending"}
    assert s.view.running_ids() == []
    assert await check_consistency(dispatcher.redis, dispatcher.keys) == []
    per_task = sorted(t.round_num for t in tasks)
    print(
        f"\nkills: {KILLS}; rounds cut off: {len(killed_rounds)}; lost records: {len(all_lost)}; "
        f"ok rounds: {len(rounds)}; rounds per task min/max: {per_task[0]}/{per_task[-1]}"
    )
