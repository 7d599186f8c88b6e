"""Specification of the beat's tick (taskdispatch.engine.beat.RedisScheduler) on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.domain.models import TaskStatus
from taskdispatch.engine.beat import RedisScheduler, claim_tick
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.settings import get_settings
from taskdispatch.store.keys import Keys
from taskdispatch.store.scripts import BEAT_CLAIM
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


def _claim_read_earlier(
    client: redis.Redis, due_ids: list[str], *, now_ms: int
) -> tuple[list[str], int]:
    """The claim script run on ids a beat read before (as `claim_tick` passes them): the
    ids it claimed and the wake-up it answered."""
    reply = BEAT_CLAIM(
        client,
        keys=[
            KEYS.due(),
            KEYS.dispatcher(),
            KEYS.beats(),
            KEYS.running(),
            KEYS.resume(),
            *(KEYS.task(i) for i in due_ids),
        ],
        args=[now_ms, 60_000, "beat-late", 100, 60_000, "enabled", "0", "pending", *due_ids],
    )
    rest = reply[4 + int(reply[2]) + int(reply[3]) :]
    return [str(rest[i]) for i in range(0, len(rest), 7)], int(reply[1])


async def test_claim_of_ids_another_beat_claimed_since_they_were_read_claims_nothing(
    aof: EmbeddedRedis,
) -> None:
    """Two beats read the same due id; the one whose script runs second finds it no longer
    due and claims nothing: one message per slot."""
    task_id = await add_due_task(aof.url, "acct-race")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    read = client.zrangebyscore(KEYS.due(), "-inf", now)
    assert read == [task_id]
    first = claim_tick(client, KEYS, now_ms=now, beat_id="b1", batch=10, dispatch_timeout_ms=60_000)
    assert [c.task_id for c in first.claimed] == [task_id]
    assert _claim_read_earlier(client, read, now_ms=now)[0] == []
    assert stored_task(client, task_id).fence == first.claimed[0].fence
    client.close()


async def test_claim_of_a_slot_due_after_the_read_leaves_it_due_and_wakes_at_once(
    aof: EmbeddedRedis,
) -> None:
    """A slot that fell due after the beat read the due ids is not lost: it stays due, and
    the tick's wake-up is no later than now, so the next tick claims it."""
    task_id = await add_due_task(aof.url, "acct-late")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    claimed, wake_ms = _claim_read_earlier(client, [], now_ms=now)
    assert claimed == []
    assert 0 <= wake_ms <= now
    assert client.zscore(KEYS.due(), task_id) <= now
    tick = claim_tick(client, KEYS, now_ms=now, beat_id="b1", batch=10, dispatch_timeout_ms=60_000)
    assert [c.task_id for c in tick.claimed] == [task_id]
    client.close()
