"""Specification of what the worker tells Celery and its log about a round: the Celery state
by outcome, the failure's message, and the internal probe kept out of the INFO log."""

from __future__ import annotations

import logging
import pickle

import pytest
from celery.app import trace as celery_trace
from celery.utils.serialization import get_pickleable_exception

from taskdispatch.domain.exceptions import RoundFailedError
from taskdispatch.engine.beat import ROUND_TASK
from taskdispatch.engine.watchdog import PROBE_TASK
from taskdispatch.engine.worker import create_celery_app, task_state
from taskdispatch.settings import Settings


@pytest.mark.parametrize("outcome", ["failed", "lost"])
def test_task_state_failed_or_lost_round_ends_as_failure(outcome: str) -> None:
    """A round that did not complete its work shows as FAILURE in Flower."""
    assert task_state(outcome) == "FAILURE"


def test_task_state_cancelled_round_ends_as_revoked() -> None:
    """A round an operator stopped shows as REVOKED, as Celery's own terminate does."""
    assert task_state("cancelled") == "REVOKED"


@pytest.mark.parametrize("outcome", ["ok", "skipped", "dropped", "waiting"])
def test_task_state_round_that_ran_or_did_not_need_to_ends_as_success(outcome: str) -> None:
    """A round that ran fine, or a message that correctly led to no run, is a successful
    task; its summary (the task's result) says which."""
    assert task_state(outcome) == "SUCCESS"


def test_round_failed_error_names_task_account_round_and_error() -> None:
    """The message Flower and the log show says which round of which task and account
    failed, and why."""
    exc = RoundFailedError(
        task_id="t-1", account_id="acct-1", round_num=4, outcome="failed", error="E: boom"
    )
    assert str(exc) == "round 4 of task t-1 (account acct-1) failed: E: boom"


def test_round_failed_error_crosses_the_pool_pipe_as_itself() -> None:
    """Celery pickles a pool process's exception for the main process: it must arrive as a
    RoundFailedError (not Celery's unpickleable wrapper) with its fields."""
    exc = RoundFailedError(task_id="t-1", account_id="a", round_num=None, outcome="lost", error="x")
    assert get_pickleable_exception(exc) is exc
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is RoundFailedError
    assert (again.task_id, again.round_num, str(again)) == ("t-1", None, str(exc))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _task_line(name: str, *, level: int) -> list[str]:
    """What the log shows of Celery's "succeeded" line for a task named `name`."""
    create_celery_app(Settings())
    handler = _Lines()
    logger = logging.getLogger("celery.app.trace")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(level)
    try:
        args = {"name": name, "id": "c-1", "runtime": 0.01, "return_value": None}
        logger.info(celery_trace.LOG_SUCCESS, args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return handler.lines


def test_worker_log_probe_lines_are_hidden_at_info() -> None:
    """The watchdog's probe runs every few seconds: its task lines stay out of the INFO log."""
    assert _task_line(PROBE_TASK, level=logging.INFO) == []


def test_worker_log_probe_lines_show_at_debug() -> None:
    """At DEBUG, where the watchdog's own lines are, the probe's task lines show too."""
    assert len(_task_line(PROBE_TASK, level=logging.DEBUG)) == 1


def test_worker_log_round_lines_show_at_info() -> None:
    """The filter is for internal tasks only: a round's lines stay at INFO."""
    assert len(_task_line(ROUND_TASK, level=logging.INFO)) == 1
