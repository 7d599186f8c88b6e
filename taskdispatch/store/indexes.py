"""The listing indexes: which sorted sets a task is in, defined once.

`entries(task)` is the complete set of (key, member) -> score a stored task must have in
the listing indexes; `queue_index_writes` turns a change into the ZREM/ZADD that take the
indexes from the old task's entries to the new one's (inside the task's transaction,
`write.py`), and the consistency checker compares the store with the same function.

- `tasks` and `status:{status}`, scored by created_ms: the listing in creation order;
- `ix:{dim}:all:{value}` and `ix:{dim}:{status}:{value}` for each filter dimension (tags,
  sys_type, task_type, and the task's own queue when it has one), scored by created_ms: a
  page of one dimension, with or without a status, is one ZRANGE (O(log N + page));
- `next`, scored by next_ms: the listing by next run;
- `search`, lexicographic: `<lowercased account id or name>\\0<task_id>`, for a prefix search.

The due, running and resume indexes are not listings: their scores follow the scheduler's
own rules (`write.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from taskdispatch.domain.models import Task
from taskdispatch.store.keys import Keys

__all__ = [
    "DIMENSIONS",
    "SEARCH_SEPARATOR",
    "TaskQuery",
    "dimension_values",
    "entries",
    "matches_query",
    "queue_index_writes",
    "search_terms",
]

DIMENSIONS = ("tag", "sys_type", "task_type", "queue")
SEARCH_SEPARATOR = "\0"

Entries = dict[tuple[str, str], float]
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


def entries(keys: Keys, task: Task) -> Entries:
    tid, created, status = task.task_id, float(task.created_ms), task.status.value
    out: Entries = {(keys.all_tasks(), tid): created, (keys.status(status), tid): created}
    for dim, values in dimension_values(task).items():
        for value in values:
            out[(keys.index(dim, value), tid)] = created
            out[(keys.index(dim, value, status), tid)] = created
    if task.next_ms is not None:
        out[(keys.next_runs(), tid)] = float(task.next_ms)
    for term in search_terms(task):
        out[(keys.search(), f"{term}{SEARCH_SEPARATOR}{tid}")] = 0.0
    return out


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


def queue_index_writes(pipe: Any, keys: Keys, old: Task | None, new: Task | None) -> None:
    """Queue what takes the listing indexes from `old`'s entries to `new`'s (None = absent)."""
    before = entries(keys, old) if old is not None else {}
    after = entries(keys, new) if new is not None else {}
    for key, member in before.keys() - after.keys():
        pipe.zrem(key, member)
    for (key, member), score in after.items():
        if before.get((key, member)) != score:
            pipe.zadd(key, {member: score})
