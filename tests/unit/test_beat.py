"""Specification of the beat's tick (taskdispatch.beat.RedisScheduler) on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskdispatch.beat import RedisScheduler
from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.keys import Keys
from taskdispatch.models import TaskStatus
from taskdispatch.settings import get_settings
from taskdispatch.worker import create_celery_app
from tests.support.probes import add_due_task, stored_task

KEYS = Keys("td:")


@pytest.fixture
def aof(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedRedis]:
    """A restartable Redis that get_settings() (read by the scheduler) points at."""
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=True)
    server.start()
    monkeypatch.setenv("TASKDISPATCH_REDIS_URL", server.url)
    monkeypatch.setenv("TASKDISPATCH_BROKER_URL", server.url)
    get_settings.cache_clear()
    try:
        yield server
    finally:
        get_settings.cache_clear()
        server.close()


def _scheduler(broker_url: str | None = None) -> RedisScheduler:
    settings = get_settings()
    if broker_url is not None:
        settings = settings.model_copy(update={"broker_url": broker_url})
    return RedisScheduler(app=create_celery_app(settings), lazy=True)


async def test_tick_after_redis_restart_releases_the_claims_it_made(aof: EmbeddedRedis) -> None:
    """A restart (new run_id) makes the rounds the beat had claimed due again at once,
    instead of after the dispatch timeout; they are claimed again with a new fence."""
    task_id = await add_due_task(aof.url, "acct-restart")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    beat = _scheduler()
    beat._watch_restarts()  # the first connection: learns the run_id
    beat.dispatch_due()
    claimed = stored_task(client, task_id)
    assert client.zscore(KEYS.due(), task_id) > claimed.next_ms, "claimed: pushed forward"

    aof.stop()
    aof.start()
    client.delete("celery")  # the message is "lost"
    beat.dispatch_due()  # reconnects (and claims nothing: the claim still holds)
    beat._watch_restarts()
    assert client.zscore(KEYS.due(), task_id) == claimed.next_ms, "released: due at its slot"
    beat.dispatch_due()
    assert stored_task(client, task_id).fence > claimed.fence
    assert client.llen("celery") == 1
    client.close()


async def test_tick_whose_publish_failed_releases_the_claims_next_tick(aof: EmbeddedRedis) -> None:
    """Broker unreachable: the publish fails, the beat backs off, and its next tick makes
    the claimed rounds due again rather than leaving them to the dispatch timeout."""
    task_id = await add_due_task(aof.url, "acct-unsent")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    beat = _scheduler(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    assert beat.dispatch_due() >= 1.0
    claimed = stored_task(client, task_id)
    assert client.zscore(KEYS.due(), task_id) > claimed.next_ms
    beat._watch_restarts()
    assert client.zscore(KEYS.due(), task_id) == claimed.next_ms
    client.close()


async def test_tick_with_dispatcher_stopped_still_recovers_lost_rounds(aof: EmbeddedRedis) -> None:
    """A round whose lease expired is recorded lost by the tick, whatever the dispatcher flag."""
    task_id = await add_due_task(aof.url, "acct-lost")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    task = stored_task(client, task_id)
    now = time.time_ns() // 1_000_000
    running = task.evolve(status=TaskStatus.RUNNING, run_id="r1", started_ms=now - 5000)
    with client.pipeline() as pipe:
        pipe.hset(KEYS.task(task_id), mapping=running.to_hash())
        pipe.zrem(KEYS.status("pending"), task_id)
        pipe.zadd(KEYS.status("running"), {task_id: task.created_ms})
        pipe.zrem(KEYS.due(), task_id)
        pipe.zadd(KEYS.running(), {task_id: now - 1000})  # its lease expired a second ago
        pipe.hset(KEYS.dispatcher(), "enabled", "0")
        pipe.execute()

    assert _scheduler().dispatch_due() == 0.0  # the task was just made due: look again
    after = stored_task(client, task_id)
    assert (after.status, after.run_id) == (TaskStatus.PENDING, None)
    assert client.zscore(KEYS.running(), task_id) is None
    [record] = client.lrange(KEYS.runs(task_id), 0, -1)
    assert '"outcome": "lost"' in record and "lease_expired" in record
    client.close()
