"""Housekeeping: rounds whose worker died are declared lost and run again; timed pauses end.

Every beat does this inside its own tick (`scheduler.RedisScheduler`), so it happens
whatever queues the workers consume and needs no Celery message of its own. The claim
script hands the beat the candidates (rounds whose lease expiry passed, pauses whose `until`
came), at most a batch per tick; each is then one WATCHed transaction, so several beats
doing the same work at once change every task once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis import Redis

from taskdispatch.domain import lifecycle
from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.lifecycle import RetryPolicy
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.settings import Settings
from taskdispatch.store.history import RunRecord, as_cancelled, queue_run_record
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import LimitBook, queue_release
from taskdispatch.store.progress import queue_progress_clear
from taskdispatch.store.transaction import Change, Read, transact

__all__ = ["Housekeeper"]

log = logging.getLogger(__name__)

LOST_ERROR = "round lost: its worker stopped renewing the lease (killed or cut off)"
CANCELLED_LOST_ERROR = "cancelled; its worker stopped before recording the round"


class Housekeeper:
    def __init__(
        self, redis: Redis, settings: Settings, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.clock = clock
        self.policy = RetryPolicy.of(settings)
        self.limits = LimitBook(redis, self.keys)

    def recover_lost(self, task_ids: Iterable[str]) -> int:
        """Declare lost each of these rounds whose lease is gone; returns how many."""
        ids = list(task_ids)
        if ids:
            self.limits.reload()  # rare: definitions as they are now, for the wakes
        return sum(self._recover_one(task_id, self.clock()) for task_id in ids)

    def resume_paused(self, task_ids: Iterable[str]) -> int:
        """Resume each of these paused tasks whose `until` has come; returns how many."""
        resumed = 0
        for task_id in task_ids:
            now = self.clock()

            def plan(read: Read, now: int = now) -> Change | None:
                task = read.task
                new = None if task is None else lifecycle.auto_resumed(task, now_ms=now)
                return None if new is None else Change(new)

            result = transact(self.redis, self.keys, task_id, plan)
            task = result.old
            if not result.wrote and (
                task is None or task.status != TaskStatus.PAUSED or task.paused_until_ms is None
            ):
                # Resumed or deleted meanwhile: the entry is stale. A pause whose `until` is
                # still ahead (paused again, later) keeps its entry.
                self.redis.zrem(self.keys.resume(), task_id)
            resumed += result.wrote
        return resumed

    def _recover_one(self, task_id: str, now: int) -> bool:
        raw_account = self.redis.hget(self.keys.task(task_id), "account_id")
        if raw_account:
            left_ms = int(self.redis.pttl(self.keys.lock(str(raw_account))))
            if left_ms > 0:
                # The holder still renews; only the index score lagged (clocks differ).
                self.redis.zadd(self.keys.running(), {task_id: now + left_ms}, xx=True)
                return False

        outcomes: list[str] = []

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or task.run_id is None:
                return None
            keep = self.settings.runs_kept
            record, new = self._ended(task, now)
            outcomes.append(record.outcome)

            def extra(pipe: Any) -> None:
                pipe.zrem(self.keys.running(), task_id)
                queue_run_record(pipe, self.keys, task, record, keep=keep)
                # Its places in limits: freed, and their next waiters woken.
                queue_release(
                    pipe, self.keys, task_id, task.holds, book=self.limits.limits, now_ms=now
                )
                queue_progress_clear(pipe, self.keys, task_id)

            return Change(new, extra)

        result = transact(self.redis, self.keys, task_id, plan)
        if result.old is None or result.old.run_id is None:
            self.redis.zrem(self.keys.running(), task_id)  # an entry left by a deleted task
        if result.wrote and outcomes[-1] == "cancelled":
            log.warning("round of task %s ended cancelled (its worker stopped first)", task_id)
        elif result.wrote:
            _log_lost(task_id, result.new)
        return result.wrote

    def _ended(self, task: Task, now: int) -> tuple[RunRecord, Task]:
        """The record and state of a round whose worker stopped renewing: lost, or, when an
        operator had asked it to stop, cancelled (never rerun, not a failure)."""
        slot_ms = task.next_ms if task.next_ms is not None else now
        record = RunRecord(
            outcome="lost",
            scheduled_ms=slot_ms,
            round_num=task.round_num + 1,
            started_ms=task.started_ms,
            finished_ms=now,
            reason="lease_expired",
            error=LOST_ERROR,
            worker=task.worker,
        )
        if lifecycle.is_cancelling(task):
            record = as_cancelled(record, task, error=CANCELLED_LOST_ERROR)
            new = lifecycle.finished(
                task,
                outcome="cancelled",
                slot_ms=slot_ms,
                started_ms=task.started_ms,
                error=None,
                now_ms=now,
                policy=self.policy,
            )
            return record, new
        return record, lifecycle.lost(task, error=LOST_ERROR, now_ms=now, policy=self.policy)


def _log_lost(task_id: str, task: Task | None) -> None:
    """Say what the lost round leads to: a rerun, the task's error state, or nothing yet."""
    if task is None:
        return
    if task.status == TaskStatus.ERROR:
        log.error(
            "round of task %s was lost, its %d failed or lost round in a row: the task is in "
            "error (max_consecutive_failures); resume it to run it again",
            task_id,
            task.failures,
        )
    elif task.status == TaskStatus.PENDING:
        log.warning("round of task %s was lost; it runs again", task_id)
    else:
        log.warning("round of task %s was lost; the task stays %s", task_id, task.status)
