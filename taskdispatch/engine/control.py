"""Celery's own controls on a round do what the API's cancel does.

Flower's Terminate (`revoke(terminate=True)`), `celery control terminate <signal> <id>`
and `celery control revoke <id>` would otherwise kill the pool process running the round
(recovery then records it lost and runs the slot again) or do nothing to a running round.
Here, in the worker's main process:

- a revoke or terminate naming a round in progress on this worker asks it to stop, as
  `POST /api/v1/tasks/{id}/cancel` does: the handler is interrupted within a second (a
  `RoundCancelled` raised inside it), stopped the hard way only if it ignores that for
  `cancel_grace_s`, and the round is recorded `cancelled`; the pool process is not signalled;
- a revoked round message that was still queued is discarded by Celery when a worker
  receives it (`task_revoked` signal): its slot is recorded `cancelled` and the task moves
  to its next slot, instead of being claimed again after the dispatch timeout.

Other tasks' revokes go to Celery's own commands unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery.signals import task_revoked
from celery.utils.functional import maybe_list
from celery.worker import state as worker_state
from celery.worker.control import Panel, ok
from redis.exceptions import RedisError

from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.engine.rounds import RoundMessage, RoundRunner

__all__ = ["install_round_controls"]

log = logging.getLogger(__name__)

_INSTALLED_MARK = "_taskdispatch_rounds"


def install_round_controls(runner: Callable[[], RoundRunner]) -> None:
    """Route Celery's revoke and terminate commands for rounds to the cancel (idempotent)."""
    if not getattr(Panel.data["revoke"], _INSTALLED_MARK, False):
        Panel.data["revoke"] = _rounds_first(Panel.data["revoke"], runner, command="revoke")
        Panel.data["terminate"] = _rounds_first(
            Panel.data["terminate"], runner, command="terminate"
        )
    task_revoked.connect(_queued_round_revoked(runner), weak=False, dispatch_uid=__name__)


def _rounds_first(
    celery_command: Callable[..., Any], runner: Callable[[], RoundRunner], *, command: str
) -> Callable[..., Any]:
    def handle(
        state: Any,
        task_id: Any,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> Any:
        ids = set(maybe_list(task_id) or [])
        # `terminate` takes (state, signal, task_id): its signal arrives as `terminate`'s slot.
        if command == "terminate":
            by = f"celery control terminate {signal or ''}".strip()
        elif terminate:
            by = f"celery control revoke --terminate ({signal or 'SIGTERM'})"
        else:
            by = "celery control revoke"
        stopped = _cancel_running(ids, runner, by=by)
        rest = ids - stopped
        if not rest:
            return ok(f"rounds {', '.join(sorted(stopped))} asked to stop (recorded cancelled)")
        if command == "terminate":
            return celery_command(state, signal, list(rest), **kwargs)
        return celery_command(state, list(rest), terminate=terminate, signal=signal, **kwargs)

    setattr(handle, _INSTALLED_MARK, True)
    return handle


def _cancel_running(ids: Iterable[str], runner: Callable[[], RoundRunner], *, by: str) -> set[str]:
    """The ids among `ids` of rounds running on this worker that were asked to stop."""
    wanted = set(ids)
    stopped: set[str] = set()
    for request in list(worker_state.active_requests):
        if request.id not in wanted or request.name != ROUND_TASK:
            continue
        task_id = (request.kwargs or {}).get("task_id")
        if not task_id:
            continue
        try:
            if runner().request_cancel(str(task_id), by=by):
                stopped.add(request.id)
                log.warning("round of task %s: stop asked by %s", task_id, by)
        except RedisError as exc:
            log.error("could not ask the round of task %s to stop: %s", task_id, exc)
    return stopped


def _queued_round_revoked(runner: Callable[[], RoundRunner]) -> Callable[..., None]:
    def on_revoked(
        sender: Any = None,
        request: Any = None,
        terminated: bool = False,
        expired: bool = False,
        **_: Any,
    ) -> None:
        # A terminated one is a round that ran and ended cancelled (it says so itself).
        if terminated or expired or getattr(sender, "name", None) != ROUND_TASK:
            return
        kwargs = getattr(request, "kwargs", None) or {}
        try:
            msg = RoundMessage(
                task_id=str(kwargs["task_id"]),
                fence=int(kwargs["fence"]),
                slot_ms=int(kwargs["slot_ms"]),
            )
        except (KeyError, TypeError, ValueError):
            return
        try:
            if runner().cancel_queued(msg, by="celery control revoke"):
                log.warning("queued round of task %s revoked: slot recorded cancelled", msg.task_id)
        except RedisError as exc:
            log.error("could not record the revoked round of task %s: %s", msg.task_id, exc)

    return on_revoked
