"""Specification of taskdispatch.engine.recovery: lost rounds run again, timed pauses end.

Real Redis (the session's private server). A round "left running" is arranged by hand, as
a worker killed mid-round leaves it: status running with a run_id, an entry in the running
index scored by its lease expiry, and (unless the test says so) no lock any more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_due_task, stored_task
from tests.support.runner import housekeep

KEYS = Keys("td:")
SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKER = "w1@host"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def _settings(url: str) -> Settings:
    return Settings(redis_url=url, key_prefix="td:")


def _keeper(client: redis.Redis, url: str, at_ms: int | None = None) -> Housekeeper:
    """A Housekeeper on the real clock, or one stopped at `at_ms`."""
    if at_ms is None:
        return Housekeeper(client, _settings(url))
    return Housekeeper(client, _settings(url), clock=lambda: at_ms)


async def _paused_task(url: str, account: str, *, until_ms: int) -> str:
    """A task paused until `until_ms` (given to the API as local time with its offset)."""
    task_id = await add_due_task(url, account)
    until = datetime.fromtimestamp(until_ms / 1000, SHANGHAI).isoformat()
    async with TaskDispatcher(_settings(url), task_types={"noop"}) as d:
        await d.pause_task(task_id, until=until)
    return task_id


def _runs(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange(KEYS.runs(task_id), 0, -1)]


def _left_running(
    client: redis.Redis, task_id: str, *, lease_expiry_ms: int, failures: int = 0
) -> Task:
    """Put the task in the state a worker killed mid-round leaves behind (after `failures`
    failed or lost rounds in a row)."""
    task = stored_task(client, task_id)
    running = task.evolve(
        status=TaskStatus.RUNNING,
        run_id="r1",
        started_ms=now_ms() - 5000,
        worker=WORKER,
        failures=failures,
    )
    with client.pipeline() as pipe:
        pipe.hset(KEYS.task(task_id), mapping=running.to_hash())
        pipe.zrem(KEYS.status("pending"), task_id)
        pipe.zadd(KEYS.status("running"), {task_id: task.created_ms})
        pipe.zrem(KEYS.due(), task_id)
        pipe.zadd(KEYS.running(), {task_id: lease_expiry_ms})
        pipe.execute()
    return running


async def test_recover_lost_with_an_expired_lease_records_one_lost_round(
    redis_url: str, client: redis.Redis
) -> None:
    """The round is recorded once as lost, reason lease_expired, naming its worker."""
    task_id = await add_due_task(redis_url, "acct-lost")
    running = _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000)
    assert _keeper(client, redis_url).recover_lost([task_id]) == 1
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["reason"], record["worker"]) == (
        "lost",
        "lease_expired",
        WORKER,
    )
    assert (record["scheduled_ms"], record["round_num"]) == (running.next_ms, 1)


async def test_recover_lost_with_an_expired_lease_makes_the_task_due_now(
    redis_url: str, client: redis.Redis
) -> None:
    """The task is pending again, no longer owned by the dead round, due at once."""
    task_id = await add_due_task(redis_url, "acct-rerun")
    _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000)
    before = now_ms()
    _keeper(client, redis_url).recover_lost([task_id])
    after = now_ms()
    task = stored_task(client, task_id)
    assert (task.status, task.run_id) == (TaskStatus.PENDING, None)
    assert task.next_ms is not None and before <= task.next_ms <= after
    assert client.zscore(KEYS.due(), task_id) == task.next_ms
    assert client.zscore(KEYS.running(), task_id) is None


async def test_recover_lost_of_a_rerun_round_logs_that_it_runs_again(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A lost round below the failure limit is logged as a warning that it runs again."""
    task_id = await add_due_task(redis_url, "acct-rerun-log")
    _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000)
    with caplog.at_level(logging.WARNING, logger="taskdispatch.engine.recovery"):
        _keeper(client, redis_url).recover_lost([task_id])
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"round of task {task_id} was lost; it runs again")
    ]


async def test_recover_lost_at_the_failure_limit_puts_the_task_in_error(
    redis_url: str, client: redis.Redis
) -> None:
    """The max_consecutive_failures-th failed or lost round in a row: error, no next slot."""
    task_id = await add_due_task(redis_url, "acct-lost-thrice")
    _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000, failures=2)
    _keeper(client, redis_url).recover_lost([task_id])
    task = stored_task(client, task_id)
    assert (task.status, task.failures, task.next_ms) == (TaskStatus.ERROR, 3, None)
    assert client.zscore(KEYS.due(), task_id) is None


async def test_recover_lost_at_the_failure_limit_logs_the_error_never_a_rerun(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The log says the task is in error and how to run it again, not that it runs again."""
    task_id = await add_due_task(redis_url, "acct-lost-log")
    _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000, failures=2)
    with caplog.at_level(logging.WARNING, logger="taskdispatch.engine.recovery"):
        _keeper(client, redis_url).recover_lost([task_id])
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert task_id in record.getMessage() and "resume it" in record.getMessage()
    assert "runs again" not in record.getMessage()


async def test_recover_lost_with_a_live_lock_recovers_nothing(
    redis_url: str, client: redis.Redis
) -> None:
    """A lock that still exists means its holder renews it: the round stays running."""
    task_id = await add_due_task(redis_url, "acct-alive")
    running = _left_running(client, task_id, lease_expiry_ms=now_ms() - 1000)
    client.set(KEYS.lock("acct-alive"), "holder", px=5000)
    assert _keeper(client, redis_url).recover_lost([task_id]) == 0
    assert stored_task(client, task_id) == running
    assert _runs(client, task_id) == []


async def test_recover_lost_with_a_live_lock_pushes_the_running_score_to_its_pttl(
    redis_url: str, client: redis.Redis
) -> None:
    """The lagging running score moves to now + the lock's remaining PTTL."""
    task_id = await add_due_task(redis_url, "acct-lagging")
    now = now_ms()
    _left_running(client, task_id, lease_expiry_ms=now - 1000)
    client.set(KEYS.lock("acct-lagging"), "holder", px=5000)
    _keeper(client, redis_url, at_ms=now).recover_lost([task_id])
    left_after = client.pttl(KEYS.lock("acct-lagging"))
    score = client.zscore(KEYS.running(), task_id)
    assert score is not None
    assert now + left_after <= score <= now + 5000


async def test_recover_lost_of_a_deleted_task_removes_its_running_entry(
    redis_url: str, client: redis.Redis
) -> None:
    """An entry left in the running index by a task that no longer exists is removed."""
    client.zadd(KEYS.running(), {"gone-task": now_ms() - 1000})
    assert _keeper(client, redis_url).recover_lost(["gone-task"]) == 0
    assert client.zscore(KEYS.running(), "gone-task") is None
    assert not client.exists(KEYS.task("gone-task"))


async def test_resume_paused_after_until_makes_the_task_pending(
    redis_url: str, client: redis.Redis
) -> None:
    """A pause whose until has passed ends: pending, out of the resume index."""
    until = now_ms() + 60_000
    task_id = await _paused_task(redis_url, "acct-resume", until_ms=until)
    assert _keeper(client, redis_url, at_ms=until + 1000).resume_paused([task_id]) == 1
    task = stored_task(client, task_id)
    assert (task.status, task.paused_until_ms) == (TaskStatus.PENDING, None)
    assert client.zscore(KEYS.resume(), task_id) is None


async def test_resume_paused_before_until_leaves_the_task_paused(
    redis_url: str, client: redis.Redis
) -> None:
    """A pause whose until is still in the future is not ended early."""
    until = now_ms() + 60_000
    task_id = await _paused_task(redis_url, "acct-early", until_ms=until)
    assert _keeper(client, redis_url).resume_paused([task_id]) == 0
    task = stored_task(client, task_id)
    assert (task.status, task.paused_until_ms) == (TaskStatus.PAUSED, until)


async def test_resume_paused_before_until_still_ends_the_pause_on_time(
    redis_url: str, client: redis.Redis
) -> None:
    """A pause looked at too early keeps its resume entry, so a later housekeeping ends it."""
    until = now_ms() + 60_000
    task_id = await _paused_task(redis_url, "acct-keep", until_ms=until)
    _keeper(client, redis_url).resume_paused([task_id])
    assert housekeep(_keeper(client, redis_url, at_ms=until + 1000)) == (0, 1)
    assert stored_task(client, task_id).status is TaskStatus.PENDING


async def test_resume_paused_of_a_task_no_longer_paused_removes_the_stale_entry(
    redis_url: str, client: redis.Redis
) -> None:
    """A resume entry of a task that is pending again is dropped; the task is untouched."""
    task_id = await add_due_task(redis_url, "acct-stale")
    client.zadd(KEYS.resume(), {task_id: now_ms() - 1000})
    before = client.hgetall(KEYS.task(task_id))
    assert _keeper(client, redis_url).resume_paused([task_id]) == 0
    assert client.zscore(KEYS.resume(), task_id) is None
    assert client.hgetall(KEYS.task(task_id)) == before


async def test_housekeeping_finds_lost_rounds_and_ended_pauses_by_itself(
    redis_url: str, client: redis.Redis
) -> None:
    """A beat's housekeeping reads both indexes for candidates: one lost round, one ended
    pause."""
    now = now_ms()
    lost_id = await add_due_task(redis_url, "acct-sweep-lost")
    _left_running(client, lost_id, lease_expiry_ms=now - 1000)
    paused_id = await _paused_task(redis_url, "acct-sweep-paused", until_ms=now + 60_000)
    assert housekeep(_keeper(client, redis_url, at_ms=now + 120_000)) == (1, 1)
    assert stored_task(client, lost_id).status is TaskStatus.PENDING
    assert stored_task(client, paused_id).status is TaskStatus.PENDING
