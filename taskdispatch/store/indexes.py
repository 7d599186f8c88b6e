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

from typing import Any

from taskdispatch.domain.models import Task
from taskdispatch.domain.queries import dimension_values, search_terms
from taskdispatch.store.keys import Keys

__all__ = [
    "SEARCH_SEPARATOR",
    "entries",
    "queue_index_writes",
]

SEARCH_SEPARATOR = "\0"

Entries = dict[tuple[str, str], float]


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


def queue_index_writes(pipe: Any, keys: Keys, old: Task | None, new: Task | None) -> None:
    """Queue what takes the listing indexes from `old`'s entries to `new`'s (None = absent)."""
    before = entries(keys, old) if old is not None else {}
    after = entries(keys, new) if new is not None else {}
    for key, member in before.keys() - after.keys():
        pipe.zrem(key, member)
    for (key, member), score in after.items():
        if before.get((key, member)) != score:
            pipe.zadd(key, {member: score})
