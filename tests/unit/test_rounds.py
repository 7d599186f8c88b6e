"""Specification of taskdispatch.engine.rounds: one round as a worker runs it, in this process.

Real Redis (the session's private server). Tasks are created through the service and made
due with `run_now`; `runner_for` runs their rounds with the "probe" handler each test gives.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.models import CLAIMS_FIELD, TaskStatus
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.rounds import RoundRunner
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task, stored_task
from tests.support.runner import message_for, runner_for

KEYS = Keys("td:")
SHANGHAI = ZoneInfo("Asia/Shanghai")
INTERVAL_S = 3600
BACKOFF_S = 30.0
LOCK_RETRY_S = 7.0

Runner = Callable[..., tuple[RoundRunner, redis.Redis]]


@pytest.fixture
def runner(redis_url: str) -> Iterator[Runner]:
    """`runner(handler)`: runner_for over the session Redis, its clients closed at teardown."""
    made: list[tuple[RoundRunner, redis.Redis]] = []

    def factory(handler: Callable[[RunContext], Any]) -> tuple[RoundRunner, redis.Redis]:
        pair = runner_for(redis_url, handler, retry_backoff_s=BACKOFF_S, lock_retry_s=LOCK_RETRY_S)
        made.append(pair)
        return pair

    yield factory
    for round_runner, client in made:
        round_runner.lease_redis.close()
        client.close()


def _dispatcher(url: str) -> TaskDispatcher:
    return TaskDispatcher(Settings(redis_url=url, key_prefix="td:"), task_types={"probe", "noop"})


async def _due_task(url: str, account: str, **fields: Any) -> str:
    """A probe task of `account` (hourly, always in window unless overridden), due now."""
    async with _dispatcher(url) as d:
        task_id = await add_probe_task(d, account, interval=INTERVAL_S, **fields)
        await d.run_now(task_id)
        return task_id


def _runs(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """History records, oldest first."""
    return [json.loads(x) for x in reversed(client.lrange(KEYS.runs(task_id), 0, -1))]


def _never(ctx: RunContext) -> None:
    raise AssertionError("the handler ran")


async def test_round_ok_counts_the_round_and_records_it_ok(redis_url: str, runner: Runner) -> None:
    """A round whose handler returns bumps round_num and leaves one "ok" history record."""
    task_id = await _due_task(redis_url, "acct-ok")
    run, client = runner(lambda ctx: {"done": ctx.round_num})
    msg = message_for(client, task_id)
    summary = run.run(msg)
    assert (summary["outcome"], summary["round"]) == ("ok", 1)
    assert stored_task(client, task_id).round_num == 1
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["scheduled_ms"], record["result"]) == (
        "ok",
        msg.slot_ms,
        {"done": 1},
    )


async def test_round_ok_releases_the_account_lease(redis_url: str, runner: Runner) -> None:
    """After the round neither the account's lock nor a running-index entry remains."""
    task_id = await _due_task(redis_url, "acct-release")
    run, client = runner(lambda ctx: None)
    run.run(message_for(client, task_id))
    assert not client.exists(KEYS.lock("acct-release"))
    assert client.zscore(KEYS.running(), task_id) is None
    assert stored_task(client, task_id).run_id is None


async def test_round_ok_schedules_the_next_slot_one_interval_on(
    redis_url: str, runner: Runner
) -> None:
    """The task is pending again, due one interval after the slot it ran, with a new fence."""
    task_id = await _due_task(redis_url, "acct-next")
    run, client = runner(lambda ctx: None)
    msg = message_for(client, task_id)
    run.run(msg)
    task = stored_task(client, task_id)
    assert task.status is TaskStatus.PENDING
    assert task.next_ms == msg.slot_ms + INTERVAL_S * 1000
    assert task.fence > msg.fence
    assert client.zscore(KEYS.due(), task_id) == task.next_ms


async def test_round_message_with_an_old_fence_for_a_changed_slot_is_dropped(
    redis_url: str, runner: Runner
) -> None:
    """A message for a slot that was moved since (new fence) runs nothing and writes nothing."""
    task_id = await _due_task(redis_url, "acct-stale")
    run, client = runner(_never)
    msg = message_for(client, task_id)
    async with _dispatcher(redis_url) as d:
        await d.reorder_task(task_id, 600)
    before = client.hgetall(KEYS.task(task_id))
    assert run.run(msg) == {"outcome": "dropped", "reason": "stale message"}
    assert client.hgetall(KEYS.task(task_id)) == before
    assert _runs(client, task_id) == []


async def test_round_failing_handler_records_failed_with_the_error(
    redis_url: str, runner: Runner
) -> None:
    """A handler that raises leaves a "failed" record and last_error naming the exception."""
    task_id = await _due_task(redis_url, "acct-fail")

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("account suspended")

    run, client = runner(boom)
    assert run.run(message_for(client, task_id))["outcome"] == "failed"
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["error"]) == ("failed", "RuntimeError: account suspended")
    task = stored_task(client, task_id)
    assert (task.last_error, task.failures) == ("RuntimeError: account suspended", 1)


async def test_round_failing_handler_backs_off_before_the_retry(
    redis_url: str, runner: Runner
) -> None:
    """After a first failure the slot runs again retry_backoff_s after the round ended."""
    task_id = await _due_task(redis_url, "acct-backoff")

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("flaky")

    run, client = runner(boom)
    before = now_ms()
    run.run(message_for(client, task_id))
    after = now_ms()
    task = stored_task(client, task_id)
    assert task.status is TaskStatus.PENDING
    assert task.next_ms is not None
    assert before + BACKOFF_S * 1000 <= task.next_ms <= after + BACKOFF_S * 1000


async def test_round_of_a_paused_task_is_dropped(redis_url: str, runner: Runner) -> None:
    """A message that arrives after the task was paused runs nothing; the task stays paused."""
    task_id = await _due_task(redis_url, "acct-paused")
    run, client = runner(_never)
    msg = message_for(client, task_id)
    async with _dispatcher(redis_url) as d:
        await d.pause_task(task_id)
    assert run.run(msg) == {"outcome": "dropped", "reason": "stale message"}
    assert stored_task(client, task_id).status is TaskStatus.PAUSED
    assert _runs(client, task_id) == []


async def test_round_of_a_locked_account_is_skipped_account_locked(
    redis_url: str, runner: Runner
) -> None:
    """Another holder of the account's lease: nothing runs, an account_locked skip is recorded."""
    task_id = await _due_task(redis_url, "acct-locked")
    run, client = runner(_never)
    client.set(KEYS.lock("acct-locked"), "another-round", px=60_000)
    assert run.run(message_for(client, task_id)) == {
        "outcome": "skipped",
        "reason": "account_locked",
    }
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["reason"]) == ("skipped", "account_locked")
    assert client.get(KEYS.lock("acct-locked")) == "another-round"


async def test_round_of_a_locked_account_leaves_the_task_hash_and_its_events_alone(
    redis_url: str, runner: Runner
) -> None:
    """A bounce off a held account changes no task field (but the beat's claim count, which
    the admission ends) and adds no task.updated event."""
    task_id = await _due_task(redis_url, "acct-bounced")
    run, client = runner(_never)
    client.set(KEYS.lock("acct-bounced"), "another-round", px=60_000)
    before = {**client.hgetall(KEYS.task(task_id)), CLAIMS_FIELD: "0"}
    last_event = client.xrevrange(KEYS.events(), count=1)[0][0]
    for _ in range(3):
        assert run.run(message_for(client, task_id))["reason"] == "account_locked"
    assert client.hgetall(KEYS.task(task_id)) == before
    added = client.xrange(KEYS.events(), f"({last_event}", "+")
    assert [fields["type"] for _, fields in added] == ["round.skipped"] * 3


async def test_round_of_a_locked_account_ends_its_claim_so_the_next_one_is_a_first(
    redis_url: str, runner: Runner
) -> None:
    """The claim's message is handled: its claim count is 0 (no backoff, no claim holds it)."""
    task_id = await _due_task(redis_url, "acct-claims")
    run, client = runner(_never)
    msg = message_for(client, task_id)
    client.hset(KEYS.task(task_id), mapping={"claimed_slot": msg.slot_ms, CLAIMS_FIELD: 3})
    client.set(KEYS.lock("acct-claims"), "another-round", px=60_000)
    run.run(msg)
    assert client.hget(KEYS.task(task_id), CLAIMS_FIELD) == "0"


async def test_round_of_a_locked_account_looks_again_after_lock_retry_s(
    redis_url: str, runner: Runner
) -> None:
    """The skipped slot keeps its place but its due score moves to now + lock_retry_s."""
    task_id = await _due_task(redis_url, "acct-retry")
    run, client = runner(_never)
    client.set(KEYS.lock("acct-retry"), "another-round", px=60_000)
    msg = message_for(client, task_id)
    before = now_ms()
    run.run(msg)
    after = now_ms()
    score = client.zscore(KEYS.due(), task_id)
    assert score is not None
    assert before + LOCK_RETRY_S * 1000 <= score <= after + LOCK_RETRY_S * 1000
    assert (stored_task(client, task_id).next_ms, stored_task(client, task_id).fence) == (
        msg.slot_ms,
        msg.fence,
    )


async def test_round_outside_its_window_is_skipped_to_the_window_start(
    redis_url: str, runner: Runner
) -> None:
    """A round at an hour outside valid_time_range runs nothing; next_ms is the window start."""
    hour = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    opens = hour + timedelta(hours=2)  # two hours ahead: still shut if the hour turns now
    window = [opens.hour, (opens.hour + 2) % 24]
    task_id = await _due_task(redis_url, "acct-window", valid_time_range=window)
    run, client = runner(_never)
    msg = message_for(client, task_id)
    assert run.run(msg) == {"outcome": "skipped", "reason": "outside_window"}
    task = stored_task(client, task_id)
    assert task.next_ms == int(opens.timestamp() * 1000)
    assert task.fence > msg.fence
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["reason"]) == ("skipped", "outside_window")


async def test_round_handler_gets_the_message_fence_and_the_round_run_id(
    redis_url: str, runner: Runner
) -> None:
    """RunContext carries the message's fence as fencing_token and the round's own run_id."""
    task_id = await _due_task(redis_url, "acct-ctx")
    seen: dict[str, Any] = {}

    def handler(ctx: RunContext) -> None:
        seen["ctx"] = ctx
        seen["stored_run_id"] = client.hget(KEYS.task(task_id), "run_id")

    run, client = runner(handler)
    msg = message_for(client, task_id)
    run.run(msg)
    ctx: RunContext = seen["ctx"]
    assert ctx.fencing_token == msg.fence
    assert ctx.run_id and ctx.run_id == seen["stored_run_id"]


@pytest.mark.parametrize("result", [{"at": object()}, {"score": math.nan}], ids=["object", "nan"])
async def test_round_result_not_json_serialisable_fails_the_round_without_it(
    redis_url: str, runner: Runner, result: Any
) -> None:
    """A result history cannot store as JSON fails the round, naming why; none is stored."""
    task_id = await _due_task(redis_url, "acct-result")
    run, client = runner(lambda ctx: result)
    assert run.run(message_for(client, task_id))["outcome"] == "failed"
    [record] = _runs(client, task_id)
    assert record["outcome"] == "failed" and record["result"] is None
    assert "not JSON-serialisable" in record["error"]
    assert stored_task(client, task_id).failures == 1


async def test_round_sync_handler_returning_a_coroutine_fails_naming_async_def(
    redis_url: str, runner: Runner
) -> None:
    """A plain function that returns a coroutine fails its round (never `ok`), and the
    error says to declare the handler `async def`."""
    task_id = await _due_task(redis_url, "acct-coroutine")
    run, client = runner(lambda ctx: asyncio.sleep(0))
    assert run.run(message_for(client, task_id))["outcome"] == "failed"
    [record] = _runs(client, task_id)
    assert record["result"] is None
    assert record["error"].startswith("TypeError: the handler returned coroutine")
    assert "`async def`" in record["error"]


def test_round_async_handler_records_ok_with_what_its_coroutine_returned(
    redis_url: str, runner: Runner
) -> None:
    """An async handler's round runs its coroutine to the end and records its result."""
    task_id = asyncio.run(_due_task(redis_url, "acct-async"))

    async def handler(ctx: RunContext) -> dict[str, int]:
        await asyncio.sleep(0)  # suspends once: the round must drive it to its end
        return {"round": ctx.round_num}

    run, client = runner(handler)
    assert run.run(message_for(client, task_id))["outcome"] == "ok"
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["result"]) == ("ok", {"round": 1})
