"""The Celery app: configuration and the round task (housekeeping runs in the beat).

`celery_app.py` at the top of the repository builds the app with `create_celery_app()`,
so `celery -A celery_app worker|beat|flower|inspect` work as written.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import cache
from typing import Any

from celery import Celery
from celery.app import trace as celery_trace
from celery.signals import beat_init, task_received, worker_init, worker_process_init, worker_ready
from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state
from redis.exceptions import RedisError

from taskdispatch import _broker_patches, lease
from taskdispatch.beat import ROUND_TASK
from taskdispatch.checks import EvictionPolicyError, run_startup_checks
from taskdispatch.clock import now_ms
from taskdispatch.connections import (
    broker_client,
    broker_transport_options,
    broker_url,
    store_client,
)
from taskdispatch.exceptions import StoreUnavailableError
from taskdispatch.handlers import load_registry
from taskdispatch.liveness import HEARTBEAT_RETENTION_MS
from taskdispatch.rounds import RoundMessage, RoundRunner
from taskdispatch.settings import Settings, get_settings
from taskdispatch.watchdog import EXIT_DEAF, PROBE_TASK, ConsumeWatchdog

__all__ = ["create_celery_app", "runner"]

log = logging.getLogger(__name__)

# How often a consuming worker refreshes its heartbeat.
_ALIVE_EVERY_S = 2.0
# After a deaf worker asked for its own warm shutdown, the longest it waits before exiting.
_DEAF_EXIT_GRACE_S = 5.0


@cache
def runner() -> RoundRunner:
    """One runner (and Redis pool) per worker process, made after the fork."""
    settings = get_settings()
    return RoundRunner(
        store_client(settings), settings, load_registry(settings), hostname=socket.gethostname()
    )


@worker_init.connect  # type: ignore[untyped-decorator]
def _check_worker_startup(**_: Any) -> None:
    _startup_checks("worker")


@beat_init.connect  # type: ignore[untyped-decorator]
def _check_beat_startup(**_: Any) -> None:
    _startup_checks("beat")


def _startup_checks(process: str) -> None:
    """Refuse to run on an unreachable or evicting Redis, with one clear line, no traceback."""
    try:
        run_startup_checks(get_settings(), process=process)
    except (StoreUnavailableError, EvictionPolicyError) as exc:
        log.critical("%s", exc)
        raise SystemExit(1) from None


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _fresh_runner_after_fork(**_: Any) -> None:
    runner.cache_clear()
    # Only a prefork pool process may exit when its handler ignores a lease fence.
    lease.in_pool_process = True


@worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(sender: Any, **_: Any) -> None:
    """Record the queues this worker consumes and start proving that it consumes them."""
    r = runner()
    # Not the worker's own direct queue: only the probes use it.
    names = (q.name for q in sender.task_consumer.queues if not q.name.endswith(".dq2"))
    queues = ",".join(sorted(names))
    try:
        r.redis.hset(r.keys.worker_queues(), sender.hostname, queues)
    except RedisError as exc:
        log.warning("worker queues not recorded: %s", exc)
    _start_watchdog(sender, r)


@task_received.connect  # type: ignore[untyped-decorator]
def _on_task_received(**_: Any) -> None:
    if _watchdog is not None:
        _watchdog.received()


_watchdog: ConsumeWatchdog | None = None


def _start_watchdog(consumer: Any, r: RoundRunner) -> None:
    global _watchdog
    s = r.settings
    app = consumer.app
    hostname = consumer.hostname
    # None for a broker that is not Redis: the probe alone then judges.
    broker = broker_client(s, timeout_s=3)
    last_alive = [0.0]

    def record_alive() -> None:
        if time.monotonic() - last_alive[0] < _ALIVE_EVERY_S:
            return
        now = now_ms()
        with r.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(r.keys.workers(), {hostname: now})
            pipe.zremrangebyscore(r.keys.workers(), "-inf", now - HEARTBEAT_RETENTION_MS)
            pipe.execute()
        last_alive[0] = time.monotonic()

    def saturated() -> bool:
        # With prefetch disabled the consumer fetches only while a pool process is free.
        return len(worker_state.reserved_requests) >= int(consumer.pool.num_processes)

    def broker_answers() -> bool:
        try:
            return broker is None or bool(broker.ping())
        except (RedisError, OSError):
            return False

    def send_probe() -> None:
        app.send_task(
            PROBE_TASK,
            queue=worker_direct(hostname),
            expires=s.worker_deaf_after_s,
            ignore_result=True,
        )

    def on_deaf(reason: str) -> None:
        log.critical("%s; exiting with status %d so that it is restarted", reason, EXIT_DEAF)
        # A warm shutdown lets the loop finish what it runs; if the loop itself is stuck,
        # leave anyway (pool processes die with us, their rounds are recovered).
        worker_state.should_stop = EXIT_DEAF
        threading.Timer(_DEAF_EXIT_GRACE_S, os._exit, args=(EXIT_DEAF,)).start()

    _watchdog = ConsumeWatchdog(
        send_probe=send_probe,
        record_alive=record_alive,
        broker_answers=broker_answers,
        saturated=saturated,
        on_deaf=on_deaf,
        probe_every_s=s.worker_probe_every_s,
        deaf_after_s=s.worker_deaf_after_s,
    )
    _watchdog.start()


def create_celery_app(settings: Settings | None = None) -> Celery:
    _broker_patches.apply()
    # Celery's own "received" line, with the round's kwargs (task id, account, task type), so
    # that every worker line names the task and its account; the "succeeded" line shows
    # the round's summary, which names them too.
    celery_trace.LOG_RECEIVED = "Task %(name)s[%(id)s] received: %(kwargs)s"
    settings = settings or get_settings()
    app = Celery("taskdispatch", broker=broker_url(settings))
    app.conf.update(
        task_default_queue=settings.default_queue,
        task_ignore_result=True,
        # Rounds are guarded by fences, leases and recovery, not by redelivery: a message
        # whose worker dies is re-dispatched by the beat's claim timeout or recovered.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        # Fetch a round only when a pool process is free: a worker that dies then loses the
        # rounds it runs (their leases recover them) and never rounds it merely held.
        worker_disable_prefetch=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        # With a Sentinel broker, also the master's name and how to reach the Sentinels.
        broker_transport_options={"visibility_timeout": 3600, **broker_transport_options(settings)},
        timezone=settings.timezone,
        enable_utc=True,
        beat_max_loop_interval=settings.beat_max_sleep_s,
    )

    # Each worker also consumes its own direct queue (<node>.dq2), where its probes go.
    app.conf.worker_direct = True

    @app.task(name=PROBE_TASK, send_events=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def probe() -> None:
        """The watchdog's self-probe: receiving it proves the consumer consumes."""

    @app.task(name=ROUND_TASK, bind=True)  # type: ignore[untyped-decorator]
    def run_round(self: Any, task_id: str, fence: int, slot_ms: int, **info: Any) -> dict[str, Any]:
        """One round of one task (account_id and task_type ride along for Flower)."""
        r = runner()
        # The node name (w1@host) tells rounds apart in history better than the host alone.
        r.hostname = self.request.hostname or r.hostname
        return r.run(RoundMessage(task_id=task_id, fence=fence, slot_ms=slot_ms))

    return app
