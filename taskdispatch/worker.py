"""The Celery app: configuration and the round task (housekeeping runs in the beat).

`celery_app.py` at the top of the repository builds the app with `create_celery_app()`,
so `celery -A celery_app worker|beat|flower|inspect` work as written.
"""

from __future__ import annotations

import logging
import socket
import time
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import beat_init, heartbeat_sent, worker_init, worker_process_init, worker_ready
from redis.exceptions import RedisError

from taskdispatch import lease
from taskdispatch.checks import EvictionPolicyError, run_startup_checks
from taskdispatch.connections import store_client
from taskdispatch.exceptions import StoreUnavailableError
from taskdispatch.handlers import load_registry
from taskdispatch.rounds import RoundMessage, RoundRunner
from taskdispatch.scheduler import ROUND_TASK
from taskdispatch.settings import Settings, get_settings

__all__ = ["create_celery_app", "runner"]

log = logging.getLogger(__name__)


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
def _record_worker_queues(sender: Any, **_: Any) -> None:
    """Remember which queues this worker consumes (explains `no_worker_for_queue`)."""
    r = runner()
    queues = ",".join(sorted(q.name for q in sender.task_consumer.queues))
    try:
        r.redis.hset(r.keys.worker_queues(), sender.hostname, queues)
    except RedisError as exc:
        log.warning("worker queues not recorded: %s", exc)


@heartbeat_sent.connect  # type: ignore[untyped-decorator]
def _record_worker_heartbeat(sender: Any, **_: Any) -> None:
    """Celery's event heartbeat (every 2 s) also marks the worker alive in Redis.

    The status endpoint counts live workers from this without a broadcast to every
    worker (which `celery inspect ping` needs and which would stall the API).
    """
    r = runner()
    now_ms = time.time_ns() // 1_000_000
    try:
        with r.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(r.keys.workers(), {sender.eventer.hostname: now_ms})
            pipe.zremrangebyscore(r.keys.workers(), "-inf", now_ms - 3_600_000)
            pipe.execute()
    except RedisError as exc:
        log.warning("worker heartbeat not recorded: %s", exc)


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("taskdispatch", broker=settings.effective_broker_url)
    app.conf.update(
        task_default_queue=settings.default_queue,
        task_ignore_result=True,
        # Rounds are guarded by fences, leases and recovery, not by redelivery: a message
        # whose worker dies is re-dispatched by the beat's claim timeout or recovered.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        timezone=settings.timezone,
        enable_utc=True,
        beat_max_loop_interval=settings.beat_max_sleep_s,
    )

    @app.task(name=ROUND_TASK, bind=True)  # type: ignore[untyped-decorator]
    def run_round(self: Any, task_id: str, fence: int, slot_ms: int, **info: Any) -> dict[str, Any]:
        """One round of one task (account_id and task_type ride along for Flower)."""
        r = runner()
        # The node name (w1@host) tells rounds apart in history better than the host alone.
        r.hostname = self.request.hostname or r.hostname
        return r.run(RoundMessage(task_id=task_id, fence=fence, slot_ms=slot_ms))

    return app
