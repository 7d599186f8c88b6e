"""Specification of taskdispatch.lease: the per-account lease and the handler guard.

Real Redis (the session's private server), directly or through the flaky proxy. Renewals
use short TTLs so that a test sees several of them within a second or two.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from taskdispatch.clock import now_ms
from taskdispatch.connections import lease_client
from taskdispatch.keys import Keys
from taskdispatch.lease import AccountLease, HandlerGuard, LeaseLost
from taskdispatch.settings import Settings
from tests.support.probes import wait_until
from tests.support.proxy import FlakyProxy

KEYS = Keys("td:")
LOCK = KEYS.lock("acct-1")
RUNNING = KEYS.running()
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


def test_lease_acquire_of_a_held_account_fails(make_lease: MakeLease, raw: redis.Redis) -> None:
    """A second lease on the same account key is refused while the first holds it."""
    first, second = make_lease(), make_lease()
    assert first.acquire() is True
    assert second.acquire() is False
    assert raw.get(LOCK) == first.token


def test_lease_acquire_after_release_succeeds(make_lease: MakeLease, raw: redis.Redis) -> None:
    """Releasing deletes the key, so the account can be leased again at once."""
    first, second = make_lease(), make_lease()
    first.acquire()
    first.release()
    assert second.acquire() is True
    assert raw.get(LOCK) == second.token


def test_lease_release_of_a_key_taken_over_keeps_the_new_holder(
    make_lease: MakeLease, raw: redis.Redis
) -> None:
    """Release is compare-and-delete: a key that now holds another token is left alone."""
    lease = make_lease()
    lease.acquire()
    raw.set(LOCK, "newer-holder")
    lease.release()
    assert raw.get(LOCK) == "newer-holder"


def test_lease_renewal_keeps_the_key_past_its_ttl(make_lease: MakeLease, raw: redis.Redis) -> None:
    """While renewing, the lease outlives several TTLs and is never declared lost."""
    lease = make_lease()
    lease.acquire()
    lease.start_renewing(on_lost=lambda reason: None)
    time.sleep(2.5 * TTL_MS / 1000)
    assert raw.get(LOCK) == lease.token
    assert not lease.lost.is_set()


def test_lease_renewal_pushes_the_running_score(make_lease: MakeLease, raw: redis.Redis) -> None:
    """Each renewal moves the round's running-index score to its new lease expiry."""
    raw.zadd(RUNNING, {"task-1": 1})
    lease = make_lease(clock_ms=lambda: 1_000_000)
    lease.acquire()
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
    lease.acquire()
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
    lease.acquire()
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
    assert lease.acquire()
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
