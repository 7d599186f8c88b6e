"""Every Redis key taskdispatch uses, built here and nowhere else, the encoding of the
dispatcher flag stored under one of them, and the decoding of a reply (`reply_text`).

All keys share one configurable prefix (`TASKDISPATCH_KEY_PREFIX`, default `td:`).
`docs/redis-keys.md` lists each key, its type and who writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "DISPATCHER_OFF",
    "DISPATCHER_ON",
    "ENABLED_FIELD",
    "Keys",
    "dispatcher_enabled",
    "reply_text",
]

# The dispatcher flag, `HGET <dispatcher> enabled`: absent or anything but "0" means on, so a
# fresh Redis dispatches. The beat's claim script gets DISPATCHER_OFF as an argument.
ENABLED_FIELD = "enabled"
DISPATCHER_ON = "1"
DISPATCHER_OFF = "0"


def reply_text(value: Any) -> str:
    """A reply item as text, whether the client decodes replies or not (scripts and
    clients without decode_responses give bytes; numbers come as they are)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def dispatcher_enabled(value: str | bytes | None) -> bool:
    """Whether the stored dispatcher flag `value` means "dispatching is on"."""
    return value is None or reply_text(value) != DISPATCHER_OFF


@dataclass(frozen=True)
class Keys:
    prefix: str = "td:"

    def task(self, task_id: str) -> str:
        """Hash: the task definition and its schedule state."""
        return f"{self.prefix}task:{task_id}"

    def account(self, account_id: str) -> str:
        """String: the task_id bound to this account (one task per account)."""
        return f"{self.prefix}account:{account_id}"

    def all_tasks(self) -> str:
        """Sorted set: task_id scored by created_ms (listing order)."""
        return f"{self.prefix}tasks"

    def status(self, status: str) -> str:
        """Sorted set per status: task_id scored by created_ms."""
        return f"{self.prefix}status:{status}"

    def due(self) -> str:
        """Sorted set: task_id scored by the ms at which the beat should claim it."""
        return f"{self.prefix}due"

    def running(self) -> str:
        """Sorted set: task_id of each round in progress scored by its lease expiry ms."""
        return f"{self.prefix}running"

    def lock(self, account_id: str) -> str:
        """String: the per-account lease (value = owner token)."""
        return f"{self.prefix}lock:{account_id}"

    def runs(self, task_id: str) -> str:
        """List: recent round records (JSON), newest first, capped."""
        return f"{self.prefix}runs:{task_id}"

    def progress(self, task_id: str) -> str:
        """String with a TTL: the latest progress (JSON, `progress.RoundProgress`) the
        handler of the task's round in progress reported; not in the task hash, so that its
        frequent writes never make a WATCHed change of the task retry."""
        return f"{self.prefix}progress:{task_id}"

    def dispatcher(self) -> str:
        """Hash: dispatcher flags (`enabled`)."""
        return f"{self.prefix}dispatcher"

    def beats(self) -> str:
        """Sorted set: beat id scored by its last heartbeat ms."""
        return f"{self.prefix}beats"

    def resume(self) -> str:
        """Sorted set: paused task_id scored by the ms at which it resumes by itself."""
        return f"{self.prefix}resume"

    def events(self) -> str:
        """Stream: task and round events for live clients (capped, approximately)."""
        return f"{self.prefix}events"

    def worker_queues(self) -> str:
        """Hash: Celery worker hostname -> comma-separated queues it consumes."""
        return f"{self.prefix}worker_queues"

    def worker_handlers(self) -> str:
        """Hash: Celery worker hostname -> the task types it has handlers for (JSON list),
        which the API accepts while that worker is alive (`workers`)."""
        return f"{self.prefix}worker_handlers"

    def published_queues(self) -> str:
        """Set: every Celery queue a beat has published a round to (the status reads how
        many messages wait in those no live worker consumes)."""
        return f"{self.prefix}published_queues"

    def stats(self) -> str:
        """Hash: round counters and scheduling-lag histogram buckets (for /metrics)."""
        return f"{self.prefix}stats"

    def workers(self) -> str:
        """Sorted set: Celery worker hostname scored by its last heartbeat ms."""
        return f"{self.prefix}workers"

    def index(self, dim: str, value: str, status: str | None = None) -> str:
        """Sorted set: task_id of every task whose `dim` ("tag", "sys_type", "task_type")
        has `value` (and, given, whose status is `status`), scored by created_ms."""
        return f"{self.prefix}ix:{dim}:{status or 'all'}:{value}"

    def indexes(self) -> str:
        """The SCAN pattern that matches every `index` key (the consistency checker's)."""
        return f"{self.prefix}ix:*"

    def search(self) -> str:
        """Sorted set, all scores 0: `<lowercased account id or name>\0<task_id>` per task,
        for prefix search by ZRANGEBYLEX."""
        return f"{self.prefix}search"

    def next_runs(self) -> str:
        """Sorted set: task_id of each task with a next slot, scored by next_ms."""
        return f"{self.prefix}next"

    def limits(self) -> str:
        """Hash: limit name -> its definition (JSON, `limits.Limit`)."""
        return f"{self.prefix}limits"

    def limits_version(self) -> str:
        """String: bumped by every change of a limit, so workers know their copy is stale."""
        return f"{self.prefix}limits_version"

    def limit_places(self, name: str) -> str:
        """Sorted set: task_id of each round holding a place in the limit, scored by the
        place's expiry ms (renewed with the account lease)."""
        return f"{self.prefix}limit_places:{name}"

    def limit_starts(self, name: str) -> str:
        """Sorted set: one member per round started under the limit, scored by its start ms
        (only the last `per_s` seconds are kept)."""
        return f"{self.prefix}limit_starts:{name}"

    def limit_waiters(self, name: str) -> str:
        """Sorted set: task_id of each round waiting for the limit, scored by its slot ms."""
        return f"{self.prefix}limit_waiters:{name}"

    def audit(self) -> str:
        """Stream: the audit trail of every change (who, what, before -> after), capped; the
        one copy of each entry, linked per task (audit.py)."""
        return f"{self.prefix}audit"

    def task_audit(self, task_id: str) -> str:
        """List, written by the release before only: full copies (JSON) of one task's audit
        entries, newest first; read after its linked entries, deleted with the task."""
        return f"{self.prefix}audit:{task_id}"

    def bulk(self, request_id: str, task_id: str) -> str:
        """String: what bulk request `request_id` did to task `task_id` (its status after),
        so that a repeated request changes nothing twice (expires after a day)."""
        return f"{self.prefix}bulk:{request_id}:{task_id}"

    def rate(self, client: str) -> str:
        """Hash: the token bucket of one API client (a token's digest or an address)."""
        return f"{self.prefix}rate:{client}"

    def wake(self) -> str:
        """List: pushed when a change makes a task due sooner, so beats stop sleeping."""
        return f"{self.prefix}wake"

    def notifications(self) -> str:
        """Hash: notification name -> its definition (JSON)."""
        return f"{self.prefix}notifications"

    def notify_watch_lock(self) -> str:
        """String with a TTL of `notify_watch_every_s`: held by the process whose condition
        watcher looks this period (conditions.py), so the fleet looks once per period."""
        return f"{self.prefix}notify:watch:lock"

    def notify_conditions(self) -> str:
        """Hash: each open condition (`task.overdue|<task_id>`, `beat.down|fleet`, ...) ->
        what its opening event said (JSON), written with the event (conditions.py)."""
        return f"{self.prefix}notify:conditions"

    def notify_watch(self) -> str:
        """Hash: the condition watcher's own bookkeeping: its last look (token, ms) and its
        cursors through the next-run index (conditions.py)."""
        return f"{self.prefix}notify:watch"

    def notify_intake_lock(self) -> str:
        """String with a TTL: the token of the one process that takes events from the stream
        into the notifications' groups now (notifier.py), so they are taken in order."""
        return f"{self.prefix}notify:intake:lock"

    def notify_group(self, name: str, event: str) -> str:
        """Hash: the open group of notification `name` for `event`: subject (a task_id, a
        queue, a worker, `fleet`) -> what the message lists about it (JSON)."""
        return f"{self.prefix}notify:group:{name}:{event}"

    def notify_windows(self) -> str:
        """Sorted set: `<name>|<event>` of each open group, scored by the ms its grouping
        window closes (then the group becomes one delivery)."""
        return f"{self.prefix}notify:windows"

    def notify_open(self, name: str) -> str:
        """Set: `<event>|<subject>` of each condition notification `name` has announced and
        whose recovery it has not seen, so the same alert is not sent twice meanwhile."""
        return f"{self.prefix}notify:open:{name}"

    def notify_delivery(self, delivery_id: str) -> str:
        """Hash: one message to send (its notification, event, tasks, attempts), deleted when
        it was delivered or given up."""
        return f"{self.prefix}notify:delivery:{delivery_id}"

    def notify_due(self) -> str:
        """Sorted set: delivery id scored by the ms of its next attempt (a sender's claim
        pushes it forward, so a sender that dies leaves it to another)."""
        return f"{self.prefix}notify:due"

    def notify_recent(self, name: str) -> str:
        """List: the latest attempts of notification `name` (JSON), newest first, capped."""
        return f"{self.prefix}notify:recent:{name}"

    def notify_stats(self) -> str:
        """Hash: `delivered|<name>` and `given_up|<name>` counters (for /metrics)."""
        return f"{self.prefix}notify:stats"
