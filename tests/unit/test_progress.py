"""Specification of taskdispatch.store.progress: a round's live progress, coalesced and guarded.

Real Redis (the session's private server): the writes are Lua scripts. The flusher's clock is
injected and its `step` called directly, so no test waits for the background thread except
the one about the thread itself.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from taskdispatch.engine.handlers import RunContext
from taskdispatch.settings import Settings
from taskdispatch.store.connections import lease_client
from taskdispatch.store.keys import Keys
from taskdispatch.store.progress import (
    EVENT,
    MESSAGE_MAX,
    Flusher,
    ProgressReporter,
    RoundProgress,
    current_progress,
    queue_progress_clear,
)
from tests.support.probes import wait_until

KEYS = Keys("tdprog:")
TASK_ID = "task-1"
RUN_ID = "run-1"
TTL_MS = 30_000
NOW_MS = 1_767_839_400_000


class Clock:
    """The flusher's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


MakeReporter = Callable[..., ProgressReporter]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # The task's round RUN_ID is in progress.
    client.hset(KEYS.task(TASK_ID), mapping={"task_id": TASK_ID, "run_id": RUN_ID})
    yield client
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flusher(clock: Clock) -> Flusher:
    return Flusher(clock_s=clock, background=False)


@pytest.fixture
def make_reporter(raw: redis.Redis, flusher: Flusher) -> MakeReporter:
    def factory(run_id: str = RUN_ID, client: redis.Redis = raw) -> ProgressReporter:
        return ProgressReporter(
            client,
            KEYS,
            task_id=TASK_ID,
            account_id="acct-1",
            run_id=run_id,
            round_num=3,
            worker="celery@host-1",
            ttl_ms=TTL_MS,
            clock_ms=lambda: NOW_MS,
            flusher=flusher,
        )

    return factory


def stored(raw: redis.Redis) -> RoundProgress | None:
    value = raw.get(KEYS.progress(TASK_ID))
    return None if value is None else RoundProgress.from_json(value)


def events(raw: redis.Redis) -> list[dict[str, Any]]:
    return [
        json.loads(fields["data"])
        for _, fields in raw.xrange(KEYS.events())
        if fields["type"] == EVENT
    ]


def test_reporter_reports_between_steps_writes_only_the_latest(raw, make_reporter, flusher):
    """Three reports before a step are one write, of the last value, with one event."""
    reporter = make_reporter()
    for n in (1, 2, 3):
        reporter.report(f"step {n}", n / 3)

    flusher.step()

    assert stored(raw) == RoundProgress(RUN_ID, "step 3", 1.0, NOW_MS)
    assert events(raw) == [
        {
            "task_id": TASK_ID,
            "account_id": "acct-1",
            "round_num": 3,
            "worker": "celery@host-1",
            "progress": "step 3",
            "fraction": 1.0,
            "progress_ms": NOW_MS,
        }
    ]


def test_flusher_step_within_interval_writes_nothing_new(raw, make_reporter, flusher, clock):
    """A report less than a second after the round's last write waits for the second."""
    reporter = make_reporter()
    reporter.report("first")
    flusher.step()
    reporter.report("second")

    clock.now_s += 0.9
    wait_s = flusher.step()

    assert stored(raw).message == "first"
    assert wait_s == pytest.approx(0.1)


def test_flusher_step_after_interval_writes_the_pending_value(raw, make_reporter, flusher, clock):
    """Once the interval is over, the latest report is written."""
    reporter = make_reporter()
    reporter.report("first")
    flusher.step()
    reporter.report("second")

    clock.now_s += 1.0
    flusher.step()

    assert stored(raw).message == "second"
    assert [e["progress"] for e in events(raw)] == ["first", "second"]


def test_flusher_reports_many_times_a_second_writes_once_a_second(
    raw, make_reporter, flusher, clock
):
    """Ten reports a second for five seconds, stepping at each: at most six writes."""
    reporter = make_reporter()
    for n in range(50):
        reporter.report(f"step {n}", n / 50)
        flusher.step()
        clock.now_s += 0.1

    assert len(events(raw)) <= 6
    clock.now_s += 1.0
    flusher.step()
    assert stored(raw).message == "step 49"


def test_flusher_step_nothing_reported_waits_without_timeout(flusher):
    """A flusher with no round reporting sleeps until one reports."""
    assert flusher.step() is None


def test_flusher_step_unchanged_round_renews_its_key_without_event(
    raw, make_reporter, flusher, clock
):
    """A round that reports nothing new keeps its key alive, and tells nobody."""
    reporter = make_reporter()
    reporter.report("working")
    flusher.step()
    raw.pexpire(KEYS.progress(TASK_ID), 1000)  # as if most of its TTL had passed

    clock.now_s += TTL_MS / 1000 / 3
    flusher.step()

    assert raw.pttl(KEYS.progress(TASK_ID)) > TTL_MS - 5000
    assert len(events(raw)) == 1


def test_flusher_step_round_no_longer_current_writes_nothing(raw, make_reporter, flusher):
    """A report of a round the task no longer runs (ended, lost) is not written."""
    reporter = make_reporter(run_id="run-0")
    reporter.report("late")

    flusher.step()

    assert stored(raw) is None
    assert events(raw) == []
    assert reporter.closed


def test_flusher_step_round_no_longer_current_forgets_the_reporter(make_reporter, flusher):
    """After its write was refused, the flusher has nothing left to do for the round."""
    reporter = make_reporter(run_id="run-0")
    reporter.report("late")
    flusher.step()

    reporter.report("later")

    assert not reporter.pending
    assert flusher.step() is None


def test_flusher_step_redis_unreachable_keeps_the_value_for_the_next_step(
    make_reporter, flusher, clock, caplog
):
    """A failed write raises nothing and is tried again, with the latest value, a second later."""
    # The worker's fail-fast client, to a port nothing listens on.
    dead = lease_client(Settings(redis_url="redis://127.0.0.1:1/0", lease_ttl_s=1))
    reporter = make_reporter(client=dead)
    reporter.report("working")

    with caplog.at_level(logging.WARNING, logger="taskdispatch.store.progress"):
        wait_s = flusher.step()

    assert reporter.pending
    assert wait_s == pytest.approx(1.0)
    assert "writing the progress" in caplog.text


def test_queue_progress_clear_deletes_the_key(raw, make_reporter, flusher):
    """The transaction that ends the round deletes its progress."""
    make_reporter().report("working")
    flusher.step()

    with raw.pipeline() as pipe:
        queue_progress_clear(pipe, KEYS, TASK_ID, flusher=flusher)
        pipe.execute()

    assert stored(raw) is None


def test_queue_progress_clear_closes_the_round_s_reporter(raw, make_reporter, flusher, clock):
    """Once the round's end is queued, nothing of the round is written again."""
    reporter = make_reporter()
    reporter.report("working")
    flusher.step()
    reporter.report("pending at the end")

    with raw.pipeline() as pipe:
        queue_progress_clear(pipe, KEYS, TASK_ID, flusher=flusher)
        pipe.execute()
    reporter.report("after the end")
    clock.now_s += 1.0
    flusher.step()

    assert reporter.closed
    assert stored(raw) is None
    assert [e["progress"] for e in events(raw)] == ["working"]


def test_flusher_write_taken_before_the_end_landing_after_it_writes_nothing(
    raw, make_reporter, flusher
):
    """A write in flight when the round ended (its run_id cleared) cannot bring it back."""
    reporter = make_reporter()
    reporter.report("in flight")
    value = reporter.take()
    assert value is not None
    raw.hdel(KEYS.task(TASK_ID), "run_id")  # the round's final write lands first

    with raw.pipeline(transaction=False) as pipe:
        reporter.queue_write(pipe, value, tell=True)
        [written] = pipe.execute()

    assert written == 0
    assert stored(raw) is None
    assert events(raw) == []


def test_reporter_long_message_is_cut_to_message_max(raw, make_reporter, flusher):
    """A message longer than MESSAGE_MAX characters is cut, ending with an ellipsis."""
    make_reporter().report("步" * (MESSAGE_MAX + 50))
    flusher.step()

    message = stored(raw).message
    assert len(message) == MESSAGE_MAX
    assert message.endswith("…")


def test_reporter_message_not_text_is_made_text(raw, make_reporter, flusher):
    """A message that is not a string is shown as its text."""
    make_reporter().report(42)
    flusher.step()

    assert stored(raw).message == "42"


@pytest.mark.parametrize(("given", "kept"), [(-0.5, 0.0), (1.5, 1.0), (0.25, 0.25), (1, 1.0)])
def test_reporter_fraction_is_kept_within_zero_and_one(raw, make_reporter, flusher, given, kept):
    """A fraction outside [0, 1] is clamped into it."""
    make_reporter().report("working", given)
    flusher.step()

    assert stored(raw).fraction == kept


@pytest.mark.parametrize("given", [math.nan, "half", True])
def test_reporter_fraction_not_a_number_is_left_out(raw, make_reporter, flusher, given):
    """A fraction that is not a number is dropped; the message still goes."""
    make_reporter().report("working", given)
    flusher.step()

    assert stored(raw) == RoundProgress(RUN_ID, "working", None, NOW_MS)


def test_reporter_bad_fractions_warn_once_per_round(make_reporter, caplog):
    """A handler reporting a bad fraction in a loop leaves one warning, not one per call."""
    reporter = make_reporter()
    with caplog.at_level(logging.WARNING, logger="taskdispatch.store.progress"):
        for _ in range(5):
            reporter.report("working", 7)

    assert len(caplog.records) == 1


def test_flusher_thread_writes_a_report_by_itself(raw, make_reporter):
    """The process's flusher thread starts with the first report and writes it."""
    reporter = make_reporter()
    reporter.flusher = Flusher()

    reporter.report("from the thread", 0.5)

    wait_until(lambda: stored(raw), timeout_s=5, message="the progress written")
    assert stored(raw).message == "from the thread"
    reporter.close()  # the thread then has nothing left to renew


def test_current_progress_of_the_round_in_progress_is_shown():
    """The stored value of the task's round in progress is returned."""
    value = RoundProgress(RUN_ID, "working", 0.5, NOW_MS)

    assert current_progress(RUN_ID, value.to_json()) == value


@pytest.mark.parametrize(
    ("run_id", "raw_value"),
    [
        ("run-2", RoundProgress(RUN_ID, "old", None, NOW_MS).to_json()),
        (None, RoundProgress(RUN_ID, "old", None, NOW_MS).to_json()),
        (RUN_ID, "not json"),
        (RUN_ID, None),
    ],
)
def test_current_progress_not_of_the_round_in_progress_is_none(run_id, raw_value):
    """An earlier round's value, no round running, or an unreadable value shows nothing."""
    assert current_progress(run_id, raw_value) is None


def test_run_context_progress_goes_to_its_reporter():
    """`ctx.progress` hands message and fraction to the round's reporter."""
    seen: list[tuple[object, object]] = []

    class Recorder:
        def report(self, message: object, fraction: object = None) -> None:
            seen.append((message, fraction))

    ctx = _context(reporter=Recorder())
    ctx.progress("step 1", fraction=0.1)
    ctx.progress("step 2")

    assert seen == [("step 1", 0.1), ("step 2", None)]


def test_run_context_progress_outside_a_worker_does_nothing():
    """A context built without a reporter (tests, a direct call) takes progress silently."""
    _context().progress("anything", fraction=3)


def _context(**extra: Any) -> RunContext:
    return RunContext(
        task_id=TASK_ID,
        account_id="acct-1",
        account_name="name",
        task_type="noop",
        sys_type="mac_intel",
        round_num=1,
        kwargs={},
        scheduled_for=datetime.now(UTC),
        **extra,
    )
