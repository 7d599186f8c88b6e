"""Specification of the beat's tick (taskdispatch.engine.beat.RedisScheduler) on a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.domain.models import TaskStatus
from taskdispatch.engine.beat import Prediction, RedisScheduler, Tick, claim_tick
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


def _claim_call(client: redis.Redis, ids: list[str], *, now_ms: int) -> tuple[list[str], int]:
    """The claim script run once with the hashes of `ids`: its unlisted due ids and the
    wake-up it answered."""
    reply = BEAT_CLAIM(
        client,
        keys=[
            KEYS.due(),
            KEYS.dispatcher(),
            KEYS.beats(),
            KEYS.running(),
            KEYS.resume(),
            *(KEYS.task(i) for i in ids),
        ],
        args=[now_ms, 60_000, "beat-x", 100, 60_000, "enabled", "0", "pending", 10, 0, *ids],
    )
    n_lost, n_resumes, n_unlisted = (int(x) for x in reply[2:5])
    at = 7 + n_lost + n_resumes
    return [str(x) for x in reply[at : at + n_unlisted]], int(reply[1])


def _tick(client: redis.Redis, now_ms: int, beat_id: str = "b1", **kwargs: Any) -> Tick:
    return claim_tick(
        client,
        KEYS,
        now_ms=now_ms,
        beat_id=beat_id,
        batch=10,
        dispatch_timeout_ms=60_000,
        lookahead_ms=5_000,
        **kwargs,
    )


async def test_claim_with_the_predicted_ids_due_claims_in_one_call(aof: EmbeddedRedis) -> None:
    """The head a tick answered holds a slot due soon: the next tick passes it and claims it
    in one script call."""
    first_id = await add_due_task(aof.url, "acct-now")
    soon_id = await add_due_task(aof.url, "acct-soon")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    client.zadd(KEYS.due(), {soon_id: now + 2000})
    first = _tick(client, now)
    assert [c.task_id for c in first.claimed] == [first_id]
    assert first.calls == 2, "no prediction yet: every due id is unlisted"
    assert (soon_id, now + 2000) in first.prediction.head
    second = _tick(client, now + 2000, prediction=first.prediction)
    assert ([c.task_id for c in second.claimed], second.calls) == ([soon_id], 1)
    client.close()


async def test_claim_of_a_due_id_not_predicted_claims_it_in_a_second_call(
    aof: EmbeddedRedis,
) -> None:
    """A slot that fell due outside the prediction (a new task) comes back unlisted from the
    first call, and the second call of the same tick claims it."""
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    first = _tick(client, now)
    assert (first.claimed, first.calls, first.prediction.head) == ([], 1, ())
    task_id = await add_due_task(aof.url, "acct-new")
    assert _claim_call(client, [], now_ms=now)[0] == [task_id], "unlisted, untouched"
    second = _tick(client, now, prediction=first.prediction)
    assert ([c.task_id for c in second.claimed], second.calls) == ([task_id], 2)
    assert second.prediction.claimed == (task_id,)
    client.close()


async def test_claim_of_a_predicted_id_no_longer_due_leaves_it(aof: EmbeddedRedis) -> None:
    """A predicted id whose slot moved later since (edited, or claimed by another beat) is
    passed but not claimed: its score and fence stay as they are."""
    task_id = await add_due_task(aof.url, "acct-moved")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    prediction = Prediction(head=((task_id, now - 1),))
    client.zadd(KEYS.due(), {task_id: now + 60_000})
    fence = stored_task(client, task_id).fence
    tick = _tick(client, now, prediction=prediction)
    assert (tick.claimed, tick.calls) == ([], 1)
    assert client.zscore(KEYS.due(), task_id) == now + 60_000
    assert stored_task(client, task_id).fence == fence
    client.close()


async def test_claim_by_two_beats_racing_never_claims_a_slot_twice(aof: EmbeddedRedis) -> None:
    """Two beats both predicting the same due slots claim them at once, each in its own
    thread: every slot is claimed by exactly one of them."""
    ids = [await add_due_task(aof.url, f"acct-race-{i}") for i in range(10)]
    clients = [redis.Redis.from_url(aof.url, decode_responses=True) for _ in range(2)]
    now = int(time.time() * 1000) + 1000
    prediction = Prediction(head=tuple((i, now) for i in ids))
    start = threading.Barrier(2)

    def beat(n: int) -> Tick:
        start.wait()
        return _tick(clients[n], now, beat_id=f"b{n}", prediction=prediction)

    with ThreadPoolExecutor(2) as pool:
        ticks = list(pool.map(beat, range(2)))
    claimed = [c.task_id for tick in ticks for c in tick.claimed]
    assert sorted(claimed) == sorted(ids)
    for client in clients:
        client.close()


async def test_claim_of_a_slot_due_after_the_call_leaves_it_due_and_wakes_at_once(
    aof: EmbeddedRedis,
) -> None:
    """A due slot the script was not given is not lost: it stays due, and the wake-up is no
    later than now, so the next tick claims it."""
    task_id = await add_due_task(aof.url, "acct-late")
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    now = int(time.time() * 1000) + 1000
    unlisted, wake_ms = _claim_call(client, [], now_ms=now)
    assert unlisted == [task_id]
    assert 0 <= wake_ms <= now
    assert client.zscore(KEYS.due(), task_id) <= now
    tick = _tick(client, now)
    assert [c.task_id for c in tick.claimed] == [task_id]
    client.close()
