"""Specification of taskdispatch.domain.routing: the one rule that picks a round's queue.

The task's own queue when it has one, else its sys_type when routing by it is on, else
the default queue. The beat publishes by it and the waiting reason names its answer.
"""

from __future__ import annotations

import pytest

from taskdispatch.domain import routing
from taskdispatch.domain.models import Task
from taskdispatch.domain.reasons import World, waiting_reason
from taskdispatch.settings import Settings
from tests.support.tasks import task_record


def settings(*, by_sys_type: bool) -> Settings:
    return Settings(route_by_sys_type=by_sys_type, default_queue="celery")


def task(*, queue: str | None) -> Task:
    return task_record(interval_s=60, next_ms=60_000, queue=queue)


@pytest.mark.parametrize(
    ("queue", "by_sys_type", "expected"),
    [
        pytest.param(None, False, "celery", id="nothing-default"),
        pytest.param(None, True, "mac_intel", id="sys_type-rule"),
        pytest.param("dev-a", False, "dev-a", id="own-over-default"),
        pytest.param("dev-a", True, "dev-a", id="own-over-sys_type"),
    ],
)
def test_queue_for_own_then_sys_type_then_default(
    queue: str | None, by_sys_type: bool, expected: str
) -> None:
    """The task's own queue wins; without one the sys_type rule applies, else the default."""
    got = routing.queue_for(
        queue=queue, sys_type="mac_intel", settings=settings(by_sys_type=by_sys_type)
    )
    assert got == expected


def test_queue_of_task_follows_its_fields() -> None:
    """A task's queue is the rule applied to its own queue and sys_type."""
    assert routing.queue_of(task(queue="dev-b"), settings(by_sys_type=True)) == "dev-b"
    assert routing.queue_of(task(queue=None), settings(by_sys_type=True)) == "mac_intel"


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        pytest.param(
            frozenset({"celery", "mac_intel"}),
            {"code": "no_worker_for_queue", "queue": "dev-a"},
            id="nobody-on-it",
        ),
        pytest.param(frozenset({"dev-a"}), None, id="consumed"),
    ],
)
def test_waiting_reason_names_the_tasks_own_queue(
    live: frozenset[str], expected: dict[str, str] | None
) -> None:
    """A pinned task waits for a worker of its own queue, not of the sys_type or default."""
    world = World(now_ms=0, dispatcher_enabled=True, live_queues=live, locked_accounts=frozenset())
    pinned = task(queue="dev-a")
    queue = routing.queue_of(pinned, settings(by_sys_type=True))
    assert waiting_reason(pinned, world, queue=queue) == expected
