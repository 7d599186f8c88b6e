"""One round of one task, as a worker runs it: check, lease, start, handler, finish.

Every state change is one transaction (`transaction.transact`) applying a rule of
`lifecycle.py`, so the task hash, its indexes and the round's history record change
together. Two tokens guard a round:

- `fence` (from the beat's claim) makes a message for a superseded slot a no-op
  (`lifecycle.stands_for`);
- `run_id` (set when the round starts) lets only the round that is still current write
  its outcome: a worker whose round recovery already declared lost cannot overwrite newer
  state, and retrying a final write is idempotent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from taskdispatch.domain import lifecycle, schedule
from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.lifecycle import RetryPolicy
from taskdispatch.domain.models import Outcome, Task
from taskdispatch.engine.handlers import HandlerRegistry, RunContext, check_result
from taskdispatch.engine.lease import AccountLease, HandlerGuard, LeaseLost, RoundCancelled
from taskdispatch.settings import Settings
from taskdispatch.store.audit import Stamp, queue_audit
from taskdispatch.store.connections import lease_client
from taskdispatch.store.events import queue_event
from taskdispatch.store.history import RunRecord, as_cancelled, queue_run_record
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import Admission, LimitBook, admit, queue_release
from taskdispatch.store.progress import ProgressReporter, queue_progress_clear
from taskdispatch.store.stats import queue_limit_wait
from taskdispatch.store.transaction import Change, Read, transact

__all__ = ["RoundMessage", "RoundRunner"]

log = logging.getLogger(__name__)


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
        self.policy = RetryPolicy.of(settings)
        self.limits = LimitBook(redis, self.keys)

    def run(self, msg: RoundMessage) -> dict[str, Any]:
        """Check, lease, start, run and finish one round; returns a summary for logs."""
        now = self.clock()
        raw = self.redis.hgetall(self.keys.task(msg.task_id))
        task = Task.from_hash(raw, task_id=msg.task_id) if raw else None
        if task is None or not self._stands(task, msg, now):
            # Deleted, paused, rescheduled or already run: a newer decision owns this task.
            return {"outcome": "dropped", "reason": "stale message"}
        if lifecycle.missed(task, now_ms=now) is not None:
            return self._skip_missed(msg, now)
        reason = lifecycle.skip_reason(task, now_ms=now)
        if reason is not None:
            return self._skip(msg, now, reason=reason)

        lease = AccountLease(
            self.lease_redis,
            lock_key=self.keys.lock(task.account_id),
            task_key=self.keys.task(task.task_id),
            running_key=self.keys.running(),
            task_id=task.task_id,
            ttl_ms=int(self.settings.lease_ttl_s * 1000),
            clock_ms=self.clock,
        )
        with lease:
            sent_s = time.monotonic()
            admission = admit(
                self.lease_redis,
                self.keys,
                self.limits,
                task,
                lease_token=lease.token,
                lease_ttl_ms=lease.ttl_ms,
                start_token=uuid.uuid4().hex,
                now_ms=now,
                park_until_ms=lifecycle.park_deadline(task, now_ms=now),
            )
            if admission.code == "gone":
                return {"outcome": "dropped", "reason": "changed before start"}
            if admission.code == "account_locked":
                return self._skip_account_locked(msg, now)
            if not admission.admitted:
                return self._waiting(task, admission)
            lease.taken(
                sent_s=sent_s, place_keys=[self.keys.limit_places(n) for n in admission.holds]
            )
            started = self._start(msg, uuid.uuid4().hex, holds=admission.holds, admitted_ms=now)
            if started is None:
                self._release_places(task.task_id, admission.holds)
                return {"outcome": "dropped", "reason": "changed before start"}
            guard = HandlerGuard()
            with guard.installed():
                assert started.run_id is not None
                lease.watch_cancel(
                    run_id=started.run_id,
                    on_cancel=lambda: guard.interrupt(_CANCELLED, error=RoundCancelled),
                    grace_s=self.settings.cancel_grace_s,
                    on_abandon=lambda: self._finish(
                        msg, started, self._abandoned(started, msg), lease
                    ),
                )
                lease.start_renewing(on_lost=guard.interrupt)
                record = self._call_handler(started, msg, guard)
            lease.stop_renewing()
            record = self._finish(msg, started, record, lease)
        return {
            "outcome": record.outcome,
            "error": record.error,
            "round": record.round_num,
            "account": task.account_id,
        }

    @staticmethod
    def _stands(task: Task, msg: RoundMessage, now: int) -> bool:
        return lifecycle.stands_for(task, fence=msg.fence, slot_ms=msg.slot_ms, now_ms=now)

    def _record(self, task: Task, record: RunRecord) -> Callable[[Any], None]:
        keep = self.settings.runs_kept
        return lambda pipe: queue_run_record(pipe, self.keys, task, record, keep=keep)

    def _start(
        self, msg: RoundMessage, run_id: str, *, holds: tuple[str, ...], admitted_ms: int
    ) -> Task | None:
        """The round is `running`; its start is the instant it was admitted (the instant
        its rate limits counted), so its history and its limits agree."""
        now = admitted_ms
        lease_expiry = self.clock() + int(self.settings.lease_ttl_s * 1000)

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or not self._stands(task, msg, now):
                return None
            running = lifecycle.started(
                task, run_id=run_id, worker=self.hostname, now_ms=now, holds=holds
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

            return Change(running, extra)

        result = transact(self.redis, self.keys, msg.task_id, plan)
        return result.new if result.wrote else None

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
            scheduled_for=schedule.to_datetime(msg.slot_ms, schedule.parse_timezone(task.timezone)),
            fencing_token=task.fence,
            run_id=task.run_id,
            reporter=ProgressReporter.for_round(
                task, self.lease_redis, self.settings, worker=self.hostname, clock_ms=self.clock
            ),
        )
        outcome: Outcome = "ok"
        result: Any = None
        error: str | None = None
        reason: str | None = None
        try:
            returned = guard.call(self.registry.get(task.task_type), ctx)
            check_result(returned)  # a result history could not store fails the round
            result = returned
        except RoundCancelled:
            outcome, reason = "cancelled", "cancelled"
        except LeaseLost:
            outcome, reason, error = "lost", "lease_unrenewable", guard.reason
        except Exception as exc:  # a handler may raise anything; the round is then failed
            outcome, error = "failed", _describe(exc)
            log.warning("round of %s (account %s) failed: %s", task.task_id, task.account_id, error)
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
            planned_ms=lifecycle.start_of(task, msg.slot_ms),
        )

    def _abandoned(self, started: Task, msg: RoundMessage) -> RunRecord:
        """The record of a cancelled round whose handler ignored the interrupt."""
        return RunRecord(
            outcome="cancelled",
            scheduled_ms=msg.slot_ms,
            round_num=started.round_num + 1,
            started_ms=started.started_ms,
            finished_ms=self.clock(),
            reason="cancelled",
            error=(
                f"the handler ignored the cancel for {self.settings.cancel_grace_s:g} s; "
                "its process was stopped"
            ),
            worker=self.hostname,
            planned_ms=lifecycle.start_of(started, msg.slot_ms),
        )

    def _finish(
        self, msg: RoundMessage, started: Task, record: RunRecord, lease: AccountLease
    ) -> RunRecord:
        """Record the outcome and the next slot, retrying while Redis does not answer;
        returns the record as written.

        The account's lease is released in the same transaction: the next slot may be due at
        once, and a round of it must not find the account still held by this one.
        A retry is harmless: once one attempt landed, the task no longer carries this
        round's `run_id`, and the plan writes nothing.

        A round an operator asked to stop is recorded `cancelled` whatever its handler did,
        even if it returned before the interrupt reached it: the cancel and the round's end
        are ordered by Redis, and the one that came first decides (exactly one outcome).
        """
        written = [record]

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or task.run_id != started.run_id:
                return None  # deleted, or declared lost meanwhile: this result is fenced out
            final = (
                as_cancelled(
                    record,
                    task,
                    error=record.error if record.outcome == "cancelled" else None,
                )
                if lifecycle.is_cancelling(task)
                else record
            )
            written[0] = final
            done = lifecycle.finished(
                task,
                outcome=final.outcome,
                slot_ms=msg.slot_ms,
                started_ms=final.started_ms,
                error=final.error,
                now_ms=self.clock(),
                policy=self.policy,
            )

            def extra(pipe: Any) -> None:
                pipe.zrem(self.keys.running(), task.task_id)
                self._record(task, final)(pipe)
                self._queue_release(pipe, task.task_id, task.holds)
                lease.queue_release(pipe)
                queue_progress_clear(pipe, self.keys, task.task_id)

            return Change(done, extra)

        # Long enough to ride out a Redis restart; past it, recovery records the round lost.
        retries = int(4 * self.settings.lease_ttl_s / _FINISH_BACKOFF_CAP_S) + 3
        retry = Retry(
            ExponentialBackoff(cap=_FINISH_BACKOFF_CAP_S, base=0.2),
            retries,
            supported_errors=(ConnectionError, TimeoutError, OSError),
        )
        try:
            result = retry.call_with_retry(
                lambda: transact(self.redis, self.keys, msg.task_id, plan), lambda _: None
            )
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.error("could not record round of %s: %s; recovery will", msg.task_id, exc)
            return record
        if result.wrote:
            lease.released()
        if result.old is None and started.holds:
            # Deleted while it ran: nothing recorded, but its places free only now it ended.
            self._release_places(msg.task_id, started.holds)
        return written[0]

    def _queue_release(self, pipe: Any, task_id: str, holds: tuple[str, ...]) -> None:
        _, book = self.limits.current()
        queue_release(pipe, self.keys, task_id, holds, book=book, now_ms=self.clock())

    def _release_places(self, task_id: str, holds: tuple[str, ...]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            self._queue_release(pipe, task_id, holds)
            pipe.execute()

    def _waiting(self, task: Task, admission: Admission) -> dict[str, Any]:
        """A limit is full: the admission parked the slot (it is woken when a place frees)."""
        with self.redis.pipeline(transaction=False) as pipe:
            queue_event(
                pipe,
                self.keys,
                "round.waiting",
                task_id=task.task_id,
                account_id=task.account_id,
                limit=admission.limit,
                code=admission.code,
                in_use=admission.in_use,
                capacity=admission.capacity,
                next_start_ms=admission.next_start_ms,
            )
            assert admission.limit is not None and admission.code is not None
            queue_limit_wait(pipe, self.keys, limit=admission.limit, code=admission.code)
            pipe.execute()
        return {"outcome": "waiting", "reason": admission.code, "limit": admission.limit}

    def _skip(self, msg: RoundMessage, now: int, *, reason: str) -> dict[str, Any]:
        """The slot may not run now (outside its window, past the end): move on, recorded."""

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or not self._stands(task, msg, now):
                return None
            record = RunRecord(
                outcome="skipped", scheduled_ms=msg.slot_ms, reason=reason, worker=self.hostname
            )
            return Change(lifecycle.skipped(task, now_ms=now), self._record(task, record))

        transact(self.redis, self.keys, msg.task_id, plan)
        return {"outcome": "skipped", "reason": reason}

    def _skip_missed(self, msg: RoundMessage, now: int) -> dict[str, Any]:
        """misfire_policy "skip": each slot missed by more than the grace is recorded as
        skipped (reason "missed") and the task moves to its first slot not missed."""

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or not self._stands(task, msg, now):
                return None
            decision = lifecycle.missed(task, now_ms=now)
            if decision is None:
                return None
            slots, moved = decision
            records = [
                RunRecord(
                    outcome="skipped", scheduled_ms=slot, reason="missed", worker=self.hostname
                )
                for slot in slots
            ]

            def extra(pipe: Any) -> None:
                for record in records:
                    self._record(task, record)(pipe)

            return Change(moved, extra)

        result = transact(self.redis, self.keys, msg.task_id, plan)
        return {"outcome": "skipped", "reason": "missed", "slots": result.wrote}

    def request_cancel(self, task_id: str, *, by: str) -> bool:
        """Ask the round of `task_id` in progress to stop (for a Celery control command that
        names it; the API goes through the service): its worker interrupts the handler at its
        next renewal. Returns whether a round was running; audited as the API's cancel is."""
        now = self.clock()

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or task.run_id is None:
                return None
            new = lifecycle.cancel_requested(task, then="next", by=by, note=None, now_ms=now)
            return Change(new, self._audit(Stamp(by, "cancel", now), task, new))

        return transact(self.redis, self.keys, task_id, plan).wrote

    def cancel_queued(self, msg: RoundMessage, *, by: str) -> bool:
        """An operator revoked this round's message before it started: the slot never runs
        and is recorded `cancelled`; the task moves to its next slot. Returns whether the
        message still stood for the task's slot (else it was stale: nothing to do)."""
        now = self.clock()
        record = RunRecord(
            outcome="cancelled",
            scheduled_ms=msg.slot_ms,
            reason="revoked",
            worker=self.hostname,
            cancelled_by=by,
        )

        def settle(task: Task) -> tuple[Task, Callable[[Any], None]]:
            new = lifecycle.slot_cancelled(task, slot_ms=msg.slot_ms, now_ms=now)
            return new, self._audit(Stamp(by, "cancel", now), task, new)

        return self._record_slot(msg, now, record, settle)

    def _record_slot(
        self,
        msg: RoundMessage,
        now: int,
        record: RunRecord,
        settle: Callable[[Task], tuple[Task, Callable[[Any], None]]],
    ) -> bool:
        """Record `record` for the slot of `msg` without running it, if the message still
        stands for that slot; `settle(task)` gives the task after and the other writes of the
        same transaction. Returns whether it wrote."""

        def plan(read: Read) -> Change | None:
            task = read.task
            if task is None or not self._stands(task, msg, now):
                return None
            new, more = settle(task)

            def extra(pipe: Any) -> None:
                self._record(task, record)(pipe)
                more(pipe)

            return Change(new, extra)

        return transact(self.redis, self.keys, msg.task_id, plan).wrote

    def _audit(self, stamp: Stamp, old: Task, new: Task) -> Callable[[Any], None]:
        entry = stamp.task_entry(old, new)
        kept = self.settings.audit_kept
        return lambda pipe: queue_audit(pipe, self.keys, entry, kept=kept)

    def _skip_account_locked(self, msg: RoundMessage, now: int) -> dict[str, Any]:
        """Another round of this account still runs: look again shortly, do not wait a claim."""
        retry_at = now + int(self.settings.lock_retry_s * 1000)
        record = RunRecord(
            outcome="skipped",
            scheduled_ms=msg.slot_ms,
            reason="account_locked",
            worker=self.hostname,
        )

        def settle(task: Task) -> tuple[Task, Callable[[Any], None]]:
            return task, lambda pipe: pipe.zadd(self.keys.due(), {task.task_id: retry_at}, xx=True)

        self._record_slot(msg, now, record, settle)
        return {"outcome": "skipped", "reason": "account_locked"}


# The longest pause between two attempts of a round's final write.
_FINISH_BACKOFF_CAP_S = 2.0
# What a cancelled handler is told (the exception's message).
_CANCELLED = "the round was cancelled by an operator"


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 1000 else text[:997] + "..."
