"""Specification of a task's own queue through the beat and the round, in one process.

A real Redis (the session's) is store and broker; the beat (`RedisScheduler.dispatch_due`)
publishes real Celery messages, which the test reads off the broker's lists and hands to
an in-process `RoundRunner`, as a worker of that queue would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskdispatch.domain.bodies import TaskChange
from taskdispatch.domain.clock import now_ms
from taskdispatch.engine.beat import RedisScheduler
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task
from tests.support.runner import runner_for

KEYS = Keys("td:")


@pytest.fixture
def beat(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisScheduler]:
    """A beat over the session Redis, store and broker (get_settings() is what it reads)."""
    monkeypatch.setenv("TASKDISPATCH_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKDISPATCH_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKDISPATCH_KEY_PREFIX", "td:")
    monkeypatch.setenv("TASKDISPATCH_DEFAULT_QUEUE", "celery")
    monkeypatch.setenv("TASKDISPATCH_ROUTE_BY_SYS_TYPE", "false")
    get_settings.cache_clear()
    try:
        yield RedisScheduler(app=create_celery_app(get_settings()), lazy=True)
    finally:
        get_settings.cache_clear()


@pytest.fixture
def runner(redis_url: str) -> Iterator[tuple[RoundRunner, redis.Redis]]:
    """A worker's round runner whose "probe" handler returns the round's number."""
    run, client = runner_for(redis_url, lambda ctx: _handled(ctx))
    yield run, client
    run.lease_redis.close()
    client.close()


def _handled(ctx: RunContext) -> dict[str, Any]:
    return {"round": ctx.round_num}


def _dispatcher(url: str) -> TaskDispatcher:
    return TaskDispatcher(Settings(redis_url=url, key_prefix="td:"), task_types={"probe"})


async def _due_task(url: str, account: str, **fields: Any) -> str:
    """A probe task of `account` (hourly, always in window), due now."""
    async with _dispatcher(url) as d:
        task_id = await add_probe_task(d, account, interval=3600, **fields)
        await d.run_now(task_id)
        return task_id


def _messages(client: redis.Redis, queue: str) -> list[RoundMessage]:
    """The round messages waiting in `queue` (the broker's list of that name), oldest first."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        out.append(RoundMessage(kwargs["task_id"], kwargs["fence"], kwargs["slot_ms"]))
    return out


def _outcomes(client: redis.Redis, task_id: str) -> list[str]:
    return [json.loads(x)["outcome"] for x in client.lrange(KEYS.runs(task_id), 0, -1)]


async def test_beat_publishes_each_round_to_its_tasks_own_queue(
    redis_url: str, beat: RedisScheduler, runner: tuple[RoundRunner, redis.Redis]
) -> None:
    """A pinned task's round goes to its queue, another task's to the default queue, and
    both queues are noted as published."""
    _, client = runner
    pinned = await _due_task(redis_url, "acct-pinned", queue="dev-a")
    plain = await _due_task(redis_url, "acct-plain")
    beat.dispatch_due()
    assert [m.task_id for m in _messages(client, "dev-a")] == [pinned]
    assert [m.task_id for m in _messages(client, "celery")] == [plain]
    assert client.smembers(KEYS.published_queues()) == {"dev-a", "celery"}


async def test_queue_move_republishes_the_waiting_slot_and_drops_the_old_message(
    redis_url: str, beat: RedisScheduler, runner: tuple[RoundRunner, redis.Redis]
) -> None:
    """A round waiting on dev-a when the task moves to dev-b is published again to dev-b;
    the message left on dev-a is dropped as stale, and the slot runs once, from dev-b."""
    run, client = runner
    task_id = await _due_task(redis_url, "acct-move", queue="dev-a")
    beat.dispatch_due()
    [old] = _messages(client, "dev-a")
    async with _dispatcher(redis_url) as d:
        await d.update_task(task_id, TaskChange(queue="dev-b"))
    beat.dispatch_due()
    [new] = _messages(client, "dev-b")
    assert (new.slot_ms, new.fence > old.fence) == (old.slot_ms, True)
    assert run.run(old) == {"outcome": "dropped", "reason": "stale message"}
    assert run.run(new)["outcome"] == "ok"
    assert run.run(old)["outcome"] == "dropped"
    assert _outcomes(client, task_id) == ["ok"]


async def test_queue_move_back_to_the_rule_republishes_to_the_default_queue(
    redis_url: str, beat: RedisScheduler, runner: tuple[RoundRunner, redis.Redis]
) -> None:
    """`queue: null` sends the waiting slot to the queue the rule picks (the default here)."""
    run, client = runner
    task_id = await _due_task(redis_url, "acct-back", queue="dev-a")
    beat.dispatch_due()
    async with _dispatcher(redis_url) as d:
        await d.update_task(task_id, TaskChange(queue=None))
    beat.dispatch_due()
    [new] = _messages(client, "celery")
    assert run.run(new)["outcome"] == "ok"
    assert _outcomes(client, task_id) == ["ok"]


async def test_status_backlog_counts_messages_in_queues_nobody_consumes(
    redis_url: str, beat: RedisScheduler, runner: tuple[RoundRunner, redis.Redis]
) -> None:
    """Rounds published to dev-a, which no live worker consumes, count in due_backlog and
    show per queue; a live worker on dev-a takes them out of both."""
    _, client = runner
    for n in range(3):
        await _due_task(redis_url, f"acct-dead-{n}", queue="dev-a")
    beat.dispatch_due()
    async with _dispatcher(redis_url) as d:
        status = await d.status()
        assert (status.due_backlog, status.unconsumed_queues) == (3, {"dev-a": 3})
        client.hset(KEYS.worker_queues(), "w1@host", "celery,dev-a")
        client.zadd(KEYS.workers(), {"w1@host": now_ms()})
        status = await d.status()
        assert (status.due_backlog, status.unconsumed_queues) == (0, {})
