"""The beat's batched publish (RedisScheduler._publish) sends messages a real worker runs.

The scheduler claims due rounds and publishes them through one Redis pipeline instead of
one `send_task` per round. This proves, against a private Redis, that:

- the batch leaves in one round trip after the claim (2 round trips for the whole tick);
- each message has the shape of a message `app.send_task` would publish (same envelope,
  headers, properties and delivery info), and a `task-sent` event goes with it (all of a
  batch's events in one `task.multi` event message, as a worker sends its task events);
- a real `celery -A celery_app worker` (prefork) consumes and runs every round.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.engine.beat import ROUND_TASK, RedisScheduler
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.history import RunRecord
from taskdispatch.store.keys import Keys

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 12
RUN_TIMEOUT_S = 60.0
WORKER = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "prefork"]


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    # RedisScheduler and the worker read get_settings(): it must see the private Redis.
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


async def _create_due_tasks(settings: Settings, n: int) -> list[str]:
    async with TaskDispatcher(settings) as dispatcher:
        ids = []
        for i in range(n):
            task = await dispatcher.create_task(
                TaskSpec(
                    sys_type="mac_intel",
                    task_type="noop",
                    xhs_account_id=f"batch-{i}",
                    xhs_account_name=f"batch {i}",
                    interval=3600,
                    valid_time_range=[0, 24],
                )
            )
            await dispatcher.run_now(task.task_id)  # due now, not in an hour
            ids.append(task.task_id)
        return ids


class _RoundTrips:
    """Counts commands and pipelines written to any Redis socket of this process."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> _RoundTrips:
        from redis.connection import AbstractConnection

        self._cls = AbstractConnection
        self._orig = AbstractConnection.send_packed_command
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            counter._orig(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._cls.send_packed_command = self._orig  # type: ignore[method-assign]


def _shape(raw: bytes) -> dict[str, Any]:
    """The structure of a kombu Redis message: keys everywhere, values where they are fixed."""
    msg = json.loads(raw)
    return {
        "envelope": sorted(msg),
        "content": (msg["content-type"], msg["content-encoding"]),
        "headers": sorted(msg["headers"]),
        "task": msg["headers"]["task"],
        "timelimit": msg["headers"]["timelimit"],
        "properties": sorted(msg["properties"]),
        "delivery": {k: msg["properties"][k] for k in ("delivery_mode", "priority")},
        "delivery_info": msg["properties"]["delivery_info"],
        "body_encoding": msg["properties"]["body_encoding"],
    }


def test_batched_messages_are_celery_messages_a_worker_runs(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(redis_url)
    ids = asyncio.run(_create_due_tasks(settings, ROUNDS))
    queue = settings.default_queue

    app = create_celery_app(settings)
    # The reference: one message as Celery's own send_task publishes it, on the same queue.
    app.send_task(
        ROUND_TASK,
        kwargs={"task_id": "ref", "fence": 0, "slot_ms": 0, "account_id": "a", "task_type": "x"},
        queue=queue,
        soft_time_limit=settings.round_time_limit_s,
        time_limit=settings.round_time_limit_s + 30,
    )
    reference = client.rpop(queue)
    assert reference is not None

    events = client.pubsub()
    events.psubscribe("*celeryev*")
    events.get_message(timeout=1.0)  # the psubscribe confirmation

    scheduler = RedisScheduler(app=app, lazy=True)
    # The first dispatch also loads the claim script, connects and declares the queue.
    scheduler.dispatch_due()
    assert client.llen(queue) == ROUNDS
    # Once more, counted: make the claimed rounds due again (a new claim, a new fence).
    client.delete(queue)
    now_ms = time.time_ns() // 1_000_000
    client.zadd(keys.due(), {task_id: now_ms - 1 for task_id in ids})
    with _RoundTrips() as trips:
        scheduler.dispatch_due()
    assert trips.count == 2, "one claim script call and one publish pipeline"

    published = client.lrange(queue, 0, -1)
    assert len(published) == ROUNDS
    assert all(_shape(raw) == _shape(reference) for raw in published)
    # The task-sent events: one `task.multi` event message per batch, listing every round.
    sent: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(sent) < 2 * ROUNDS and time.monotonic() < deadline:
        message = events.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            envelope = json.loads(message["data"])
            assert envelope["properties"]["delivery_info"]["routing_key"] == "task.multi"
            sent.extend(json.loads(base64.b64decode(envelope["body"])))
    events.close()
    assert len(sent) == 2 * ROUNDS  # both dispatches sent theirs
    assert {e["type"] for e in sent} == {"task-sent"}
    assert {e["name"] for e in sent} == {ROUND_TASK}
    assert {e["queue"] for e in sent} == {queue}
    latest = {json.loads(raw)["headers"]["id"] for raw in published}
    assert latest <= {e["uuid"] for e in sent}

    log = tmp_path / "worker.log"
    env = {**os.environ, "TASKDISPATCH_REDIS_URL": redis_url}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*WORKER, "-c", "2", "-n", "batch-test@%h", "-Q", queue],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        outcomes = _wait_for_rounds(client, keys, ids, worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert outcomes == {task_id: "ok" for task_id in ids}, log.read_text()[-3000:]


def _wait_for_rounds(
    client: redis.Redis, keys: Keys, ids: list[str], worker: subprocess.Popen[bytes]
) -> dict[str, str]:
    """The outcome of each task's first recorded round, once all have one (or at timeout)."""
    outcomes: dict[str, str] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and worker.poll() is None:
        for task_id in ids:
            raw = client.lindex(keys.runs(task_id), -1)
            if raw is not None:
                outcomes[task_id] = RunRecord.from_json(raw.decode()).outcome
        if len(outcomes) == len(ids):
            break
        time.sleep(0.25)
    return outcomes
