"""Conditions with real processes: a task on a queue no worker consumes becomes
`task.overdue` and its queue `queue.unserved` (the watcher running in the beat); the only
beat killed gives `beat.down` and a new one `beat.up` (the watcher running in this
process's notifier loop, as in every API process: a dead beat cannot announce its death).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from taskdispatch.domain.liveness import ALIVE_MS
from taskdispatch.engine.notifier import NotifyLoop
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.notifications import put_notification
from tests.support.probes import add_probe_task, now_ms, wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ENV = {"TASKDISPATCH_NOTIFY_WATCH_EVERY_S": "0.5"}
OVERDUE_AFTER_S = 2
# The notifier loop runs every second; an event shows within a few of its iterations.
SLACK_S = 8.0


@contextmanager
def _api_notifier(settings: Settings) -> Iterator[None]:
    """The notifier loop (with the watcher) of an API process, in this process."""
    loop = NotifyLoop(settings)
    loop.start()
    try:
        yield
    finally:
        loop.stop()


def _events(s: Stack, kind: str) -> list[dict[str, Any]]:
    """The data of every `kind` event on the events stream, oldest first."""
    entries = s.redis.xrange(s.keys.events())
    return [json.loads(fields["data"]) for _, fields in entries if fields["type"] == kind]


async def _notify(dispatcher: TaskDispatcher, **body: Any) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["task.overdue"], **body}
    await put_notification(dispatcher.redis, dispatcher.keys, "ops", body, now_ms=now_ms())


async def test_conditions_task_on_a_queue_without_worker_is_overdue_and_its_queue_unserved(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """A task on dev-c, which no worker consumes: the beat's watcher announces task.overdue
    (naming dev-c) within its threshold and a few seconds, and queue.unserved for dev-c."""
    s: Stack = stack(workers=1, beats=1, queues="celery", env=ENV)
    await _notify(dispatcher, overdue_after_s=OVERDUE_AFTER_S)
    task_id = await add_probe_task(dispatcher, "acct-stranded", queue="dev-c")
    [overdue] = wait_until(
        lambda: _events(s, "task.overdue"),
        timeout_s=1 + OVERDUE_AFTER_S + SLACK_S,
        message="task.overdue",
    )
    [unserved] = wait_until(
        lambda: _events(s, "queue.unserved"), timeout_s=SLACK_S, message="queue.unserved"
    )
    assert (overdue["task_id"], overdue["account_id"], overdue["queue"]) == (
        task_id,
        "acct-stranded",
        "dev-c",
    )
    assert overdue["overdue_s"] >= OVERDUE_AFTER_S
    assert unserved["queue"] == "dev-c"
    assert unserved["messages"] >= 1


async def test_conditions_killing_the_only_beat_gives_beat_down_and_a_new_one_beat_up(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """The only beat SIGKILLed: beat.down once its heartbeat is stale (ALIVE_MS); a new
    beat: beat.up, reason cleared."""
    s: Stack = stack(workers=0, beats=1, env=ENV)
    await _notify(dispatcher)
    with _api_notifier(s.settings):
        wait_until(
            lambda: s.redis.hexists(s.keys.notify_watch(), "look_ms"),
            timeout_s=SLACK_S,
            message="a first look",
        )
        s.beats[0].kill()
        [down] = wait_until(
            lambda: _events(s, "beat.down"),
            timeout_s=ALIVE_MS / 1000 + SLACK_S,
            message="beat.down",
        )
        s.add_beat()
        [up] = wait_until(lambda: _events(s, "beat.up"), timeout_s=SLACK_S, message="beat.up")
    assert down["last_beat_ms"] is not None
    assert up["reason"] == "cleared"
