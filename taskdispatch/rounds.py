"""One round of one task as a worker runs it, and recovery of rounds whose worker died.

Every state change is one WATCH/MULTI transaction through `transact`, so the task hash,
its indexes and the round's history record change together. Two tokens guard a round:

- `fence` (from the beat's claim) makes a message for a superseded slot a no-op (a message
  of an older claim still counts for the same due slot: see `_stands_for`);
- `run_id` (set when the round starts) lets only the round that is still current write
  its outcome: a worker whose lease expired and whose round recovery already declared
  lost cannot overwrite newer state, and retrying a final write is idempotent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis import Redis
from redis.exceptions import RedisError, WatchError

from taskdispatch import schedule, spec
from taskdispatch.connections import lease_client
from taskdispatch.events import queue_event
from taskdispatch.handlers import HandlerRegistry, RunContext
from taskdispatch.history import Outcome, RunRecord, queue_run_record
from taskdispatch.keys import Keys
from taskdispatch.lease import AccountLease, HandlerGuard, LeaseLost
from taskdispatch.models import Task, TaskStatus
from taskdispatch.settings import Settings
from taskdispatch.write import queue_task_write, written_by

__all__ = ["Extra", "RoundMessage", "RoundRunner", "after_round", "now_ms", "transact"]

log = logging.getLogger(__name__)

Extra = Callable[[Any], None]
Plan = Callable[[Task | None], tuple[Task | None, Extra | None] | None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def transact(redis: Redis, keys: Keys, task_id: str, plan: Plan) -> tuple[Task | None, bool]:
    """Run `plan` on the current record and apply its (new task, extra writes) atomically.

    `plan` returns None to write nothing. Returns (the record plan saw, whether it wrote).
    The write is tagged: if the connection drops after EXEC (redis-py then raises
    WatchError), the retry finds the tag and returns instead of planning again on the
    state its own write produced.
    """
    write_id = uuid.uuid4().hex
    tried, attempted = False, cast(Task | None, None)
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.task(task_id))
                raw = pipe.hgetall(keys.task(task_id))
                if tried and raw and written_by(raw, write_id):
                    pipe.unwatch()
                    return attempted, True
                old = Task.from_hash(raw) if raw else None
                decision = plan(old)
                if decision is None:
                    pipe.unwatch()
                    return old, False
                new, extra = decision
                pipe.multi()
                queue_task_write(pipe, keys, old, new, write_id=write_id)
                if extra is not None:
                    extra(pipe)
                tried, attempted = True, old
                pipe.execute()
                return old, True
            except WatchError:
                continue


@dataclass(frozen=True)
class RoundMessage:
    task_id: str
    fence: int
    slot_ms: int


class RoundRunner:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        registry: HandlerRegistry,
        *,
        hostname: str,
        clock: Callable[[], int] = now_ms,
        lease_redis: Redis | None = None,
    ) -> None:
        self.redis = redis
        # Renewals fail fast on a client of their own (see connections.lease_client).
        self.lease_redis = lease_redis or lease_client(settings)
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.registry = registry
        self.hostname = hostname
        self.clock = clock

    def run(self, msg: RoundMessage) -> dict[str, Any]:
        """Check, lease, start, run and finish one round; returns a summary for logs."""
        now = self.clock()
        task = (
            Task.from_hash(raw)
            if (raw := self.redis.hgetall(self.keys.task(msg.task_id)))
            else None
        )
        if task is None or not _stands_for(task, msg, now):
            # Deleted, paused, rescheduled or already run: a newer decision owns this task.
            return {"outcome": "dropped", "reason": "stale message"}
        tz = ZoneInfo(task.timezone)
        if task.end_ms is not None and now > task.end_ms:
            # A late message (beat outage, backlog) never starts a round after the end.
            return self._skip_outside_window(msg, now, reason="past_end")
        if not schedule.in_window(now, task.window, tz):
            return self._skip_outside_window(msg, now)

        lease = AccountLease(
            self.lease_redis,
            lock_key=self.keys.lock(task.account_id),
            running_key=self.keys.running(),
            task_id=task.task_id,
            ttl_ms=int(self.settings.lease_ttl_s * 1000),
            clock_ms=self.clock,
        )
        with lease:
            if not lease.acquire():
                return self._skip_account_locked(msg, now)
            run_id = uuid.uuid4().hex
            started = self._start(msg, run_id)
            if started is None:
                return {"outcome": "dropped", "reason": "changed before start"}
            guard = HandlerGuard()
            with guard.installed():
                lease.start_renewing(on_lost=guard.interrupt)
                record = self._call_handler(started, msg, guard)
            self._finish(msg, run_id, record)
        return {"outcome": record.outcome, "error": record.error, "round": record.round_num}

    def _start(self, msg: RoundMessage, run_id: str) -> Task | None:
        now = self.clock()
        lease_expiry = now + int(self.settings.lease_ttl_s * 1000)

        def plan(task: Task | None) -> tuple[Task | None, Extra | None] | None:
            if task is None or not _stands_for(task, msg, now):
                return None
            running = task.evolve(
                status=TaskStatus.RUNNING,
                started_ms=now,
                worker=self.hostname,
                run_id=run_id,
                updated_ms=now,
            )

            def extra(pipe: Any) -> None:
                pipe.zadd(self.keys.running(), {task.task_id: lease_expiry})
                queue_event(
                    pipe,
                    self.keys,
                    "round.started",
                    task_id=task.task_id,
                    account_id=task.account_id,
                    round_num=task.round_num + 1,
                    scheduled_ms=msg.slot_ms,
                    worker=self.hostname,
                )

            return running, extra

        task, wrote = transact(self.redis, self.keys, msg.task_id, plan)
        if not wrote or task is None:
            return None
        return task.evolve(status=TaskStatus.RUNNING, started_ms=now, run_id=run_id)

    def _call_handler(self, task: Task, msg: RoundMessage, guard: HandlerGuard) -> RunRecord:
        assert task.run_id is not None
        ctx = RunContext(
            task_id=task.task_id,
            account_id=task.account_id,
            account_name=task.account_name,
            task_type=task.task_type,
            sys_type=task.sys_type,
            round_num=task.round_num + 1,
            kwargs=task.kwargs,
            scheduled_for=schedule.to_datetime(msg.slot_ms, ZoneInfo(task.timezone)),
            fencing_token=task.fence,
            run_id=task.run_id,
        )
        outcome: Outcome = "ok"
        result: Any = None
        error: str | None = None
        reason: str | None = None
        try:
            result = guard.call(self.registry.get(task.task_type), ctx)
        except LeaseLost:
            outcome, reason, error = "lost", "lease_unrenewable", guard.reason
        except Exception as exc:  # a handler may raise anything; the round is then failed
            outcome, error = "failed", _describe(exc)
            log.warning("round of %s failed: %s", task.task_id, error)
        return RunRecord(
            outcome=outcome,
            scheduled_ms=msg.slot_ms,
            round_num=ctx.round_num,
            started_ms=task.started_ms,
            finished_ms=self.clock(),
            reason=reason,
            error=error,
            worker=self.hostname,
            result=result,
        )

    def _finish(self, msg: RoundMessage, run_id: str, record: RunRecord) -> None:
        """Record the outcome and the next slot; retried until Redis answers (idempotent)."""
        s = self.settings

        def plan(task: Task | None) -> tuple[Task | None, Extra | None] | None:
            if task is None or task.run_id != run_id:
                return None  # deleted, or declared lost meanwhile: this result is fenced out
            now = self.clock()
            ok = record.outcome == "ok"
            done = task.evolve(
                round_num=task.round_num + 1,
                last_ms=record.started_ms,
                failures=0 if ok else task.failures + 1,
                last_error=None if ok else record.error,
                run_id=None,
                started_ms=None,
                worker=None,
                updated_ms=now,
            )
            if task.status == TaskStatus.RUNNING:
                # A round its worker stopped runs again now, like one recovery declares lost.
                slot_ms = None if record.outcome == "lost" else msg.slot_ms
                done = after_round(done, slot_ms=slot_ms, ok=ok, now_ms=now, settings=s)

            def extra(pipe: Any) -> None:
                pipe.zrem(self.keys.running(), task.task_id)
                queue_run_record(pipe, self.keys, task, record, keep=s.runs_kept)

            return done, extra

        delay_s = 0.2
        deadline = time.monotonic() + s.lease_ttl_s * 4
        while True:
            try:
                transact(self.redis, self.keys, msg.task_id, plan)
                return
            except RedisError as exc:
                if time.monotonic() > deadline:
                    log.error("could not record round of %s: %s; recovery will", msg.task_id, exc)
                    return
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    def _skip_outside_window(
        self, msg: RoundMessage, now: int, reason: str = "outside_window"
    ) -> dict[str, Any]:
        def plan(task: Task | None) -> tuple[Task | None, Extra | None] | None:
            if task is None or not _stands_for(task, msg, now):
                return None
            next_ms = spec.placed(task, now, now_ms=now)
            moved = task.evolve(next_ms=next_ms, fence=task.fence + 1, updated_ms=now)
            if next_ms is None:
                moved = moved.evolve(status=TaskStatus.COMPLETED)
            record = RunRecord(
                outcome="skipped",
                scheduled_ms=msg.slot_ms,
                reason=reason,
                worker=self.hostname,
            )
            keep = self.settings.runs_kept
            return moved, lambda pipe: queue_run_record(pipe, self.keys, task, record, keep=keep)

        transact(self.redis, self.keys, msg.task_id, plan)
        return {"outcome": "skipped", "reason": reason}

    def _skip_account_locked(self, msg: RoundMessage, now: int) -> dict[str, Any]:
        """Another round of this account still runs: look again shortly, do not wait a claim."""
        retry_at = now + int(self.settings.lock_retry_s * 1000)

        def plan(task: Task | None) -> tuple[Task | None, Extra | None] | None:
            if task is None or not _stands_for(task, msg, now):
                return None
            record = RunRecord(
                outcome="skipped",
                scheduled_ms=msg.slot_ms,
                reason="account_locked",
                worker=self.hostname,
            )

            def extra(pipe: Any) -> None:
                pipe.zadd(self.keys.due(), {task.task_id: retry_at}, xx=True)
                queue_run_record(pipe, self.keys, task, record, keep=self.settings.runs_kept)

            return task, extra

        transact(self.redis, self.keys, msg.task_id, plan)
        return {"outcome": "skipped", "reason": "account_locked"}


def _stands_for(task: Task, msg: RoundMessage, now_ms: int) -> bool:
    """Whether `msg` still asks for the task's current, not yet started slot.

    A message carrying the task's fence does. So does one from an older claim of the same
    slot, once that slot is due: when messages wait in a long queue, the beat re-claims them
    after `dispatch_timeout_s` (new fence, second message), and if the first message were
    dropped as stale on arrival, every message of a queue longer than the timeout would be
    stale and no round would ever run again. Whichever message comes first starts the slot;
    the start moves the task to `running` (one WATCHed transaction), so the other is dropped.
    """
    if task.status != TaskStatus.PENDING:
        return False
    if task.fence == msg.fence:
        return True
    return msg.fence < task.fence and task.next_ms == msg.slot_ms and msg.slot_ms <= now_ms


def after_round(
    task: Task, *, slot_ms: int | None, ok: bool, now_ms: int, settings: Settings
) -> Task:
    """Status and next slot once a round that held `running` ended (or was lost)."""
    tz = ZoneInfo(task.timezone)
    if ok:
        next_ms = schedule.next_run_ms(
            slot_ms=slot_ms if slot_ms is not None else now_ms,
            now_ms=now_ms,
            interval_s=task.interval_s,
            window=task.window,
            tz=tz,
            end_ms=task.end_ms,
        )
    elif task.failures >= settings.max_consecutive_failures:
        return task.evolve(status=TaskStatus.ERROR, next_ms=None)
    else:
        # A lost round runs again now; a failed one after a growing pause, at most one interval.
        backoff_s = (
            0
            if slot_ms is None
            else min(settings.retry_backoff_s * 2 ** (task.failures - 1), task.interval_s)
        )
        next_ms = spec.placed(task, now_ms, now_ms=now_ms, offset_s=round(backoff_s))
    if next_ms is None:
        return task.evolve(status=TaskStatus.COMPLETED, next_ms=None)
    return task.evolve(status=TaskStatus.PENDING, next_ms=next_ms, fence=task.fence + 1)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 1000 else text[:997] + "..."
