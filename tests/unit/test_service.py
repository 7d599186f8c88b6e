"""Specification tests for TaskDispatcher with an injected clock, on the session's private
Redis: creates, changes and the dispatcher switch run the audit and read scripts, which only
a real Redis runs as production does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio

from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.service.dispatcher import ALIVE_MS, TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys

NOW = (
    datetime(2026, 1, 8, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")) - datetime(1970, 1, 1, tzinfo=UTC)
) // timedelta(milliseconds=1)
KEYS = Keys("tdunit:")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the session Redis, emptied before the test (`redis_url`)."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def dispatcher(client: redis.asyncio.Redis) -> AsyncIterator[TaskDispatcher]:
    settings = Settings(redis_url="redis://unused", key_prefix="tdunit:", timezone="Asia/Shanghai")
    async with TaskDispatcher(
        settings, redis=client, clock=lambda: NOW, task_types={"xhs_type", "noop"}
    ) as d:
        yield d


async def add(dispatcher: TaskDispatcher, account: str, **fields: Any) -> Task:
    return await dispatcher.create_task(
        TaskSpec(
            sys_type="mac_intel",
            xhs_account_id=account,
            xhs_account_name=f"name-{account}",
            **fields,
        )
    )


# --------------------------------------------------------------------------- list_tasks


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-zero"),
        pytest.param({"limit": 1001}, "limit", id="limit-over-1000"),
        pytest.param({"offset": -1}, "offset", id="offset-negative"),
        pytest.param({"status": "done"}, "status", id="status-unknown"),
        pytest.param({"status": "Pending"}, "status", id="status-wrong-case"),
        pytest.param({"account_id": "a1", "limit": 0}, "limit", id="limit-checked-with-account"),
    ],
)
async def test_list_tasks_invalid_query_raises_naming_field(
    dispatcher: TaskDispatcher, kwargs: dict[str, Any], field: str
) -> None:
    """A bad limit, offset or status raises InvalidTaskError whose .field names it."""
    with pytest.raises(InvalidTaskError) as info:
        await dispatcher.list_tasks(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("limit", "offset"),
    [pytest.param(1, 0, id="limit-1"), pytest.param(1000, 0, id="limit-1000")],
)
async def test_list_tasks_limit_bounds_are_accepted(
    dispatcher: TaskDispatcher, limit: int, offset: int
) -> None:
    """limit 1 and 1000 are both valid."""
    assert await dispatcher.list_tasks(limit=limit, offset=offset) == (0, [])


async def test_list_tasks_without_filter_lists_all(dispatcher: TaskDispatcher) -> None:
    """Without filters every task is listed and counted."""
    first = await add(dispatcher, "a1")
    second = await add(dispatcher, "a2")
    total, tasks = await dispatcher.list_tasks()
    assert total == 2
    assert {t.task_id for t in tasks} == {first.task_id, second.task_id}


async def test_list_tasks_account_filter_selects_its_task(dispatcher: TaskDispatcher) -> None:
    """account_id selects the one task of that account."""
    await add(dispatcher, "a1")
    mine = await add(dispatcher, "a2")
    assert await dispatcher.list_tasks(account_id="a2") == (1, [mine])


@pytest.mark.parametrize(
    ("account_id", "status", "total"),
    [
        pytest.param("a1", "pending", 1, id="status-matches"),
        pytest.param("a1", "paused", 0, id="status-differs"),
        pytest.param("nobody", None, 0, id="unknown-account"),
    ],
)
async def test_list_tasks_account_filter_combines_with_status(
    dispatcher: TaskDispatcher, account_id: str, status: str | None, total: int
) -> None:
    """The account filter and the status filter must both match."""
    await add(dispatcher, "a1")
    got_total, tasks = await dispatcher.list_tasks(account_id=account_id, status=status)
    assert (got_total, len(tasks)) == (total, total)


async def test_list_tasks_account_filter_offset_past_match_is_empty(
    dispatcher: TaskDispatcher,
) -> None:
    """With the account filter, offset 1 skips the only match but total still counts it."""
    await add(dispatcher, "a1")
    assert await dispatcher.list_tasks(account_id="a1", offset=1) == (1, [])


async def test_list_tasks_status_filter_uses_status_index(dispatcher: TaskDispatcher) -> None:
    """The status filter lists only tasks in that status."""
    await add(dispatcher, "a1")
    paused = await dispatcher.pause_task((await add(dispatcher, "a2")).task_id)
    assert await dispatcher.list_tasks(status="paused") == (1, [paused])


# --------------------------------------------------------------------------- status


async def test_status_counts_tasks_per_status(dispatcher: TaskDispatcher) -> None:
    """status().counts has the number of tasks in each status."""
    await add(dispatcher, "a1")
    await add(dispatcher, "a2")
    await dispatcher.pause_task((await add(dispatcher, "a3")).task_id)
    status = await dispatcher.status()
    assert status.counts == {"pending": 2, "running": 0, "paused": 1, "completed": 0, "error": 0}


async def test_status_without_heartbeat_is_not_running(dispatcher: TaskDispatcher) -> None:
    """Enabled but with no beat heartbeat, the dispatcher is not running."""
    status = await dispatcher.status()
    assert (status.enabled, status.beats_alive, status.is_running) == (True, 0, False)


async def test_status_with_fresh_heartbeat_is_running(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """Enabled with a beat heartbeat at now, the dispatcher is running."""
    await client.zadd(KEYS.beats(), {"beat-1": NOW})
    status = await dispatcher.status()
    assert (status.beats_alive, status.is_running) == (1, True)


@pytest.mark.parametrize(
    ("age_ms", "alive"),
    [
        pytest.param(ALIVE_MS, True, id="at-the-limit"),
        pytest.param(ALIVE_MS + 1, False, id="just-too-old"),
    ],
)
async def test_status_heartbeat_counts_while_younger_than_limit(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis, age_ms: int, alive: bool
) -> None:
    """A heartbeat counts as alive while it is at most ALIVE_MS old."""
    await client.zadd(KEYS.beats(), {"beat-1": NOW - age_ms})
    assert (await dispatcher.status()).is_running is alive


async def test_status_stopped_dispatcher_is_not_running(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """After stop() the dispatcher is not running even with a live beat."""
    await client.zadd(KEYS.beats(), {"beat-1": NOW})
    await dispatcher.stop()
    status = await dispatcher.status()
    assert (status.enabled, status.is_running) == (False, False)


async def test_status_restarted_dispatcher_is_running(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """start() after stop() turns the dispatcher back on."""
    await client.zadd(KEYS.beats(), {"beat-1": NOW})
    await dispatcher.stop()
    await dispatcher.start()
    assert (await dispatcher.status()).is_running


async def test_status_lists_running_rounds(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """status().running_rounds holds the tasks in the running index."""
    task = await add(dispatcher, "a1")
    await client.zadd(KEYS.running(), {task.task_id: NOW + 30_000})
    assert [t.task_id for t in (await dispatcher.status()).running_rounds] == [task.task_id]


async def test_status_counts_live_workers(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """status().workers_alive counts worker heartbeats at most ALIVE_MS old."""
    await client.zadd(KEYS.workers(), {"w1": NOW, "w2": NOW - ALIVE_MS, "w3": NOW - ALIVE_MS - 1})
    assert (await dispatcher.status()).workers_alive == 2


@pytest.mark.parametrize(
    ("due", "backlog", "lag_ms"),
    [
        pytest.param({}, 0, 0, id="nothing-due"),
        pytest.param({"t1": NOW + 1}, 0, 0, id="only-future"),
        pytest.param({"t1": NOW - 4_000, "t2": NOW - 1_000}, 2, 4_000, id="oldest-waits-4s"),
    ],
)
async def test_status_reports_due_backlog_and_scheduling_lag(
    dispatcher: TaskDispatcher,
    client: redis.asyncio.Redis,
    due: dict[str, int],
    backlog: int,
    lag_ms: int,
) -> None:
    """Backlog counts due-but-unclaimed tasks; lag is how long the oldest has waited."""
    if due:
        await client.zadd(KEYS.due(), due)
    status = await dispatcher.status()
    assert (status.due_backlog, status.scheduling_lag_ms) == (backlog, lag_ms)


async def test_create_task_uses_injected_clock(dispatcher: TaskDispatcher) -> None:
    """Tasks are stamped with the injected clock, not the wall clock."""
    task = await add(dispatcher, "a1")
    assert (task.created_ms, task.next_ms, task.status) == (
        NOW,
        NOW + 3_600_000,
        TaskStatus.PENDING,
    )


async def test_create_task_wakes_sleeping_beats(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """A new task leaves one token in the wake list so a sleeping beat looks at due now."""
    await add(dispatcher, "a1")
    assert await client.lrange(KEYS.wake(), 0, -1) == ["1"]


async def test_reorder_task_wakes_sleeping_beats(
    dispatcher: TaskDispatcher, client: redis.asyncio.Redis
) -> None:
    """Moving a task's next run earlier wakes the beats (the wake list holds one token)."""
    task = await add(dispatcher, "a1")
    await client.delete(KEYS.wake())
    await dispatcher.reorder_task(task.task_id, -1800)
    assert await client.lrange(KEYS.wake(), 0, -1) == ["1"]
