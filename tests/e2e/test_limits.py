"""Limits across accounts with real workers and beats: never exceeded, used fully, fair,
and a worker SIGKILL frees its places through recovery."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from tests.support.probes import (
    ProbeRound,
    add_probe_task,
    now_ms,
    unfinished,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _records(s) -> tuple[list[ProbeRound], list[ProbeRound], int]:
    """The probe's start and end records, and the instant by which those ends were read: a
    round that started but has no end yet was running until then (at least)."""
    starts = s.view.probe_starts()
    rounds = s.view.probe_rounds()
    return starts, rounds, now_ms()


def _concurrency(
    starts: list[ProbeRound],
    rounds: list[ProbeRound],
    *,
    read_ms: int,
    killed_ms: dict[int, int] | None = None,
) -> list[tuple[int, int]]:
    """(instant, rounds running from then on) at every change, from the handler's records;
    a round with no end lasts until its process was killed (`killed_ms[pid]`), or, still
    running, until `read_ms`."""
    killed = killed_ms or {}
    intervals = [(x["start_ms"], x["end_ms"]) for x in rounds]
    intervals += [
        (x["start_ms"], killed.get(x["pid"], read_ms)) for x in unfinished(starts, rounds)
    ]
    # An end at the same instant as a start counts first: the place was freed, then taken.
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    out, running = [], 0
    for instant, delta in events:
        running += delta
        out.append((instant, running))
    return out


def _peak(profile: list[tuple[int, int]]) -> int:
    return max((n for _, n in profile), default=0)


def _mean(profile: list[tuple[int, int]], *, start_ms: int, end_ms: int) -> float:
    """Time-weighted mean number of rounds running in [start_ms, end_ms)."""
    total = 0
    for (t0, n), (t1, _) in itertools.pairwise([*profile, (end_ms, 0)]):
        lo, hi = max(t0, start_ms), min(t1, end_ms)
        if hi > lo:
            total += n * (hi - lo)
    return total / (end_ms - start_ms)


async def test_max_concurrent_three_never_exceeded_and_used_fully_by_two_workers(stack, dispatcher):
    """20 tasks under max_concurrent 3, 2 workers x 4 processes: never more than 3 rounds
    at once, by the handler's own records, and 3 most of the time while rounds wait."""
    s = stack(workers=2, beats=1, concurrency=4)
    await dispatcher.put_limit("team-a", match={"tag": "team:a"}, max_concurrent=3)
    ids = [
        await add_probe_task(dispatcher, f"acct-{i:02d}", sleep_s=2.0, tags=["team:a"])
        for i in range(20)
    ]
    began = now_ms()
    wait_until(
        lambda: len(s.view.probe_rounds()) >= 30,
        timeout_s=60,
        interval_s=0.5,
        message="30 rounds under the limit",
    )
    view = await dispatcher.get_limit("team-a")
    assert view.waiting > 0, "no round waited: the test did not load the limit"

    starts, rounds, read_ms = _records(s)
    profile = _concurrency(starts, rounds, read_ms=read_ms)
    assert _peak(profile) == 3
    # From the first start to the 30th end, the three places were held ~all the time: each
    # hand-over (release, wake, claim, message, admission) leaves a place briefly idle.
    first = min(x["start_ms"] for x in starts)
    thirtieth = sorted(x["end_ms"] for x in rounds)[29]
    mean = _mean(profile, start_ms=first, end_ms=thirtieth)
    assert mean >= 2.4, f"mean rounds running {mean:.2f} of 3"
    waits = [r for t in ids for r in s.view.runs(t) if r["outcome"] != "ok"]
    assert waits == [], f"a waiting round was recorded as something other than ok: {waits}"
    print(
        f"\n20 tasks, max_concurrent 3: peak {_peak(profile)}, mean {mean:.2f} over "
        f"{(thirtieth - first) / 1000:.1f} s, first start {(first - began) / 1000:.2f} s "
        f"after creation"
    )


async def test_worker_sigkill_mid_round_frees_its_places_and_limit_never_exceeded(
    stack, dispatcher
):
    """A worker killed mid-round: its places free when recovery declares its rounds lost,
    the limit is never exceeded, and the waiting rounds go on."""
    s = stack(workers=2, beats=1, concurrency=4)
    await dispatcher.put_limit("team-a", match={"tag": "team:a"}, max_concurrent=3)
    for i in range(20):
        await add_probe_task(dispatcher, f"acct-{i:02d}", sleep_s=2.0, tags=["team:a"])

    def victim() -> int | None:
        running = unfinished(s.view.probe_starts(), s.view.probe_rounds())
        for i, worker in enumerate(s.workers):
            pids = {p.pid for p in worker.group()}
            if worker.alive() and any(x["pid"] in pids for x in running):
                return i + 1  # truthy for wait_until
        return None

    index = wait_until(victim, timeout_s=30, interval_s=0.05, message="a busy worker") - 1
    pids = {p.pid for p in s.workers[index].group()}
    cut = [x for x in unfinished(s.view.probe_starts(), s.view.probe_rounds()) if x["pid"] in pids]
    kill_ms = s.kill_worker(index)
    wait_until(
        lambda: all(
            any(r["scheduled_ms"] == x["scheduled_ms"] for r in s.view.runs(x["task_id"], "lost"))
            for x in cut
        ),
        timeout_s=30,
        interval_s=0.25,
        message="the rounds cut off by the kill to be recorded lost",
    )
    wait_until(
        lambda: sum(x["start_ms"] > kill_ms for x in s.view.probe_rounds()) >= 9,
        timeout_s=40,
        interval_s=0.5,
        message="nine rounds started after the kill",
    )
    await dispatcher.stop()
    wait_until(
        lambda: s.view.running_ids() == [], timeout_s=20, message="no round running any more"
    )

    starts, rounds, read_ms = _records(s)
    assert {x["pid"] for x in unfinished(starts, rounds)} <= pids
    profile = _concurrency(starts, rounds, read_ms=read_ms, killed_ms=dict.fromkeys(pids, kill_ms))
    assert _peak(profile) <= 3
    places = s.view.r.zrange(s.view.keys.limit_places("team-a"), 0, -1)
    assert places == [], "a place outlived its round"
    print(f"\nkilled mid-round: {len(cut)} round(s) lost; peak {_peak(profile)} of 3 throughout")


async def test_max_starts_five_per_ten_seconds_no_window_holds_more(stack, dispatcher):
    """max_starts 5 per 10 s over 30 s: no 10 s window holds more than 5 starts (the
    scheduler's start instants, which the limit counts)."""
    s = stack(workers=1, beats=1, concurrency=4)
    await dispatcher.put_limit("paced", match={"sys_type": "mac_intel"}, max_starts=5, per_s=10)
    ids = [await add_probe_task(dispatcher, f"acct-{i}") for i in range(6)]
    began = now_ms()
    wait_until(lambda: now_ms() - began > 30_000, timeout_s=40, interval_s=1.0, message="30 s")

    started = sorted(r["started_ms"] for t in ids for r in s.view.runs(t, "ok"))
    assert len(started) >= 14, f"only {len(started)} starts in 30 s"
    busiest = max(sum(1 for u in started if t <= u < t + 10_000) for t in started)
    assert busiest == 5
    reasons = {r["waiting_reason"]["code"] for r in await _reasons(dispatcher, ids) if r}
    print(f"\n{len(started)} starts in 30 s; busiest 10 s window: {busiest}; reasons {reasons}")


async def _reasons(dispatcher, ids):
    tasks = [await dispatcher.get_task(t) for t in ids]
    return [{"waiting_reason": r} if r else None for r in await dispatcher.waiting_reasons(tasks)]


async def test_twelve_accounts_share_three_places_fairly(stack, dispatcher):
    """12 accounts at a 1 s interval, rounds of 1 s, max_concurrent 3: over 60 s no account
    runs more than 1.5x the rounds of the account with the fewest."""
    s = stack(workers=2, beats=1, concurrency=3)
    await dispatcher.put_limit("fleet", max_concurrent=3)
    for i in range(12):
        await add_probe_task(dispatcher, f"acct-{i:02d}", sleep_s=1.0)
    began = now_ms()
    wait_until(lambda: now_ms() - began > 60_000, timeout_s=70, interval_s=1.0, message="60 s")

    per_account = Counter(
        x["account_id"] for x in s.view.probe_starts() if x["start_ms"] < began + 60_000
    )
    counts = sorted(per_account[f"acct-{i:02d}"] for i in range(12))
    assert counts[0] > 0
    assert counts[-1] <= 1.5 * counts[0], counts
    print(f"\nrounds per account in 60 s (sorted): {counts}")


async def test_task_under_two_limits_starts_only_when_both_have_room(stack, dispatcher):
    """A task under a team limit and a device limit (1 place each) never runs while a
    round of either other task (one per limit) runs."""
    s = stack(workers=1, beats=1, concurrency=4)
    await dispatcher.put_limit("team", match={"tag": "team:a"}, max_concurrent=1)
    await dispatcher.put_limit("device", match={"tag": "device:1"}, max_concurrent=1)
    both = await add_probe_task(dispatcher, "acct-both", sleep_s=0.5, tags=["team:a", "device:1"])
    team = await add_probe_task(dispatcher, "acct-team", sleep_s=1.5, tags=["team:a"])
    device = await add_probe_task(dispatcher, "acct-device", sleep_s=1.5, tags=["device:1"])
    wait_until(
        lambda: all(len(s.view.runs(t, "ok")) >= 3 for t in (both, team, device)),
        timeout_s=60,
        interval_s=0.5,
        message="three rounds of each task",
    )
    rounds = s.view.probe_rounds()
    mine = [x for x in rounds if x["task_id"] == both]
    others = [x for x in rounds if x["task_id"] != both]
    clashes = [
        (a, b)
        for a in mine
        for b in others
        if a["start_ms"] < b["end_ms"] and b["start_ms"] < a["end_ms"]
    ]
    assert clashes == []
    assert len(mine) >= 3


async def test_deleting_a_full_limit_starts_its_waiting_rounds_at_once(stack, dispatcher):
    """max_concurrent 1 with four 8 s rounds due: the three waiting start as soon as the limit
    is deleted, long before the running round ends."""
    s = stack(workers=1, beats=1, concurrency=4)
    await dispatcher.put_limit("one", match={"tag": "slow"}, max_concurrent=1)
    ids = [
        await add_probe_task(dispatcher, f"acct-{i}", sleep_s=8.0, interval=3600, tags=["slow"])
        for i in range(4)
    ]
    for task_id in ids:
        await dispatcher.run_now(task_id)
    wait_until(
        lambda: (
            len(s.view.probe_starts()) == 1
            and s.view.r.zcard(s.view.keys.limit_waiters("one")) == 3
        ),
        timeout_s=20,
        interval_s=0.1,
        message="one round running and three waiting",
    )
    # A worker counts as alive from its first consume heartbeat (watchdog.py), not at "ready".
    wait_until(
        lambda: s.view.r.zcount(s.view.keys.workers(), now_ms() - 5000, "+inf") > 0,
        timeout_s=10,
        message="the worker's consume heartbeat",
    )
    reasons = await dispatcher.waiting_reasons([await dispatcher.get_task(t) for t in ids])
    waiting = [r for r in reasons if r and r["code"] == "limit_full"]
    assert len(waiting) == 3 and waiting[0]["limit"] == "one" and waiting[0]["in_use"] == 1
    [first] = s.view.probe_starts()
    await dispatcher.delete_limit("one")
    deleted_ms = now_ms()
    wait_until(
        lambda: len(s.view.probe_starts()) == 4, timeout_s=6, interval_s=0.1, message="all started"
    )
    latest = max(x["start_ms"] for x in s.view.probe_starts())
    assert latest < first["start_ms"] + 8000, "a waiting round started only after the first ended"
    print(f"\nwaiting rounds started {(latest - deleted_ms) / 1000:.2f} s after the delete")
