"""A listing query and which tasks it selects, as pure functions of a task.

The store answers a `TaskQuery` from its indexes (`store/indexes.py` keeps one sorted set per
filter dimension); `matches_query` is the same rule applied to one task in memory (the live
views and the bulk operations' selections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taskdispatch.domain.models import Task

__all__ = ["DIMENSIONS", "Sort", "TaskQuery", "dimension_values", "matches_query", "search_terms"]

DIMENSIONS = ("tag", "sys_type", "task_type", "queue")

Sort = Literal["created", "next"]


@dataclass(frozen=True)
class TaskQuery:
    """A listing: filters (all given must hold), order and page (validated by the service).

    `q` matches a prefix of the account id or name, case-insensitively. `sort="next"` lists
    the tasks that have a next run, soonest first; `"created"` every task, oldest first.
    """

    status: str | None = None
    tag: str | None = None
    sys_type: str | None = None
    task_type: str | None = None
    # The task's own `queue` field (not the queue the routing rule picks without one).
    queue: str | None = None
    q: str | None = None
    sort: Sort = "created"
    offset: int = 0
    limit: int = 100

    @property
    def dimensions(self) -> list[tuple[str, str]]:
        given = (
            ("tag", self.tag),
            ("sys_type", self.sys_type),
            ("task_type", self.task_type),
            ("queue", self.queue),
        )
        return [(dim, value) for dim, value in given if value is not None]


def dimension_values(task: Task) -> dict[str, tuple[str, ...]]:
    """The values of each filter dimension a task has (several tags, at most one queue, one
    of the others)."""
    return {
        "tag": task.tags,
        "sys_type": (task.sys_type,),
        "task_type": (task.task_type,),
        "queue": () if task.queue is None else (task.queue,),
    }


def search_terms(task: Task) -> set[str]:
    return {task.account_id.lower(), task.account_name.lower()}


def matches_query(task: Task, query: TaskQuery) -> bool:
    """Whether `task` is one `query` selects (its filters; not its page)."""
    values = dimension_values(task)
    if query.status is not None and task.status.value != query.status:
        return False
    if any(value not in values[dim] for dim, value in query.dimensions):
        return False
    if query.sort == "next" and task.next_ms is None:
        return False
    return query.q is None or any(t.startswith(query.q.lower()) for t in search_terms(task))
