"""Specification of cancelling a round: the API's cancel, Celery's revoke of a queued round,
a worker that dies while stopping one, and the race with the round's own end.

Real Redis (the session's private server); rounds run in a thread of the test's process,
where the guard interrupts a handler by an asynchronous exception, so the handlers here
wait in short sleeps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from taskdispatch.domain.exceptions import TaskConflictError
from taskdispatch.domain.models import TaskStatus
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.lease import RoundCancelled
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task, stored_task, wait_until
from tests.support.runner import message_for, runner_for

KEYS = Keys("td:")
INTERVAL_S = 3600

Runner = Callable[..., tuple[RoundRunner, redis.Redis]]


@pytest.fixture
def runner(redis_url: str) -> Iterator[Runner]:
    """`runner(handler, **settings)`: an in-process runner, its clients closed at teardown."""
    made: list[tuple[RoundRunner, redis.Redis]] = []

    def factory(handler: Callable[[RunContext], Any], **settings: Any) -> tuple[RoundRunner, Any]:
        pair = runner_for(redis_url, handler, **settings)
        made.append(pair)
        return pair

    yield factory
    for round_runner, client in made:
        round_runner.lease_redis.close()
        client.close()


def _dispatcher(url: str, actor: str = "ops-alice") -> TaskDispatcher:
    settings = Settings(redis_url=url, key_prefix="td:")
    return TaskDispatcher(settings, task_types={"probe", "noop"}, actor=actor)


async def _due_task(url: str, account: str) -> str:
    async with _dispatcher(url) as d:
        task_id = await add_probe_task(d, account, interval=INTERVAL_S)
        await d.run_now(task_id)
        return task_id


def _runs(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """History records, oldest first."""
    return [json.loads(x) for x in reversed(client.lrange(KEYS.runs(task_id), 0, -1))]


class Stuck:
    """A handler that waits until released, recording what reached it."""

    def __init__(self, *, ignore_cancel: bool = False) -> None:
        self.marks: list[str] = []
        self.release = threading.Event()
        self.ignore_cancel = ignore_cancel

    def __call__(self, ctx: RunContext) -> dict[str, str]:
        self.marks.append("started")
        try:
            while not self.release.is_set():
                try:
                    time.sleep(0.02)
                except RoundCancelled:
                    self.marks.append("cancelled")
                    if not self.ignore_cancel:
                        raise
            return {"ended": "released"}
        finally:
            self.marks.append("finally")


def _run_in_thread(run: RoundRunner, msg: RoundMessage) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(run.run(msg)), daemon=True)
    thread.start()
    return thread, out


async def _running(url: str, runner: Runner, handler: Stuck, **settings: Any) -> tuple[Any, ...]:
    """A due task whose round runs `handler` in a thread, once the round has started."""
    task_id = await _due_task(url, f"acct-{id(handler)}")
    run, client = runner(handler, **settings)
    msg = message_for(client, task_id)
    thread, out = _run_in_thread(run, msg)
    wait_until(lambda: "started" in handler.marks, timeout_s=10, message="the round to start")
    return task_id, client, msg, thread, out


async def test_cancel_of_a_running_round_interrupts_its_handler_inside(
    redis_url: str, runner: Runner
) -> None:
    """The handler gets RoundCancelled where it waits, and its finally runs."""
    handler = Stuck()
    task_id, _, _, thread, out = await _running(redis_url, runner, handler)
    async with _dispatcher(redis_url) as d:
        await d.cancel_round(task_id)
    thread.join(10)
    assert handler.marks == ["started", "cancelled", "finally"]
    assert out[0]["outcome"] == "cancelled"


async def test_cancel_records_the_round_cancelled_with_its_actor_and_note(
    redis_url: str, runner: Runner
) -> None:
    """One record, outcome cancelled, naming who stopped it and why; no error."""
    handler = Stuck()
    task_id, client, msg, thread, _ = await _running(redis_url, runner, handler)
    async with _dispatcher(redis_url, actor="ops-bob") as d:
        await d.cancel_round(task_id, note="captcha page")
    thread.join(10)
    [record] = _runs(client, task_id)
    assert record["outcome"] == "cancelled"
    assert (record["cancelled_by"], record["note"]) == ("ops-bob", "captcha page")
    assert record["scheduled_ms"] == msg.slot_ms
    assert record["error"] is None


async def test_cancel_then_next_keeps_the_schedule_without_a_failure(
    redis_url: str, runner: Runner
) -> None:
    """The task is pending at the slot after the cancelled one; failures stay 0."""
    handler = Stuck()
    task_id, client, msg, thread, _ = await _running(redis_url, runner, handler)
    async with _dispatcher(redis_url) as d:
        await d.cancel_round(task_id, then="next")
    thread.join(10)
    task = stored_task(client, task_id)
    assert task.status is TaskStatus.PENDING
    assert task.next_ms == msg.slot_ms + INTERVAL_S * 1000
    assert (task.failures, task.last_error, task.run_id, task.cancel_of) == (0, None, None, None)


async def test_cancel_then_pause_pauses_the_task_at_once(redis_url: str, runner: Runner) -> None:
    """The answer already says paused while the round stops; nothing is due afterwards."""
    handler = Stuck()
    task_id, client, _, thread, _ = await _running(redis_url, runner, handler)
    async with _dispatcher(redis_url) as d:
        asked = await d.cancel_round(task_id, then="pause", note="login expired")
    assert asked.status is TaskStatus.PAUSED
    assert asked.run_id is not None
    thread.join(10)
    task = stored_task(client, task_id)
    assert (task.status, task.pause_note) == (TaskStatus.PAUSED, "login expired")
    assert client.zscore(KEYS.due(), task_id) is None
    assert _runs(client, task_id)[-1]["outcome"] == "cancelled"


async def test_cancel_frees_the_account_lease_at_once(redis_url: str, runner: Runner) -> None:
    """Once the round ends the account's lock and its running entry are gone."""
    handler = Stuck()
    task_id, client, _, thread, _ = await _running(redis_url, runner, handler)
    account = stored_task(client, task_id).account_id
    async with _dispatcher(redis_url) as d:
        await d.cancel_round(task_id)
    thread.join(10)
    assert not client.exists(KEYS.lock(account))
    assert client.zscore(KEYS.running(), task_id) is None


async def test_cancel_without_a_running_round_is_a_conflict(redis_url: str) -> None:
    """A pending task has no round to stop: 409 (TaskConflictError), nothing written."""
    task_id = await _due_task(redis_url, "acct-idle")
    async with _dispatcher(redis_url) as d:
        before = await d.get_task(task_id)
        with pytest.raises(TaskConflictError) as caught:
            await d.cancel_round(task_id)
        assert caught.value.key == "cancel_not_running"
        assert await d.get_task(task_id) == before


async def test_cancel_landing_before_the_round_records_its_end_wins(
    redis_url: str, runner: Runner
) -> None:
    """A cancel that lands after the handler returned but before the final write makes the
    round cancelled (one record), the handler's result kept."""
    holder: list[RoundRunner] = []

    def returns_after_a_cancel(ctx: RunContext) -> dict[str, int]:
        holder[0].request_cancel(ctx.task_id, by="celery control revoke")
        return {"done": 1}

    task_id = await _due_task(redis_url, "acct-race")
    run, client = runner(returns_after_a_cancel)
    holder.append(run)
    summary = run.run(message_for(client, task_id))
    assert summary["outcome"] == "cancelled"
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["result"]) == ("cancelled", {"done": 1})
    assert stored_task(client, task_id).failures == 0


async def test_cancel_after_the_round_ended_is_a_conflict(redis_url: str, runner: Runner) -> None:
    """The round's end came first: the cancel finds nothing to stop and the round stays ok."""
    task_id = await _due_task(redis_url, "acct-late")
    run, client = runner(lambda ctx: {"done": 1})
    run.run(message_for(client, task_id))
    async with _dispatcher(redis_url) as d:
        with pytest.raises(TaskConflictError):
            await d.cancel_round(task_id)
    assert [r["outcome"] for r in _runs(client, task_id)] == ["ok"]


async def test_cancel_ignored_by_the_handler_is_recorded_after_the_grace(
    redis_url: str, runner: Runner
) -> None:
    """A handler that swallows RoundCancelled: after cancel_grace_s the round is recorded
    cancelled anyway (here no pool process can leave) and the account is free."""
    handler = Stuck(ignore_cancel=True)
    task_id, client, _, thread, _ = await _running(redis_url, runner, handler, cancel_grace_s=1)
    account = stored_task(client, task_id).account_id
    async with _dispatcher(redis_url) as d:
        await d.cancel_round(task_id)
    wait_until(lambda: _runs(client, task_id), timeout_s=10, message="the round's record")
    [record] = _runs(client, task_id)
    assert record["outcome"] == "cancelled"
    assert "ignored the cancel" in record["error"]
    assert not client.exists(KEYS.lock(account))
    handler.release.set()
    thread.join(10)
    assert [r["outcome"] for r in _runs(client, task_id)] == ["cancelled"]


async def test_revoke_of_a_queued_round_skips_its_slot_as_cancelled(
    redis_url: str, runner: Runner
) -> None:
    """The slot never runs: recorded cancelled (reason revoked), the task moves on."""
    task_id = await _due_task(redis_url, "acct-queued")
    run, client = runner(lambda ctx: {"ran": True})
    msg = message_for(client, task_id)
    assert run.cancel_queued(msg, by="celery control revoke") is True
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["reason"]) == ("cancelled", "revoked")
    assert record["cancelled_by"] == "celery control revoke"
    task = stored_task(client, task_id)
    assert (task.status, task.next_ms) == (TaskStatus.PENDING, msg.slot_ms + INTERVAL_S * 1000)
    # The revoked message, were it delivered anyway, no longer stands.
    assert run.run(msg)["outcome"] == "dropped"


async def test_revoke_of_a_stale_queued_message_changes_nothing(
    redis_url: str, runner: Runner
) -> None:
    """A message whose slot was already handled is not recorded again."""
    task_id = await _due_task(redis_url, "acct-stale")
    run, client = runner(lambda ctx: None)
    msg = message_for(client, task_id)
    run.run(msg)
    assert run.cancel_queued(msg, by="celery control revoke") is False
    assert [r["outcome"] for r in _runs(client, task_id)] == ["ok"]


async def test_recovery_of_a_cancelled_round_whose_worker_died_records_it_cancelled(
    redis_url: str, runner: Runner
) -> None:
    """A worker gone before recording a round it was asked to stop: recovery records it
    cancelled, not lost; no failure and no rerun of the slot."""
    handler = Stuck(ignore_cancel=True)
    # A grace longer than the test: the worker never records the round itself.
    task_id, client, msg, thread, _ = await _running(redis_url, runner, handler, cancel_grace_s=60)
    async with _dispatcher(redis_url) as d:
        await d.cancel_round(task_id, note="stuck")
    started = stored_task(client, task_id)
    # As a killed worker leaves it: no lock, its running entry expired.
    client.delete(KEYS.lock(started.account_id))
    later = int(time.time() * 1000) + 60_000
    keeper = Housekeeper(
        client, Settings(redis_url=redis_url, key_prefix="td:"), clock=lambda: later
    )
    assert keeper.recover_lost([task_id]) == 1
    [record] = _runs(client, task_id)
    assert (record["outcome"], record["note"]) == ("cancelled", "stuck")
    task = stored_task(client, task_id)
    assert (task.status, task.failures) == (TaskStatus.PENDING, 0)
    assert task.next_ms == msg.slot_ms + INTERVAL_S * 1000
    handler.release.set()
    thread.join(10)
