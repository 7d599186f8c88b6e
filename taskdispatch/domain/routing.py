"""Which Celery queue a round goes to: the one rule the beat (to publish) and the service
(to explain `no_worker_for_queue`) share.

The task's own `queue` when it has one; else its sys_type when routing by it is on
(`TASKDISPATCH_ROUTE_BY_SYS_TYPE`); else the default queue (`TASKDISPATCH_DEFAULT_QUEUE`).
"""

from __future__ import annotations

from taskdispatch.domain.models import Task
from taskdispatch.settings import Settings

__all__ = ["queue_for", "queue_of"]


def queue_for(*, queue: str | None, sys_type: str, settings: Settings) -> str:
    """The queue of a round of a task with this own `queue` (or None) and `sys_type`."""
    if queue is not None:
        return queue
    return sys_type if settings.route_by_sys_type else settings.default_queue


def queue_of(task: Task, settings: Settings) -> str:
    """The queue the task's next round goes to."""
    return queue_for(queue=task.queue, sys_type=task.sys_type, settings=settings)
