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

from celery import Celery, bootsteps, states
from celery.app import trace as celery_trace
from celery.exceptions import Ignore
from celery.signals import beat_init, task_received, worker_init, worker_process_init, worker_ready
from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.exceptions import RoundFailedError, StoreUnavailableError
from taskdispatch.domain.liveness import HEARTBEAT_RETENTION_MS
from taskdispatch.engine import _broker_patches, lease
from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.engine.control import install_round_controls
from taskdispatch.engine.handlers import announcement, load_registry
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.engine.watchdog import EXIT_DEAF, PROBE_TASK, ConsumeWatchdog
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.checks import EvictionPolicyError, run_startup_checks
from taskdispatch.store.connections import (
    broker_client,
    broker_transport_options,
    broker_url,
    store_client,
)

__all__ = ["create_celery_app", "runner", "task_state"]

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
    """Announce the queues this worker consumes and the task types it has handlers for
    (the API accepts those while the worker is alive), and start proving that it consumes
    them."""
    r = runner()
    # Not the worker's own direct queue: only the probes use it.
    names = (q.name for q in sender.task_consumer.queues if not q.name.endswith(".dq2"))
    announced = {
        r.keys.worker_queues(): ",".join(sorted(names)),
        r.keys.worker_handlers(): announcement(r.registry),
    }
    try:
        with r.redis.pipeline(transaction=False) as pipe:
            _announce(pipe, sender.hostname, announced)
            pipe.execute()
    except RedisError as exc:
        log.warning("worker queues and task types not announced: %s", exc)
    _start_watchdog(sender, r, announced)


def _announce(pipe: Any, hostname: str, announced: dict[str, str]) -> None:
    """Queue this worker's announcements (hash key -> its value for this worker). Sent at
    start and with every heartbeat, so a Redis that lost its data while the worker lived
    learns them again within seconds."""
    for key, value in announced.items():
        pipe.hset(key, hostname, value)


@task_received.connect  # type: ignore[untyped-decorator]
def _on_task_received(**_: Any) -> None:
    if _watchdog is not None:
        _watchdog.received()


_watchdog: ConsumeWatchdog | None = None


def _start_watchdog(consumer: Any, r: RoundRunner, announced: dict[str, str]) -> None:
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
            _announce(pipe, hostname, announced)
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

    def shutting_down() -> bool:
        # Every warm shutdown (SIGTERM, Ctrl-C, SIGHUP's restart, `celery control shutdown`,
        # a fatal consumer error) goes through WorkController.stop(), whose blueprint leaves
        # RUN before the pool drains. Not Celery's `worker_shutting_down` signal nor the
        # should_stop/should_terminate flags: only signal handlers send or set those
        # (`celery control shutdown` does neither), and a flag set while the main loop is
        # stuck (the very fault this watchdog is for, celery#10205) would silence it with
        # nothing left to act on the flag; the blueprint moves only once the loop acts.
        return bool(consumer.controller.blueprint.state != bootsteps.RUN)

    def withdraw() -> None:
        # A draining worker takes no new round: readiness, `workers_alive` and the waiting
        # reasons must not count it as a consumer while its last rounds finish.
        r.redis.zrem(r.keys.workers(), hostname)

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
        shutting_down=shutting_down,
        withdraw=withdraw,
        probe_every_s=s.worker_probe_every_s,
        deaf_after_s=s.worker_deaf_after_s,
    )
    _watchdog.start()


def task_state(outcome: str) -> str:
    """The state a round's Celery task ends in, by the round's outcome: what Flower and
    `celery events` show. A round that did not run (skipped, dropped, waiting) succeeded
    as a task: its summary says why."""
    if outcome in ("failed", "lost"):
        return str(states.FAILURE)
    if outcome == "cancelled":
        return str(states.REVOKED)
    return str(states.SUCCESS)


def _end_task(task: Any, task_id: str, summary: dict[str, Any], **info: Any) -> dict[str, Any]:
    """Return the summary (SUCCESS), or end the task as FAILURE or REVOKED."""
    outcome = str(summary.get("outcome"))
    state = task_state(outcome)
    account_id = str(summary.get("account") or info.get("account_id") or "?")
    if state == states.FAILURE:
        raise RoundFailedError(
            task_id=task_id,
            account_id=account_id,
            round_num=summary.get("round"),
            outcome=outcome,
            error=str(summary.get("error") or "no error recorded"),
        )
    if state == states.REVOKED:
        # Celery's documented way to end a task in a state of one's choice: the event that
        # monitors read, then Ignore (no result, message acked). Not by raising Celery's
        # `Terminated` (what its own terminate reports): the main process would then fire
        # `task_revoked` as if a control command had killed the round (control.py listens).
        log.info(
            "round %s of task %s (account %s) cancelled; Celery state REVOKED",
            summary.get("round"),
            task_id,
            account_id,
        )
        try:
            task.send_event("task-revoked", terminated=True, signum=None, expired=False)
        except (OperationalError, OSError) as exc:
            log.warning("task-revoked event of task %s not sent: %s", task_id, exc)
        raise Ignore()
    return summary


# Internal tasks whose "received"/"succeeded" INFO lines Celery would log every few seconds.
_QUIET_TASKS = frozenset({PROBE_TASK})
# The loggers of those lines (celery.worker.strategy: received; celery.app.trace: the end).
_TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


class _QuietInternalTasks(logging.Filter):
    """Drops Celery's per-task lines of internal tasks, unless the log level is DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, dict) or args.get("name") not in _QUIET_TASKS:
            return True
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_quiet_internal_tasks = _QuietInternalTasks()


def create_celery_app(settings: Settings | None = None) -> Celery:
    _broker_patches.apply()
    # Celery's own "received" line, with the round's kwargs (task id, account, task type), so
    # that every worker line names the task and its account; the "succeeded" line shows
    # the round's summary, which names them too.
    celery_trace.LOG_RECEIVED = "Task %(name)s[%(id)s] received: %(kwargs)s"
    for name in _TASK_LINE_LOGGERS:
        # In the main process and, inherited through the fork, in every pool process.
        logging.getLogger(name).addFilter(_quiet_internal_tasks)
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
    # Flower's Terminate and `celery control revoke|terminate` cancel a round (control.py).
    install_round_controls(runner)

    @app.task(name=PROBE_TASK, send_events=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def probe() -> None:
        """The watchdog's self-probe: receiving it proves the consumer consumes."""

    # `throws`: a failed round is expected, so Celery logs one line without a traceback.
    @app.task(name=ROUND_TASK, bind=True, throws=(RoundFailedError,))  # type: ignore[untyped-decorator]
    def run_round(self: Any, task_id: str, fence: int, slot_ms: int, **info: Any) -> dict[str, Any]:
        """One round of one task (account_id and task_type ride along for Flower)."""
        r = runner()
        # The node name (w1@host) tells rounds apart in history better than the host alone.
        r.hostname = self.request.hostname or r.hostname
        summary = r.run(RoundMessage(task_id=task_id, fence=fence, slot_ms=slot_ms))
        return _end_task(self, task_id, summary, **info)

    return app
