"""The per-account lease: two rounds of one account never overlap.

A lease is `SET lock:{account} <token> NX PX ttl`. The holder renews it from a
background thread while the round runs and releases it by compare-and-delete, so a
holder whose lease expired (it was paused, or lost Redis) can never extend or delete
the lease a newer holder took. Renewal also pushes the round's `running` score, which
recovery reads to find rounds whose worker died.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

__all__ = ["AccountLease"]

log = logging.getLogger(__name__)

ClockMs = Callable[[], int]

# KEYS[1] lock key, KEYS[2] running zset; ARGV[1] token, ARGV[2] ttl ms, ARGV[3] task id,
# ARGV[4] new lease expiry ms. Returns 1 if renewed, 0 if the lease is no longer ours.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[4], ARGV[3])
return 1
"""

# KEYS[1] lock key; ARGV[1] token. Returns 1 if deleted, 0 if it was not ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class AccountLease:
    """Context manager: `with AccountLease(...) as lease: if lease.acquired: ...`."""

    def __init__(
        self,
        redis: Redis,
        *,
        lock_key: str,
        running_key: str,
        task_id: str,
        ttl_ms: int,
        clock_ms: ClockMs,
    ) -> None:
        self.redis = redis
        self.lock_key = lock_key
        self.running_key = running_key
        self.task_id = task_id
        self.ttl_ms = ttl_ms
        self.clock_ms = clock_ms
        self.token = uuid.uuid4().hex
        self.acquired = False
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        self.acquired = bool(self.redis.set(self.lock_key, self.token, nx=True, px=self.ttl_ms))
        return self.acquired

    def start_renewing(self) -> None:
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.task_id}", daemon=True
        )
        self._thread.start()

    def _renew_loop(self) -> None:
        interval_s = self.ttl_ms / 3000
        while not self._stop.wait(interval_s):
            try:
                expiry = self.clock_ms() + self.ttl_ms
                args: list[str | int] = [self.token, self.ttl_ms, self.task_id, expiry]
                if not self._renew(keys=[self.lock_key, self.running_key], args=args):
                    log.warning("lease %s lost; the round's outcome will be fenced", self.lock_key)
                    self.lost.set()
                    return
            except RedisError as exc:
                # Keep trying: the lease survives short outages as long as its TTL lasts.
                log.warning("renewing lease %s failed: %s", self.lock_key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.acquired:
            try:
                self._release(keys=[self.lock_key], args=[self.token])
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
