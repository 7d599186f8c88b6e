"""Specification of taskdispatch.engine.conditions: the watcher that turns conditions (an overdue
task, an unserved queue, no live beat, a dead worker) into down/up events.

Real Redis (the session's private server). Tasks are created through the service with a
clock an hour back, so their first slot is long past; heartbeats, worker queues and broker
lists are written as beats, workers and the beat's publish write them. Each look gets its
`now_ms`; `_look` clears the watch lock first, as the end of a period does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskdispatch.domain.liveness import ALIVE_MS
from taskdispatch.engine import conditions
from taskdispatch.engine.conditions import watch_conditions
from taskdispatch.engine.handlers import RunContext
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from taskdispatch.store.notifications import notification_from_body
from tests.support.probes import add_probe_task, now_ms
from tests.support.runner import message_for, runner_for

KEYS = Keys("td:")
HOUR_MS = 3_600_000
INTERVAL_S = 60
PERIOD_MS = 5_000
KINDS = {
    "task.overdue",
    "task.caught_up",
    "queue.unserved",
    "queue.served",
    "beat.down",
    "beat.up",
    "worker.down",
    "worker.up",
}


@pytest.fixture(params=[True, False], ids=["text", "bytes"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """A sync client of the session Redis, decoding replies or not."""
    c = redis.Redis.from_url(redis_url, decode_responses=request.param)
    yield c
    c.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix="td:")


def _dispatcher(settings: Settings, *, at_ms: int) -> TaskDispatcher:
    return TaskDispatcher(settings, clock=lambda: at_ms, task_types={"probe"})


async def _late_task(settings: Settings, account: str, *, now: int, **fields: Any) -> str:
    """A task created an hour before `now` with a one-minute interval: its first slot is
    59 minutes past."""
    async with _dispatcher(settings, at_ms=now - HOUR_MS) as d:
        return await add_probe_task(d, account, interval=INTERVAL_S, **fields)


def _notify(client: redis.Redis, name: str = "ops", **body: Any) -> None:
    """Configure a notification as the notifications resource stores it."""
    body = {"url": "http://127.0.0.1:9/hook", "events": ["task.overdue"], **body}
    notification = notification_from_body(name, body, now_ms=now_ms(), current=None)
    client.hset(KEYS.notifications(), name, notification.to_json())


def _alive(client: redis.Redis, now: int, *, workers: dict[str, str] | None = None) -> None:
    """A beat's heartbeat at `now`, and one for each worker (hostname -> its queues)."""
    client.zadd(KEYS.beats(), {"beat-1": now})
    for host, queues in (workers or {}).items():
        client.zadd(KEYS.workers(), {host: now})
        client.hset(KEYS.worker_queues(), host, queues)


def _look(client: redis.Redis, settings: Settings, now: int) -> int:
    client.delete(KEYS.notify_watch_lock())
    return watch_conditions(client, KEYS, settings, now_ms=now)


def _events(client: redis.Redis, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """The condition events on the events stream, oldest first (those of `prefix`)."""
    out = []
    for _, entry in client.xrange(KEYS.events()):
        fields = {_s(k): _s(v) for k, v in entry.items()}
        if fields["type"] in KINDS and fields["type"].startswith(prefix):
            out.append((fields["type"], json.loads(fields["data"])))
    return out


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_watch_conditions_without_notifications_watches_nothing(
    client: redis.Redis, settings: Settings
) -> None:
    """No notification configured: a late task and no beat give no event and no state."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    assert _look(client, settings, now) == 0
    assert _events(client) == []
    assert not client.exists(KEYS.notify_conditions(), KEYS.notify_watch())


def test_watch_conditions_without_notifications_takes_no_lock_and_writes_nothing(
    client: redis.Redis, settings: Settings
) -> None:
    """No notification and no state: a look reads, and leaves the store exactly as it was."""
    client.config_resetstat()
    assert watch_conditions(client, KEYS, settings, now_ms=now_ms()) == 0
    assert not client.exists(KEYS.notify_watch_lock())
    written = ("set", "hset", "del", "eval", "evalsha", "xadd")
    assert sum(_command_calls(client, command) for command in written) == 0


async def test_watch_conditions_late_pending_task_opens_task_overdue(
    client: redis.Redis, settings: Settings
) -> None:
    """A pending task whose slot is past the threshold gives task.overdue with its task id,
    account, routed queue and how late it is."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now, queue="dev-c")
    _notify(client)
    _alive(client, now)
    assert _look(client, settings, now) == 1
    [(kind, data)] = _events(client)
    assert kind == "task.overdue"
    assert data == {
        "task_id": task_id,
        "account_id": "acct-1",
        "queue": "dev-c",
        "overdue_s": (HOUR_MS - INTERVAL_S * 1000) // 1000,
    }


async def test_watch_conditions_task_overdue_is_not_repeated_while_it_lasts(
    client: redis.Redis, settings: Settings
) -> None:
    """Later looks while the task stays late add nothing."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client)
    for n in range(3):
        _alive(client, now + n * PERIOD_MS)
        _look(client, settings, now + n * PERIOD_MS)
    assert [kind for kind, _ in _events(client)] == ["task.overdue"]


async def test_watch_conditions_task_within_threshold_is_not_overdue(
    client: redis.Redis, settings: Settings
) -> None:
    """A slot 59 minutes past is not overdue for a threshold of an hour."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client, overdue_after_s=3600)
    _alive(client, now)
    assert _look(client, settings, now) == 0
    assert _events(client) == []


async def test_watch_conditions_threshold_is_the_smallest_of_the_notifications(
    client: redis.Redis, settings: Settings
) -> None:
    """With thresholds of two hours and of ten minutes, the 59-minute-late task is overdue."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client, "slow", overdue_after_s=7200)
    _notify(client, "fast", overdue_after_s=600)
    _alive(client, now)
    _look(client, settings, now)
    assert [kind for kind, _ in _events(client)] == ["task.overdue"]


async def test_watch_conditions_overdue_task_is_announced_again_as_it_crosses_a_larger_threshold(
    client: redis.Redis, settings: Settings
) -> None:
    """Thresholds of 60 s and 300 s: task.overdue at 120 s late, again at 310 s (the second
    threshold crossed), and not in between or after."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client, "fast", overdue_after_s=60)
    _notify(client, "slow", overdue_after_s=300)
    slot = _first_slot(now)
    for late_s in (120, 200, 310, 400):
        _alive(client, slot + late_s * 1000)
        _look(client, settings, slot + late_s * 1000)
    assert [(k, d["overdue_s"]) for k, d in _events(client)] == [
        ("task.overdue", 120),
        ("task.overdue", 310),
    ]


async def test_watch_conditions_task_past_every_threshold_at_once_is_announced_once(
    client: redis.Redis, settings: Settings
) -> None:
    """A task first seen past both thresholds (60 s and 300 s) is announced once."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client, "fast", overdue_after_s=60)
    _notify(client, "slow", overdue_after_s=300)
    for n in range(3):
        _alive(client, now + n * PERIOD_MS)
        _look(client, settings, now + n * PERIOD_MS)
    assert [kind for kind, _ in _events(client)] == ["task.overdue"]


async def test_watch_conditions_notification_added_while_a_task_is_overdue_gets_it_again(
    client: redis.Redis, settings: Settings
) -> None:
    """A task announced for a 300 s threshold is announced again when a notification asking
    for task.overdue is added, even with a smaller threshold; one asking for other events
    is not a reason to."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client, "first", overdue_after_s=300)
    _alive(client, now)
    _look(client, settings, now)
    _notify(client, "beats", events=["beat.down"], overdue_after_s=60)
    _alive(client, now + PERIOD_MS)
    assert _look(client, settings, now + PERIOD_MS) == 0
    _notify(client, "added", overdue_after_s=60)
    _alive(client, now + 2 * PERIOD_MS)
    _look(client, settings, now + 2 * PERIOD_MS)
    assert [kind for kind, _ in _events(client)] == ["task.overdue", "task.overdue"]


async def test_watch_conditions_task_overdue_announced_again_closes_once_since_it_began(
    client: redis.Redis, settings: Settings
) -> None:
    """An overdue task announced at 120 s and 310 s late, then paused: one task.caught_up,
    whose since_ms is the first announcement's look."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now)
    _notify(client, "fast", overdue_after_s=60)
    _notify(client, "slow", overdue_after_s=300)
    slot = _first_slot(now)
    for late_s in (120, 310):
        _alive(client, slot + late_s * 1000)
        _look(client, settings, slot + late_s * 1000)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.pause_task(task_id)
    for late_s in (320, 330):
        _alive(client, slot + late_s * 1000)
        _look(client, settings, slot + late_s * 1000)
    [(kind, data)] = _events(client)[2:]
    assert (kind, data["since_ms"]) == ("task.caught_up", slot + 120_000)


async def test_watch_conditions_task_overdue_closes_with_caught_up_when_its_round_starts(
    client: redis.Redis, settings: Settings
) -> None:
    """A look made while the late task's round runs closes the condition: task.caught_up,
    reason cleared, with the task and when the condition began."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _alive(client, now)
    _look(client, settings, now)
    looked: list[int] = []

    def handler(ctx: RunContext) -> None:
        _alive(client, now + PERIOD_MS)
        looked.append(_look(client, settings, now + PERIOD_MS))

    run, runner_client = runner_for(settings.redis_url, handler)
    try:
        assert run.run(message_for(runner_client, task_id))["outcome"] == "ok"
    finally:
        run.lease_redis.close()
        runner_client.close()
    assert looked == [1]
    [_, (kind, data)] = _events(client)
    assert kind == "task.caught_up"
    assert data == {
        "task_id": task_id,
        "account_id": "acct-1",
        "queue": "celery",
        "reason": "cleared",
        "since_ms": now,
    }


async def test_watch_conditions_paused_task_is_not_overdue(
    client: redis.Redis, settings: Settings
) -> None:
    """A paused task with a slot long past gives no task.overdue."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.pause_task(task_id)
    _notify(client)
    _alive(client, now)
    _look(client, settings, now)
    assert _events(client) == []


async def test_watch_conditions_pausing_an_overdue_task_closes_it_reason_paused(
    client: redis.Redis, settings: Settings
) -> None:
    """The operator pausing an overdue task closes its condition: task.caught_up, paused."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _alive(client, now)
    _look(client, settings, now)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.pause_task(task_id)
    _look(client, settings, now + PERIOD_MS)
    assert [(k, d["reason"]) for k, d in _events(client)[1:]] == [("task.caught_up", "paused")]


async def test_watch_conditions_deleting_an_overdue_task_closes_it_naming_its_account(
    client: redis.Redis, settings: Settings
) -> None:
    """A deleted overdue task's condition closes with reason deleted and its account."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _alive(client, now)
    _look(client, settings, now)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.delete_task(task_id)
    _look(client, settings, now + PERIOD_MS)
    [(kind, data)] = _events(client)[1:]
    assert (kind, data["task_id"], data["account_id"], data["reason"]) == (
        "task.caught_up",
        task_id,
        "acct-1",
        "deleted",
    )


async def test_watch_conditions_stopped_dispatcher_gives_no_condition(
    client: redis.Redis, settings: Settings
) -> None:
    """With the dispatcher stopped, a late task and no live beat give no event."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.stop()
    _notify(client)
    assert _look(client, settings, now) == 0
    assert _events(client) == []


async def test_watch_conditions_stopping_the_dispatcher_closes_every_open_condition(
    client: redis.Redis, settings: Settings
) -> None:
    """An open task.overdue and beat.down close with reason dispatcher_stopped."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _look(client, settings, now)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.stop()
    _look(client, settings, now + PERIOD_MS)
    closed = {(k, d["reason"]) for k, d in _events(client)[2:]}
    assert closed == {("task.caught_up", "dispatcher_stopped"), ("beat.up", "dispatcher_stopped")}


async def test_watch_conditions_slots_crossing_while_stopped_are_found_once_started(
    client: redis.Redis, settings: Settings
) -> None:
    """A task whose slot went past the threshold while the dispatcher was stopped is
    overdue once the dispatcher is on again (the cursor waited)."""
    now = now_ms()
    _notify(client, overdue_after_s=3600)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.stop()
    await _late_task(settings, "acct-1", now=now)
    _alive(client, now)
    _look(client, settings, now)
    _look(client, settings, now + 2 * INTERVAL_S * 1000)
    async with _dispatcher(settings, at_ms=now) as d:
        await d.start()
    later = now + 3 * INTERVAL_S * 1000
    _alive(client, later)
    _look(client, settings, later)
    assert [kind for kind, _ in _events(client)] == ["task.overdue"]


def test_watch_conditions_no_live_beat_opens_beat_down_once_and_closes_with_beat_up(
    client: redis.Redis, settings: Settings
) -> None:
    """A beat heartbeat older than ALIVE_MS gives beat.down (with that heartbeat) once; a
    fresh one gives beat.up, reason cleared."""
    now = now_ms()
    _notify(client)
    client.zadd(KEYS.beats(), {"beat-1": now - ALIVE_MS - 1})
    _look(client, settings, now)
    _look(client, settings, now + PERIOD_MS)
    client.zadd(KEYS.beats(), {"beat-2": now + 2 * PERIOD_MS})
    _look(client, settings, now + 2 * PERIOD_MS)
    assert _events(client) == [
        ("beat.down", {"last_beat_ms": now - ALIVE_MS - 1}),
        ("beat.up", {"reason": "cleared", "since_ms": now}),
    ]


def test_watch_conditions_worker_going_stale_opens_worker_down_and_back_worker_up(
    client: redis.Redis, settings: Settings
) -> None:
    """A worker alive at one look and stale at the next gives worker.down (hostname, last
    heartbeat, queues) once; its heartbeat fresh again gives worker.up."""
    now = now_ms()
    _notify(client)
    _alive(client, now, workers={"w1@h": "celery,dev-a"})
    _look(client, settings, now)
    later = now + ALIVE_MS + 1
    client.zadd(KEYS.beats(), {"beat-1": later})
    _look(client, settings, later)
    _look(client, settings, later + PERIOD_MS)
    client.zadd(KEYS.workers(), {"w1@h": later + 2 * PERIOD_MS})
    _look(client, settings, later + 2 * PERIOD_MS)
    assert _events(client, "worker.") == [
        ("worker.down", {"hostname": "w1@h", "last_seen_ms": now, "queues": ["celery", "dev-a"]}),
        ("worker.up", {"hostname": "w1@h", "reason": "cleared", "since_ms": later}),
    ]


def test_watch_conditions_worker_withdrawn_by_a_clean_shutdown_is_not_down(
    client: redis.Redis, settings: Settings
) -> None:
    """A worker that removed its heartbeat on a warm shutdown gives no worker.down."""
    now = now_ms()
    _notify(client)
    _alive(client, now, workers={"w1@h": "celery"})
    _look(client, settings, now)
    client.zrem(KEYS.workers(), "w1@h")
    later = now + ALIVE_MS + 1
    client.zadd(KEYS.beats(), {"beat-1": later})
    _look(client, settings, later)
    assert _events(client, "worker.") == []


def test_watch_conditions_dead_worker_whose_heartbeat_is_trimmed_closes_forgotten(
    client: redis.Redis, settings: Settings
) -> None:
    """An open worker.down whose heartbeat left the fleet's set closes: reason forgotten."""
    now = now_ms()
    _notify(client)
    _alive(client, now, workers={"w1@h": "celery"})
    _look(client, settings, now)
    later = now + ALIVE_MS + 1
    client.zadd(KEYS.beats(), {"beat-1": later})
    _look(client, settings, later)
    client.zrem(KEYS.workers(), "w1@h")
    _look(client, settings, later + PERIOD_MS)
    assert [(k, d.get("reason")) for k, d in _events(client, "worker.")] == [
        ("worker.down", None),
        ("worker.up", "forgotten"),
    ]


def test_watch_conditions_messages_in_a_queue_nobody_consumes_open_queue_unserved(
    client: redis.Redis, settings: Settings
) -> None:
    """Two messages in dev-c, published to and consumed by no live worker, give
    queue.unserved naming dev-c once; a worker consuming dev-c gives queue.served."""
    now = now_ms()
    _notify(client)
    _alive(client, now, workers={"w1@h": "celery"})
    client.sadd(KEYS.published_queues(), "celery", "dev-c")
    client.lpush("dev-c", "m1", "m2")
    client.lpush("celery", "m3")
    _look(client, settings, now)
    _look(client, settings, now + PERIOD_MS)
    _alive(client, now + 2 * PERIOD_MS, workers={"w2@h": "dev-c"})
    _look(client, settings, now + 2 * PERIOD_MS)
    assert _events(client, "queue.") == [
        ("queue.unserved", {"queue": "dev-c", "messages": 2}),
        ("queue.served", {"queue": "dev-c", "reason": "cleared", "since_ms": now}),
    ]


def test_watch_conditions_empty_unconsumed_queue_is_served(
    client: redis.Redis, settings: Settings
) -> None:
    """A published queue nobody consumes but without messages gives nothing."""
    now = now_ms()
    _notify(client)
    _alive(client, now)
    client.sadd(KEYS.published_queues(), "dev-c")
    _look(client, settings, now)
    assert _events(client) == []


async def test_watch_conditions_second_call_within_the_period_returns_zero(
    client: redis.Redis, settings: Settings
) -> None:
    """The watch lock: a call before the period ended looks at nothing, whatever changed."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _alive(client, now)
    assert watch_conditions(client, KEYS, settings, now_ms=now) == 1
    client.zadd(KEYS.beats(), {"beat-1": now - ALIVE_MS - 1})
    assert watch_conditions(client, KEYS, settings, now_ms=now + PERIOD_MS) == 0
    assert 0 < client.pttl(KEYS.notify_watch_lock()) <= PERIOD_MS


async def test_watch_conditions_look_racing_another_writes_nothing(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two looks that read the same state (the lock expired under a slow one): the one that
    writes second adds no event, so the task is announced once."""
    now = now_ms()
    await _late_task(settings, "acct-1", now=now)
    _notify(client)
    _alive(client, now)
    commit = conditions._commit

    def racing_commit(*args: Any, **kwargs: Any) -> int:
        # The other look runs whole (with the real commit) before this one writes.
        monkeypatch.setattr(conditions, "_commit", commit)
        assert _look(client, settings, now) == 1
        return commit(*args, **kwargs)

    monkeypatch.setattr(conditions, "_commit", racing_commit)
    assert _look(client, settings, now) == 0
    assert [kind for kind, _ in _events(client)] == ["task.overdue"]


async def test_watch_conditions_reads_no_task_whose_slot_is_not_overdue(
    client: redis.Redis, settings: Settings
) -> None:
    """10,000 stored tasks with future slots and one late task: a look reads one task hash."""
    now = now_ms()
    task_id = await _late_task(settings, "acct-late", now=now)
    with client.pipeline(transaction=False) as pipe:
        for n in range(10_000):
            pipe.hset(KEYS.task(f"t{n}"), mapping={"status": "pending", "next_ms": now + 60_000})
            pipe.zadd(KEYS.next_runs(), {f"t{n}": now + 60_000 + n})
        pipe.execute()
    _notify(client)
    _alive(client, now)
    client.config_resetstat()
    _look(client, settings, now)
    assert _command_calls(client, "hmget") == 1
    assert [d["task_id"] for _, d in _events(client)] == [task_id]


async def test_watch_conditions_old_slots_of_paused_tasks_are_read_once(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused tasks with slots long past are read once, a page per look; after that pass a
    look reads only the slots that crossed the threshold since the last one."""
    monkeypatch.setattr(conditions, "SCAN_PAGE", 2)
    now = now_ms()
    async with _dispatcher(settings, at_ms=now) as d:
        for n in range(5):
            await d.pause_task(await _late_task(settings, f"acct-{n}", now=now))
    _notify(client)
    reads = []
    for n in range(5):
        _alive(client, now + n * PERIOD_MS)
        client.config_resetstat()
        _look(client, settings, now + n * PERIOD_MS)
        reads.append(_command_calls(client, "hmget"))
    assert reads == [2, 2, 1, 0, 0]
    assert _events(client) == []


async def test_watch_conditions_more_overdue_tasks_than_a_page_are_each_announced_once(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven late tasks whose slots fall on three instants (three, three, one), two per
    page: successive looks announce each once."""
    monkeypatch.setattr(conditions, "SCAN_PAGE", 2)
    now = now_ms()
    ids = {await _late_task(settings, f"acct-{n}", now=now + n // 3 * 1000) for n in range(7)}
    _notify(client)
    for n in range(8):
        _alive(client, now + n * PERIOD_MS)
        _look(client, settings, now + n * PERIOD_MS)
    announced = [d["task_id"] for _, d in _events(client)]
    assert sorted(announced) == sorted(ids)


def test_watch_conditions_without_notifications_forgets_open_conditions(
    client: redis.Redis, settings: Settings
) -> None:
    """Deleting the last notification drops the watcher's state without any event."""
    now = now_ms()
    _notify(client)
    _look(client, settings, now)
    client.delete(KEYS.notifications())
    assert _look(client, settings, now + PERIOD_MS) == 0
    assert [kind for kind, _ in _events(client)] == ["beat.down"]
    assert not client.exists(KEYS.notify_conditions(), KEYS.notify_watch())


def _first_slot(now: int) -> int:
    """The first slot of a task `_late_task` created for `now`."""
    return now - HOUR_MS + INTERVAL_S * 1000


def _command_calls(client: redis.Redis, command: str) -> int:
    """How many times Redis ran `command` since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
