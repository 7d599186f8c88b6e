"""Specification of `taskdispatch run --queues` (`make run RUN_ARGS='--queues a,b'`): the
worker it supervises consumes the default queue and the queues given."""

from __future__ import annotations

import pytest

from taskdispatch.dev import supervisor
from taskdispatch.settings import Settings

SETTINGS = Settings(default_queue="celery")


def _worker_argv(argv: list[str]) -> list[str]:
    args = supervisor._parse_args(argv, SETTINGS)
    children = supervisor.build_children(
        SETTINGS,
        redis_url="redis://127.0.0.1:1/0",
        api_host="127.0.0.1",
        api_port=1,
        flower_port=2,
        queues=args.queues,
    )
    [worker] = [child for child in children if child.name == "worker"]
    return worker.argv


def test_run_queues_worker_consumes_the_default_queue_and_those_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--queues dev-a,dev-b` adds them after the default queue, each once."""
    monkeypatch.delenv(supervisor.QUEUES_ENV, raising=False)
    argv = _worker_argv(["--queues", "dev-a, dev-b,celery"])
    assert argv[argv.index("-Q") + 1] == "celery,dev-a,dev-b"


def test_run_queues_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKDISPATCH_RUN_QUEUES is the default of `--queues`."""
    monkeypatch.setenv(supervisor.QUEUES_ENV, "dev-a")
    argv = _worker_argv([])
    assert argv[argv.index("-Q") + 1] == "celery,dev-a"


def test_run_without_queues_leaves_the_worker_on_its_default_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No extra queue: no -Q, the worker consumes Celery's default (the default queue)."""
    monkeypatch.delenv(supervisor.QUEUES_ENV, raising=False)
    assert "-Q" not in _worker_argv([])


@pytest.mark.parametrize("bad", ["dev a", "w1@host.dq2"])
def test_run_queues_bad_name_is_a_usage_error(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name no task could carry stops the command before anything starts."""
    monkeypatch.delenv(supervisor.QUEUES_ENV, raising=False)
    with pytest.raises(SystemExit) as info:
        supervisor._parse_args(["--queues", bad], SETTINGS)
    assert info.value.code == 2
    assert "is not a queue name" in capsys.readouterr().err
