"""Specification of taskdispatch.engine.lease: the per-account lease and the handler guard.

Real Redis (the session's private server), directly or through the flaky proxy. Renewals
use short TTLs so that a test sees several of them within a second or two.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import redis
from billiard.exceptions import SoftTimeLimitExceeded
from billiard.pool import soft_timeout_sighandler

from taskdispatch.domain.clock import now_ms
from taskdispatch.engine.lease import AccountLease, HandlerGuard, LeaseLost, RoundCancelled
from taskdispatch.settings import Settings
from taskdispatch.store.connections import lease_client
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import LimitBook, admit
from taskdispatch.store.write import queue_task_write
from tests.support.fleet import fleet_task
from tests.support.probes import wait_until
from tests.support.proxy import FlakyProxy

KEYS = Keys("td:")
LOCK = KEYS.lock("acct-1")
RUNNING = KEYS.running()
TASK_KEY = KEYS.task("task-1")
TTL_MS = 1000

MakeLease = Callable[..., AccountLease]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def make_lease(redis_url: str) -> Iterator[MakeLease]:
    """`make_lease(url=..., ttl_ms=..., clock_ms=...)`: a lease on LOCK, released at teardown,
    over the fail-fast lease client the worker uses."""
    made: list[tuple[AccountLease, redis.Redis]] = []

    def factory(
        url: str = redis_url, ttl_ms: int = TTL_MS, clock_ms: Callable[[], int] = now_ms
    ) -> AccountLease:
        client = lease_client(Settings(redis_url=url, lease_ttl_s=ttl_ms / 1000))
        lease = AccountLease(
            client,
            lock_key=LOCK,
            task_key=TASK_KEY,
            running_key=RUNNING,
            task_id="task-1",
            ttl_ms=ttl_ms,
            clock_ms=clock_ms,
        )
        made.append((lease, client))
        return lease

    yield factory
    for lease, client in made:
        lease.release()
        client.close()


def take(lease: AccountLease, raw: redis.Redis) -> bool:
    """Take `lease` as a round does: `limits.admit` (no limit defined) for a due task of the
    account, then `taken`; returns whether it was taken."""
    now = now_ms()
    task = replace(fleet_task(0, now_ms=now), task_id="task-1", account_id="acct-1", next_ms=now)
    with raw.pipeline() as pipe:
        queue_task_write(pipe, KEYS, None, task)
        pipe.execute()
    sent_s = time.monotonic()
    admission = admit(
        lease.redis,
        KEYS,
        LimitBook(lease.redis, KEYS),
        task,
        lease_token=lease.token,
        lease_ttl_ms=lease.ttl_ms,
        start_token="start",
        now_ms=now,
        park_until_ms=now + 60_000,
    )
    if admission.admitted:
        lease.taken(sent_s=sent_s)
    return admission.admitted


def test_lease_taken_on_a_held_account_fails(make_lease: MakeLease, raw: redis.Redis) -> None:
    """A second lease on the same account key is refused while the first holds it."""
    first, second = make_lease(), make_lease()
    assert take(first, raw) is True
    assert take(second, raw) is False
    assert raw.get(LOCK) == first.token


def test_lease_taken_after_release_succeeds(make_lease: MakeLease, raw: redis.Redis) -> None:
    """Releasing deletes the key, so the account can be leased again at once."""
    first, second = make_lease(), make_lease()
    take(first, raw)
    first.release()
    assert take(second, raw) is True
    assert raw.get(LOCK) == second.token


def test_lease_release_of_a_key_taken_over_keeps_the_new_holder(
    make_lease: MakeLease, raw: redis.Redis
) -> None:
    """Release is compare-and-delete: a key that now holds another token is left alone."""
    lease = make_lease()
    take(lease, raw)
    raw.set(LOCK, "newer-holder")
    lease.release()
    assert raw.get(LOCK) == "newer-holder"


def test_lease_renewal_keeps_the_key_past_its_ttl(make_lease: MakeLease, raw: redis.Redis) -> None:
    """While renewing, the lease outlives several TTLs and is never declared lost."""
    lease = make_lease()
    take(lease, raw)
    lease.start_renewing(on_lost=lambda reason: None)
    # Redis expires the key by its own clock: only real time shows that renewals keep it.
    time.sleep(2.5 * TTL_MS / 1000)
    assert raw.get(LOCK) == lease.token
    assert not lease.lost.is_set()


def test_lease_renewal_pushes_the_running_score(make_lease: MakeLease, raw: redis.Redis) -> None:
    """Each renewal moves the round's running-index score to its new lease expiry."""
    raw.zadd(RUNNING, {"task-1": 1})
    lease = make_lease(clock_ms=lambda: 1_000_000)
    take(lease, raw)
    lease.start_renewing(on_lost=lambda reason: None)
    wait_until(lambda: raw.zscore(RUNNING, "task-1") != 1, 5, message="a renewal")
    assert raw.zscore(RUNNING, "task-1") == 1_000_000 + TTL_MS


def test_lease_renewal_adds_no_running_entry_for_a_round_not_indexed(
    make_lease: MakeLease, raw: redis.Redis
) -> None:
    """The push is ZADD XX: a round no longer in the running index is not put back."""
    calls: list[int] = []

    def clock() -> int:
        calls.append(1)
        return now_ms()

    lease = make_lease(clock_ms=clock)
    take(lease, raw)
    lease.start_renewing(on_lost=lambda reason: None)
    # The clock is read before each renewal: a second read means the first renewal ran.
    wait_until(lambda: len(calls) >= 2, 5, interval_s=0.02, message="two renewals")
    assert raw.zscore(RUNNING, "task-1") is None
    assert raw.get(LOCK) == lease.token


def test_lease_taken_over_calls_on_lost_with_a_reason(
    make_lease: MakeLease, raw: redis.Redis
) -> None:
    """A renewal that finds another token calls on_lost once with the reason and sets .lost."""
    reasons: list[str] = []
    lease = make_lease()
    take(lease, raw)
    raw.set(LOCK, "newer-holder")
    lease.start_renewing(on_lost=reasons.append)
    wait_until(lambda: reasons, 5, message="on_lost")
    assert lease.lost.is_set()
    assert len(reasons) == 1 and "no longer its own" in reasons[0]
    assert lease.lost_reason == reasons[0]
    assert raw.get(LOCK) == "newer-holder"


def test_lease_unrenewable_calls_on_lost_while_the_key_still_holds(
    make_lease: MakeLease, raw: redis.Redis, proxy: FlakyProxy
) -> None:
    """Redis unreachable: the holder fences itself before its lease can expire in Redis."""
    left_at_fence: list[int] = []
    lease = make_lease(url=proxy.url, ttl_ms=2000)
    assert take(lease, raw)
    proxy.block()
    lease.start_renewing(on_lost=lambda reason: left_at_fence.append(int(raw.pttl(LOCK))))
    wait_until(lambda: left_at_fence, 5, message="on_lost")
    assert "could not be renewed" in (lease.lost_reason or "")
    assert left_at_fence[0] > 0, "fenced only after the lease had expired"


def test_guard_in_the_main_thread_interrupts_a_sleep_with_lease_lost() -> None:
    """In the main thread the interrupt is a signal: a blocking sleep ends with LeaseLost."""
    assert threading.current_thread() is threading.main_thread()
    guard = HandlerGuard()
    started = threading.Event()

    def handler() -> None:
        started.set()
        time.sleep(10)

    def interrupter() -> None:
        started.wait(5)
        # Let the handler get into its sleep: the guard signals once, and a signal that lands
        # while the main thread is still on its way into the syscall does not end the call.
        time.sleep(0.2)
        guard.interrupt("lease gone")

    with guard.installed():
        threading.Thread(target=interrupter, daemon=True).start()
        with pytest.raises(LeaseLost, match="lease gone"):
            guard.call(handler)
    assert guard.reason == "lease gone"


def test_guard_interrupt_after_the_handler_returned_raises_nothing() -> None:
    """An interrupt that comes once the handler is done is ignored (only its reason kept)."""
    guard = HandlerGuard()
    with guard.installed():
        assert guard.call(lambda: 42) == 42
        guard.interrupt("too late")
        time.sleep(0.05)  # a signal, had one been sent, would be delivered here
    assert guard.reason == "too late"


def test_guard_installed_restores_the_previous_sigusr2_handler() -> None:
    """Leaving `installed()` puts back whatever SIGUSR2 handler was there before."""
    before = signal.getsignal(signal.SIGUSR2)
    with HandlerGuard().installed():
        assert signal.getsignal(signal.SIGUSR2) is not before
    assert signal.getsignal(signal.SIGUSR2) is before


class _AsyncProbe:
    """An async handler that awaits `sleep_s` and lists what happened to it in `marks`."""

    def __init__(self, *, sleep_s: float = 10.0, cleanup_s: float = 0.0) -> None:
        self.sleep_s = sleep_s
        self.cleanup_s = cleanup_s
        self.started = threading.Event()
        self.marks: list[str] = []

    async def __call__(self) -> str:
        self.started.set()
        try:
            await asyncio.sleep(self.sleep_s)
        except asyncio.CancelledError as exc:
            self.marks.append(f"cancelled: {exc}")
            raise
        finally:
            if self.cleanup_s:
                await asyncio.sleep(self.cleanup_s)
            self.marks.append("finally")
        return "slept"


def _interrupt_once_started(probe: _AsyncProbe, interrupt: Callable[[], object]) -> None:
    def run() -> None:
        probe.started.wait(5)
        interrupt()

    threading.Thread(target=run, daemon=True).start()


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.mark.parametrize("error", [LeaseLost, RoundCancelled])
def test_guard_async_interrupt_cancels_the_coroutine_mid_await_and_raises_its_error(
    error: type[BaseException],
) -> None:
    """An async handler interrupted mid-await gets CancelledError (with the reason) there,
    its finally runs, and `call` raises the interrupt's exception."""
    guard, probe = HandlerGuard(), _AsyncProbe()
    _interrupt_once_started(probe, lambda: guard.interrupt("stop now", error=error))
    with guard.installed(), pytest.raises(error, match="stop now"):
        guard.call(probe)
    assert probe.marks == ["cancelled: stop now", "finally"]


def test_guard_async_interrupted_coroutine_may_await_in_its_finally() -> None:
    """The cancel is sent once: awaits in the coroutine's cleanup are not cut short."""
    guard, probe = HandlerGuard(), _AsyncProbe(cleanup_s=0.3)  # several repeat periods
    _interrupt_once_started(probe, lambda: guard.interrupt("lease gone"))
    with guard.installed(), pytest.raises(LeaseLost):
        guard.call(probe)
    assert probe.marks == ["cancelled: lease gone", "finally"]


def test_guard_async_handler_returns_what_its_coroutine_returns() -> None:
    """Not interrupted, `call` returns the coroutine's result."""
    with HandlerGuard().installed() as guard:
        assert guard.call(_AsyncProbe(sleep_s=0)) == "slept"


def test_guard_async_handlers_of_one_process_share_one_event_loop() -> None:
    """Rounds of one process run on one loop, kept (not closed) between them."""
    first = HandlerGuard().call(_running_loop)
    second = HandlerGuard().call(_running_loop)
    assert first is second
    assert not first.is_running() and not first.is_closed()


def test_guard_async_handler_in_a_forked_process_runs_on_a_loop_of_its_own() -> None:
    """A pool process forked from a process that had a loop makes its own."""
    parent_loop = HandlerGuard().call(_running_loop)
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only, never return into pytest
        status = 1
        try:
            status = 0 if HandlerGuard().call(_running_loop) is not parent_loop else 2
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0


def test_guard_async_interrupt_in_another_thread_cancels_the_coroutine() -> None:
    """Outside the main thread (a threads pool) the interrupt cancels the coroutine too."""
    probe = _AsyncProbe()
    raised: list[BaseException] = []
    guards: list[HandlerGuard] = []

    def run() -> None:
        guard = HandlerGuard()
        guards.append(guard)
        try:
            with guard.installed():
                guard.call(probe)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert probe.started.wait(5)
    guards[0].interrupt("cancelled by ops", error=RoundCancelled)
    thread.join(5)
    assert [type(exc) for exc in raised] == [RoundCancelled]
    assert probe.marks == ["cancelled: cancelled by ops", "finally"]


def test_guard_async_soft_time_limit_cancels_the_coroutine_and_raises_it() -> None:
    """Celery's soft time limit (billiard's SIGUSR1 handler) during an async handler cancels
    the coroutine, lets its finally run, then raises SoftTimeLimitExceeded from `call`."""
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    try:
        guard, probe = HandlerGuard(), _AsyncProbe()
        main = threading.get_ident()
        _interrupt_once_started(probe, lambda: signal.pthread_kill(main, signal.SIGUSR1))
        with guard.installed(), pytest.raises(SoftTimeLimitExceeded):
            guard.call(probe)
        assert probe.marks == ["cancelled: SoftTimeLimitExceeded()", "finally"]
        assert signal.getsignal(signal.SIGUSR1) is soft_timeout_sighandler
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("handler_kind", ["sync", "async"])
def test_guard_interrupted_before_the_call_raises_without_running_the_handler(
    handler_kind: str,
) -> None:
    """An interrupt that came before the handler started stops it from starting at all."""
    ran: list[str] = []

    def sync_handler() -> None:
        ran.append("sync")

    async def async_handler() -> None:
        ran.append("async")

    guard = HandlerGuard()
    with guard.installed():
        guard.interrupt("cancelled early", error=RoundCancelled)
        with pytest.raises(RoundCancelled, match="cancelled early"):
            guard.call(sync_handler if handler_kind == "sync" else async_handler)
    assert ran == []


def test_guard_async_coroutine_cancelled_from_inside_raises_runtime_error() -> None:
    """A coroutine that ends cancelled by its own doing fails the round (a plain error),
    not a cancel or a lost lease."""

    async def cancels_itself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    with (
        HandlerGuard().installed() as guard,
        pytest.raises(RuntimeError, match="cancelled from inside"),
    ):
        guard.call(cancels_itself)
