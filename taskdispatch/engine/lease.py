"""The per-account lease: two rounds of one account never overlap, even across a partition.

A lease is `SET lock:{account} <token> NX PX ttl`. The holder renews it from a background
thread while the round runs and releases it by compare-and-delete, so a holder whose lease
expired can never extend or delete the lease a newer holder took. Renewal also pushes the
round's `running` score, which recovery reads to find rounds whose worker died.

Self-fencing: Redis lets the lease expire `ttl` after the last renewal it applied, and
recovery may then start the round elsewhere. A holder that cannot renew (Redis unreachable,
a partition) therefore stops its own round first: once `FENCE_AT` of the TTL has passed
since the last renewal Redis confirmed, `HandlerGuard.interrupt` raises `LeaseLost` inside
the handler; if the handler has still not returned at `EXIT_AT`, a pool process exits (its
worker replaces it). Times are measured on the local monotonic clock from the moment the
confirmed renewal was *sent*, which is never later than the moment Redis applied it, so the
local deadline always falls before the real expiry.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from taskdispatch.engine.handlers import is_async
from taskdispatch.store.scripts import LEASE_RELEASE, LEASE_RENEW

__all__ = [
    "EXIT_AT",
    "FENCE_AT",
    "AccountLease",
    "HandlerGuard",
    "LeaseLost",
    "RoundCancelled",
]

log = logging.getLogger(__name__)

ClockMs = Callable[[], int]

# Fractions of the TTL after the last confirmed renewal: stop the handler, then, if it did
# not stop, exit the pool process. Both leave time before Redis expires the lease.
FENCE_AT = 0.7
EXIT_AT = 0.9
# Exit status of a pool process that had to leave because its handler ignored LeaseLost.
EXIT_FENCED = 70
# How often the interrupt is sent again while the handler has not stopped.
_REPEAT_S = 0.05
# Longest time between two renewals of a started round: the renewal is also the look for
# an operator's cancel, which must reach the handler within two seconds.
CANCEL_CHECK_S = 1.0
# Exit status of a pool process that had to leave because its handler ignored a cancel.
EXIT_CANCELLED = 71
# Set by the worker in prefork pool processes, where exiting only replaces one process.
in_pool_process = False


class LeaseLost(BaseException):
    """Raised inside a round's handler when its worker can no longer vouch for the lease.

    A BaseException, like KeyboardInterrupt, so that a handler's `except Exception` does not
    swallow it; a handler may clean up in `finally`, quickly.
    """


class RoundCancelled(BaseException):
    """Raised inside a round's handler when an operator cancelled the round (the API,
    Flower's Terminate, `celery control revoke|terminate`). A BaseException for the same
    reason as `LeaseLost`: `finally` blocks run, `except Exception` does not swallow it."""


class HandlerGuard:
    """Runs a handler so that another thread can interrupt it with `LeaseLost` (or
    `RoundCancelled`).

    A plain handler: in the main thread of a process (a prefork pool process, or the solo
    pool) the interrupt is a SIGUSR2 whose handler raises, which also ends a blocking sleep
    or socket read; in any other thread it is an asynchronous exception, delivered at the
    handler's next Python instruction.

    An async handler runs on this thread's event loop (`_event_loop`): the interrupt cancels
    its task from the interrupting thread (`call_soon_threadsafe`), so the coroutine gets
    `asyncio.CancelledError` at the await it is in and its `finally` blocks (awaits
    included) run; `call` then raises the interrupt's exception. The cancel is sent once,
    like the plain handler's exception: repeating it would cut the coroutine's own cleanup
    (closing a browser or a session takes awaits). One that swallows it is stopped by the
    lease's exit at `EXIT_AT`, or by the cancel's grace.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        # What the interrupt raises inside the handler: LeaseLost, or RoundCancelled.
        self.error: type[BaseException] = LeaseLost
        self._armed = False
        self._sent = False
        self._closed = False
        # Held while a signal is sent: none can arrive after the handler is uninstalled.
        self._lock = threading.Lock()
        self._thread_id = threading.get_ident()
        self._signals = threading.current_thread() is threading.main_thread()
        # The async handler's task while it runs (set and read under `_lock`).
        self._task: asyncio.Task[Any] | None = None

    @contextmanager
    def installed(self) -> Iterator[HandlerGuard]:
        previous = signal.signal(signal.SIGUSR2, self._on_signal) if self._signals else None
        try:
            yield self
        finally:
            with self._lock:
                self._closed = True
            if self._signals:
                signal.signal(signal.SIGUSR2, previous)

    def call(self, fn: Callable[..., Any], *args: object) -> Any:
        """`fn(*args)`, or for an async `fn` what its coroutine returns; raises the
        interrupt's exception if interrupted (also when that came before the call)."""
        if is_async(fn):
            return self._call_async(fn, *args)
        with self._lock:
            if self.reason is not None:
                raise self.error(self.reason)
            self._armed = True
        try:
            return fn(*args)
        finally:
            self._armed = False

    def interrupt(self, reason: str, *, error: type[BaseException] = LeaseLost) -> None:
        """Ask the handler to stop by raising `error` inside it (from the renewer thread)."""
        with self._lock:
            if self.reason is not None:
                return  # the first reason stands: a round is stopped once
            self.reason = reason
            self.error = error
            task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel, reason)
            return
        if self._signals:
            # Repeated until the handler stops: a signal that lands just before a blocking
            # call begins does not end that call.
            threading.Thread(target=self._signal_until_stopped, daemon=True).start()
            return
        if self._armed and not self._closed and not self._sent:
            # Delivered at the handler's next instruction, whatever it waits on: once.
            self._sent = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread_id), ctypes.py_object(self.error)
            )

    def _signal_until_stopped(self) -> None:
        while True:
            with self._lock:
                if not self._armed or self._closed:
                    return
                signal.pthread_kill(self._thread_id, signal.SIGUSR2)
            time.sleep(_REPEAT_S)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            raise self.error(self.reason or "the round's lease was lost")

    def _call_async(self, fn: Callable[..., Any], *args: object) -> Any:
        loop = _event_loop()
        with self._lock:
            if self.reason is not None:
                raise self.error(self.reason)
            task = self._task = loop.create_task(fn(*args))
        # What stopped the coroutine from outside it: the soft time limit, or whatever a
        # signal handler raised in the event loop itself.
        stopped_by: list[BaseException] = []
        try:
            with self._soft_limit_cancels(task, stopped_by):
                _run_to_end(loop, task, stopped_by)
        finally:
            with self._lock:
                self._task = None
        if stopped_by:
            raise stopped_by[0]
        if task.cancelled():
            if self.reason is not None:
                raise self.error(self.reason)
            raise RuntimeError(
                "the handler's coroutine was cancelled from inside the handler (its own task, "
                "or a future it awaited), not by an operator, its lease or its time limit"
            )
        return task.result()

    @contextmanager
    def _soft_limit_cancels(
        self, task: asyncio.Task[Any], stopped_by: list[BaseException]
    ) -> Iterator[None]:
        """While a coroutine runs, Celery's soft time limit (the exception its pool process's
        SIGUSR1 handler raises, billiard's SIG_SOFT_TIMEOUT) cancels the coroutine instead
        of landing in the event loop, which could log it away in a callback; `call` raises
        it once the coroutine ended."""
        previous = signal.getsignal(signal.SIGUSR1) if self._signals else None
        if not callable(previous):
            yield  # no handler of Python's: nothing would raise
            return
        raise_limit = previous

        def on_limit(signum: int, frame: FrameType | None) -> None:
            try:
                raise_limit(signum, frame)
            except BaseException as exc:
                if task.done():
                    raise  # the coroutine has ended: the limit goes where it lands
                stopped_by.append(exc)
                task.get_loop().call_soon_threadsafe(task.cancel, repr(exc))

        signal.signal(signal.SIGUSR1, on_limit)
        try:
            yield
        finally:
            signal.signal(signal.SIGUSR1, previous)


def _run_to_end(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], stopped_by: list[BaseException]
) -> None:
    """Run the loop until `task` is done. An exception raised in the loop itself (by a signal
    handler) is kept in `stopped_by`, the task cancelled and run to its end all the same:
    its `finally` runs, and no half-run task is left for the loop's next round."""
    while not task.done():
        try:
            loop.run_until_complete(task)
        except BaseException as exc:
            if task.done():
                return  # the coroutine's own outcome: `call` reads it from the task
            stopped_by.append(exc)
            task.cancel(repr(exc))


_loops = threading.local()


def _event_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for async handlers, made at its first async round and kept
    for the process's later rounds (their clients may keep connections on it). A forked
    pool process makes its own: the parent's loop is the parent's."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or _loops.pid != os.getpid():
        loop = _loops.loop = asyncio.new_event_loop()
        _loops.pid = os.getpid()
    return loop


class _Renewer:
    """One thread per process that renews every lease held in the process.

    Starting a thread per round (and joining it at the end) was a fifth of a short round's
    cost; leases instead register here, and the thread wakes at the earliest moment one of
    them must act (renew, retry, fence, or exit). A forked process (a prefork pool child)
    starts its own thread the first time it takes a lease.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._leases: set[AccountLease] = set()
        self._pid: int | None = None

    def add(self, lease: AccountLease) -> None:
        with self._cond:
            if self._pid != os.getpid():
                # After a fork the parent's thread is not ours, and neither are its leases.
                self._pid = os.getpid()
                self._leases = set()
                threading.Thread(target=self._run, name="lease-renewer", daemon=True).start()
            self._leases.add(lease)
            self._cond.notify()

    def remove(self, lease: AccountLease) -> None:
        with self._cond:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [lease for lease in self._leases if lease.next_action_s <= now]
                if not due:
                    upcoming = min((lease.next_action_s for lease in self._leases), default=None)
                    self._cond.wait(None if upcoming is None else upcoming - now)
                    continue
            for lease in due:
                if not lease.act():
                    self.remove(lease)


_renewer = _Renewer()


class AccountLease:
    """Context manager: `with AccountLease(...) as lease:`, released on the way out.

    A round takes its lease together with its places in limits (`limits.admit`, one
    script) and then tells the lease with `taken`; renewals extend those places too.

    `redis` should fail fast (short socket timeout, no retries): a renewal that hangs would
    delay the fencing decision, which is taken between renewal attempts.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        lock_key: str,
        task_key: str,
        running_key: str,
        task_id: str,
        ttl_ms: int,
        clock_ms: ClockMs,
    ) -> None:
        self.redis = redis
        self.lock_key = lock_key
        self.task_key = task_key
        self.running_key = running_key
        self.task_id = task_id
        self.ttl_ms = ttl_ms
        self.clock_ms = clock_ms
        self.token = uuid.uuid4().hex
        self.acquired = False
        self.place_keys: list[str] = []
        self.lost = threading.Event()
        self.lost_reason: str | None = None
        self._confirmed_s = 0.0  # monotonic time the last confirmed SET/renewal was sent
        # When the renewer should next call `act`, and what for.
        self.next_action_s = math.inf
        self._fenced = False
        self._on_lost: Callable[[str], None] | None = None
        # Set by `watch_cancel` once the round started.
        self._run_id = ""
        self._on_cancel: Callable[[], None] | None = None
        self._on_abandon: Callable[[], object] | None = None
        self._cancel_grace_s = 0.0
        self._cancel_deadline_s: float | None = None
        # Held while `act` runs: stopping waits for a renewal in flight.
        self._acting = threading.Lock()
        self._stopped = False

    def taken(self, *, sent_s: float, place_keys: list[str] | None = None) -> None:
        """The lease (and these limit places) were taken by a command sent at `sent_s`
        (monotonic), with this lease's token and TTL."""
        self.acquired = True
        self.place_keys = list(place_keys or [])
        self._confirmed_s = sent_s

    def watch_cancel(
        self,
        *,
        run_id: str,
        on_cancel: Callable[[], None],
        grace_s: float,
        on_abandon: Callable[[], object],
    ) -> None:
        """Look for an operator's cancel of round `run_id` at every renewal (at least every
        `CANCEL_CHECK_S`): call `on_cancel()` once when asked; if the handler still runs
        `grace_s` later, call `on_abandon()` (record the round) and leave the process, the way
        Celery's terminate would stop it. Call before `start_renewing`."""
        self._run_id = run_id
        self._on_cancel = on_cancel
        self._on_abandon = on_abandon
        self._cancel_grace_s = grace_s

    def start_renewing(self, on_lost: Callable[[str], None]) -> None:
        """Renew until released; call `on_lost(reason)` once if the lease cannot be kept."""
        self._on_lost = on_lost
        self.next_action_s = self._confirmed_s + self._renew_every_s()
        _renewer.add(self)

    def _renew_every_s(self) -> float:
        third_s = self.ttl_ms / 1000 / 3
        return min(third_s, CANCEL_CHECK_S) if self._run_id else third_s

    def act(self) -> bool:
        """One step of the renewer for this lease (in its thread); False once it is done."""
        with self._acting:
            if self._stopped:
                return False
            ttl_s = self.ttl_ms / 1000
            if self._fenced:
                # The handler had until EXIT_AT to stop; past it, only leaving is safe.
                self._exit_unstopped()
                return False
            sent = time.monotonic()
            if self._cancel_deadline_s is not None and sent >= self._cancel_deadline_s:
                self._abandon()
                return False
            fence_s = self._confirmed_s + ttl_s * FENCE_AT
            if sent >= fence_s:
                waited = sent - self._confirmed_s
                return self._fence(f"its lease could not be renewed for {waited:.1f} s")
            try:
                expiry = self.clock_ms() + self.ttl_ms
                args: list[str | int] = [
                    self.token,
                    self.ttl_ms,
                    self.task_id,
                    expiry,
                    self._run_id,
                ]
                renewed = LEASE_RENEW(
                    self.redis,
                    keys=[self.lock_key, self.task_key, self.running_key, *self.place_keys],
                    args=args,
                )
            except RedisError as exc:
                log.warning("renewing lease %s failed: %s", self.lock_key, exc)
                self.next_action_s = min(time.monotonic() + max(0.05, ttl_s / 20), fence_s)
                return True
            if not renewed:
                return self._fence("its lease expired and was no longer its own")
            self._confirmed_s = sent
            self.next_action_s = sent + self._renew_every_s()
            if renewed == 2 and self._cancel_deadline_s is None:
                self._cancel_deadline_s = sent + self._cancel_grace_s
                assert self._on_cancel is not None
                self._on_cancel()
            if self._cancel_deadline_s is not None:
                self.next_action_s = min(self.next_action_s, self._cancel_deadline_s)
            return True

    def _abandon(self) -> None:
        """The handler ignored the cancel for its grace: record the round, then leave."""
        log.error(
            "the handler of %s ignored its cancel for %.0f s; its round is recorded "
            "cancelled and its process stops",
            self.task_id,
            self._cancel_grace_s,
        )
        assert self._on_abandon is not None
        try:
            self._on_abandon()
        except Exception as exc:  # recovery records it once the lease expires
            log.error("recording the cancelled round of %s failed: %s", self.task_id, exc)
        if in_pool_process:
            os._exit(EXIT_CANCELLED)
        log.critical(
            "the handler of %s ignored its cancel and this pool cannot replace its process: it "
            "runs on unrecorded (use the prefork pool)",
            self.task_id,
        )

    def _fence(self, why: str) -> bool:
        reason = f"round stopped by its worker: {why} (Redis unreachable or too slow)"
        log.error("lease %s: %s", self.lock_key, reason)
        self.lost_reason = reason
        self.lost.set()
        assert self._on_lost is not None
        self._on_lost(reason)
        self._fenced = True
        self.next_action_s = self._confirmed_s + self.ttl_ms / 1000 * EXIT_AT
        return True

    def _exit_unstopped(self) -> None:
        if in_pool_process:
            log.critical("the handler of %s ignored LeaseLost; pool process exits", self.task_id)
            os._exit(EXIT_FENCED)
        log.critical(
            "the handler of %s ignored LeaseLost and this pool cannot replace its process: "
            "it may overlap the round's rerun (use the prefork pool)",
            self.task_id,
        )

    def stop_renewing(self) -> None:
        """No more renewals (the round's handler returned); the lease stays held. Waits for
        a renewal in flight, so none lands after this returns."""
        _renewer.remove(self)
        with self._acting:
            self._stopped = True

    def queue_release(self, pipe: Any) -> None:
        """Queue the compare-and-delete into a transaction of the caller's (the round's final
        write), so that the account is free the instant its next slot is due. Call
        `released` once that transaction was applied; renewals must have stopped."""
        LEASE_RELEASE.queue(pipe, keys=[self.lock_key], args=[self.token])

    def released(self) -> None:
        """The transaction holding `queue_release` was applied: nothing left to release."""
        self.acquired = False

    def release(self) -> None:
        self.stop_renewing()
        if self.acquired:
            try:
                LEASE_RELEASE(self.redis, keys=[self.lock_key], args=[self.token])
            except RedisError as exc:
                log.warning("releasing lease %s failed (it will expire): %s", self.lock_key, exc)
            self.acquired = False

    def __enter__(self) -> AccountLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
