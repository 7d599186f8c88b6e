"""Alerts end to end: real beats, workers and API processes deliver to a receiver of the
test's own (a local HTTP server), once per event, grouped, signed, through failures of the
receiver and the death of the process delivering."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskdispatch.domain.bodies import TaskChange
from taskdispatch.engine.notifier import save_notification
from taskdispatch.engine.notify_formats import signature
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import ApiProcess
from tests.support.probes import add_probe_task, holds_for, now_ms, wait_until
from tests.support.receiver import Receiver
from tests.support.stack import Stack, e2e_env

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-0123456789"
# The first retry 1 s after a failure.
FAST_RETRY = {"TASKDISPATCH_NOTIFY_BACKOFF_S": "1"}
# Conditions looked for every 0.5 s; a task.overdue for a slot 2 s late (the threshold is
# at least 1 s). A condition's message arrives within a watcher period and a few notifier
# iterations (1 s each) of the moment it holds.
WATCH_OFTEN = {"TASKDISPATCH_NOTIFY_WATCH_EVERY_S": "0.5"}
OVERDUE_AFTER_S = 2
CONDITION_SLACK_S = 10.0


async def notify(d: TaskDispatcher, url: str, **fields: Any) -> None:
    """Define notification `ops` as PUT /api/v1/notifications/ops does."""
    body = {"url": url, "events": ["task.error"], "group_window_s": 0, **fields}
    await save_notification(d.redis, d.keys, "ops", body, now_ms=now_ms())


async def failing_task(d: TaskDispatcher, account: str) -> str:
    """A probe task whose every round fails (error after max_consecutive_failures = 3)."""
    return await add_probe_task(d, account, kwargs={"error": f"login expired ({account})"})


def named(received: list[Any]) -> Counter[tuple[str, str]]:
    """(event, account_id) of every task the delivered messages name, counted."""
    return Counter((r.event, task["account_id"]) for r in received for task in r.json()["tasks"])


def of_event(receiver: Receiver, event: str) -> list[Any]:
    """The delivered messages of `event`."""
    return [r for r in receiver.delivered() if r.event == event]


def ran(s: Stack, task_id: str) -> bool:
    """Whether a round of the task started (the probe handler's own record)."""
    return any(x["task_id"] == task_id for x in s.view.probe_starts())


async def test_task_entering_error_is_delivered_once_with_a_signature_that_verifies(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """A task going to error reaches the receiver once: its account, its last error, its
    delivery id, and an HMAC-SHA256 signature of the raw body that verifies."""
    s = stack(workers=1, beats=1)
    with Receiver() as receiver:
        await notify(dispatcher, receiver.url, secret=SECRET)
        task_id = await failing_task(dispatcher, "acct-err")
        [got] = wait_until(receiver.delivered, timeout_s=30, message="the task.error alert")
        assert got.headers["x-taskdispatch-signature"] == signature(SECRET, got.body)
        body = got.json()
        assert (got.event, body["event"], body["count"]) == ("task.error", "task.error", 1)
        [task] = body["tasks"]
        assert (task["task_id"], task["account_id"], task["status"]) == (
            task_id,
            "acct-err",
            "error",
        )
        assert "login expired (acct-err)" in task["last_error"]
        assert body["delivery_id"] == got.delivery_id and len(got.delivery_id) == 32
        assert s.view.task(task_id).status == "error"
        holds_for(lambda: len(receiver.received()) == 1, duration_s=3, message="one message")


async def test_receiver_failing_first_gets_the_event_later_with_the_same_delivery_id(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """Two 503s, then a 2xx: the same message, with the same delivery id, three times."""
    stack(workers=1, beats=1, env=FAST_RETRY)
    with Receiver() as receiver:
        receiver.fail_next(503, 503)
        await notify(dispatcher, receiver.url)
        await failing_task(dispatcher, "acct-retry")
        wait_until(receiver.delivered, timeout_s=40, message="the alert after two 503s")
        attempts = receiver.received()
        assert [r.status for r in attempts] == [503, 503, 200]
        assert len({r.delivery_id for r in attempts}) == 1
        assert len({r.body for r in attempts}) == 1
        assert attempts[2].at_ms - attempts[1].at_ms >= 1000  # backed off
        holds_for(lambda: len(receiver.received()) == 3, duration_s=2, message="no more")


async def test_two_beats_and_two_workers_deliver_each_event_exactly_once(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """Five tasks go to error, are resumed and go to error again, three times over, with
    two beats and two workers (four senders): each error and each recovery of each task
    is named by exactly one delivered message, and no message is delivered twice, though
    the receiver fails the first attempts (retried by whichever sender claims them)."""
    s = stack(workers=2, beats=2, env=FAST_RETRY)
    accounts = [f"acct-{n}" for n in range(5)]
    with Receiver() as receiver:
        receiver.fail_next(503, 503, 503)
        await notify(dispatcher, receiver.url, events=["task.error", "task.recovered"])
        ids = [await failing_task(dispatcher, a) for a in accounts]
        for cycle in range(3):
            if cycle:
                for task_id in ids:
                    await dispatcher.resume_task(task_id)
            wait_until(
                lambda: all(s.view.task(t).status == "error" for t in ids),
                timeout_s=30,
                message=f"every task in error (cycle {cycle + 1})",
            )
        expected = Counter(
            {
                **{("task.error", a): 3 for a in accounts},
                **{("task.recovered", a): 2 for a in accounts},
            }
        )
        wait_until(
            lambda: named(receiver.delivered()) == expected,
            timeout_s=20,
            message="every error and recovery delivered",
        )
        holds_for(
            lambda: named(receiver.delivered()) == expected, duration_s=4, message="nothing more"
        )
        delivered = receiver.delivered()
    assert len({r.delivery_id for r in delivered}) == len(delivered)
    assert all(r.json()["count"] == len(r.json()["tasks"]) for r in delivered)


async def test_forty_accounts_failing_together_arrive_in_at_most_four_messages(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """40 tasks erring within seconds of each other, grouped over 10 s: at most four
    messages, which together name all 40 accounts once each, their counts adding up."""
    s = stack(workers=2, beats=1, concurrency=4)
    accounts = [f"acct-{n:02d}" for n in range(40)]
    with Receiver() as receiver:
        await notify(dispatcher, receiver.url, group_window_s=10)
        ids = [await failing_task(dispatcher, a) for a in accounts]
        wait_until(
            lambda: all(s.view.task(t).status == "error" for t in ids),
            timeout_s=40,
            message="all 40 in error",
        )
        wait_until(
            lambda: sum(named(receiver.delivered()).values()) == 40,
            timeout_s=20,
            message="all 40 named",
        )
        delivered = receiver.delivered()
    assert len(delivered) <= 4
    assert named(delivered) == Counter({("task.error", a): 1 for a in accounts})
    assert sum(r.json()["count"] for r in delivered) == 40
    assert all("个账户的任务进入错误状态" in r.json()["text"] for r in delivered)


async def test_sender_killed_mid_retry_loses_no_event(
    stack: Any, dispatcher: TaskDispatcher, tmp_path: Path
) -> None:
    """The only sender (a beat) gets a 503, retries, and is SIGKILLed while its POST waits
    for an answer; an API process started afterwards delivers the same message (same
    delivery id) once the dead sender's claim expired."""
    env = {**FAST_RETRY, "TASKDISPATCH_NOTIFY_CLAIM_S": "6"}
    s = stack(workers=1, beats=1, env=env)
    with Receiver() as receiver:
        receiver.fail_next(503)
        await notify(dispatcher, receiver.url)
        await failing_task(dispatcher, "acct-kill")
        [first] = wait_until(receiver.received, timeout_s=30, message="the first attempt")
        receiver.hold_next()
        wait_until(lambda: len(receiver.received()) == 2, timeout_s=10, message="the retry")
        s.beats[0].kill()  # while the retry waits for its answer
        assert receiver.delivered() == []
        with ApiProcess(s.env, tmp_path / "api.log"):
            [done] = wait_until(receiver.delivered, timeout_s=30, message="the alert")
        assert done.delivery_id == receiver.received()[1].delivery_id == first.delivery_id
        assert done.json()["tasks"][0]["account_id"] == "acct-kill"


async def test_test_endpoint_of_a_running_api_delivers_and_records(
    redis_url: str, tmp_path: Path
) -> None:
    """PUT a notification and POST /test through a real API process: the receiver gets the
    `test` event with the answered delivery id, and GET shows the attempt delivered."""
    with Receiver() as receiver, ApiProcess(e2e_env(redis_url), tmp_path / "api.log") as api:
        base = f"{api.base_url}/api/v1/notifications/ops"
        body = {"url": receiver.url, "events": ["task.error"], "format": "slack"}
        assert httpx.put(base, json=body, timeout=10).status_code == 200
        answer = httpx.post(f"{base}/test", timeout=10).json()
        [got] = wait_until(receiver.delivered, timeout_s=10, message="the test message")
        assert (got.event, got.delivery_id) == ("test", answer["delivery_id"])
        assert json.loads(got.body)["text"].startswith(
            "*这是 taskdispatch 发给通知 ops 的测试消息*"
        )

        def recorded() -> list[dict[str, Any]]:
            return list(httpx.get(base, timeout=10).json()["recent_deliveries"])

        [attempt] = wait_until(recorded, timeout_s=10, message="the recorded attempt")
        assert (attempt["delivery_id"], attempt["outcome"]) == (answer["delivery_id"], "delivered")


async def test_task_on_a_queue_without_worker_is_delivered_overdue_then_caught_up_once_moved(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """A task on dev-nobody, which no worker consumes: task.overdue naming it reaches the
    receiver once its slot is 2 s late, within a few watcher periods; moved back to the
    default queue (queue null), it runs, and task.caught_up naming it follows."""
    s = stack(workers=1, beats=1, env=WATCH_OFTEN)
    with Receiver() as receiver:
        events = ["task.overdue", "task.caught_up"]
        await notify(dispatcher, receiver.url, events=events, overdue_after_s=OVERDUE_AFTER_S)
        task_id = await add_probe_task(dispatcher, "acct-stranded", queue="dev-nobody")
        slot_ms = s.view.task(task_id).next_ms
        [overdue] = wait_until(
            lambda: of_event(receiver, "task.overdue"),
            timeout_s=1 + OVERDUE_AFTER_S + CONDITION_SLACK_S,
            message="the task.overdue alert",
        )
        assert overdue.at_ms >= slot_ms + OVERDUE_AFTER_S * 1000
        [task] = overdue.json()["tasks"]
        assert (task["task_id"], task["account_id"], task["queue"]) == (
            task_id,
            "acct-stranded",
            "dev-nobody",
        )
        assert not ran(s, task_id)
        await dispatcher.update_task(task_id, TaskChange(queue=None))
        [caught_up] = wait_until(
            lambda: of_event(receiver, "task.caught_up"),
            timeout_s=CONDITION_SLACK_S,
            message="the task.caught_up alert",
        )
        assert [t["task_id"] for t in caught_up.json()["tasks"]] == [task_id]
        assert ran(s, task_id)
