"""Specification of the `make run` supervisor's reaction to a child that exits."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from pathlib import Path

from taskdispatch.dev.supervisor import (
    STOP_MARGIN_S,
    Child,
    Console,
    StopRequest,
    Supervisor,
    worker_allowance,
)
from taskdispatch.engine.watchdog import EXIT_DEAF
from taskdispatch.settings import Settings
from tests.support.probes import wait_until

# Exits with EXIT_DEAF on its first start, then stays up: a worker that recovered.
_FLAKY = f"""
import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
starts = int(marker.read_text()) + 1 if marker.exists() else 1
marker.write_text(str(starts))
print("start", starts, flush=True)
if starts == 1:
    sys.exit({EXIT_DEAF})
time.sleep(60)
"""


def _supervise(child: Child) -> tuple[Supervisor, io.StringIO, StopRequest, list[int]]:
    out = io.StringIO()
    stop = StopRequest()
    supervisor = Supervisor([child], Console(out, color=False), stop, grace_s=5)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run([], "http://x")))
    thread.daemon = True
    thread.start()
    return supervisor, out, stop, result


def test_supervisor_child_exiting_with_a_restart_status_is_started_again(tmp_path: Path) -> None:
    """A worker exiting with EXIT_DEAF is restarted, loudly, and the stack keeps running."""
    marker = tmp_path / "starts"
    child = Child(
        "worker",
        [sys.executable, "-c", _FLAKY, str(marker)],
        dict(os.environ),
        restart_on=frozenset({EXIT_DEAF}),
    )
    _, out, stop, result = _supervise(child)
    wait_until(lambda: marker.exists() and marker.read_text() == "2", 20, message="a restart")
    assert result == [], "the supervisor stopped"
    stop(signal.SIGTERM)
    wait_until(lambda: result, 20, message="the supervisor's exit")
    assert result == [0]
    text = out.getvalue()
    assert f"worker exited with status {EXIT_DEAF} and asked to be restarted" in text
    assert child.restarts == 1


def test_supervisor_child_exiting_with_another_status_stops_the_stack(tmp_path: Path) -> None:
    """Any other exit is a death: everything stops and the supervisor exits 1."""
    child = Child("beat", [sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ))
    _, out, _, result = _supervise(child)
    wait_until(lambda: result, 20, message="the supervisor's exit")
    assert result == [1]
    assert "beat exited unexpectedly (exit code 3)" in out.getvalue()


def test_supervisor_worker_allowance_follows_the_round_time_limit() -> None:
    """Without --grace-period the worker may take the round time limit plus the margin to
    stop, and the stop line says so; --grace-period overrides it."""
    settings = Settings(round_time_limit_s=45)
    assert worker_allowance(settings, None) == (
        45 + STOP_MARGIN_S,
        f"TASKDISPATCH_ROUND_TIME_LIMIT_S 45 s + {STOP_MARGIN_S:g} s",
    )
    assert worker_allowance(settings, 2.0) == (2.0, "--grace-period")


# Ignores SIGTERM for a moment, then exits with the status its argument names.
_SLOW_STOP = """
import signal, sys, time
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print("up", flush=True)
while not stopping:
    time.sleep(0.05)
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[1]))
"""


def _stop_worker(status: int, *, takes_s: float, grace_s: float) -> tuple[list[int], str]:
    child = Child(
        "worker",
        [sys.executable, "-c", _SLOW_STOP, str(status), str(takes_s)],
        dict(os.environ),
        restart_on=frozenset({EXIT_DEAF}),
    )
    out = io.StringIO()
    stop = StopRequest()
    supervisor = Supervisor(
        [child], Console(out, color=False), stop, grace_s=grace_s, grace_note="a test's"
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run([], "http://x")))
    thread.daemon = True
    thread.start()
    wait_until(lambda: "up" in out.getvalue(), 20, interval_s=0.05, message="the worker")
    stop(signal.SIGINT)
    thread.join(timeout=20)
    return result, out.getvalue()


def test_supervisor_worker_exiting_nonzero_while_stopping_is_reported_and_exit_is_1() -> None:
    """A worker that exits with an error during the stop (e.g. EXIT_DEAF) is not a clean
    stop: one line names it and its status, and the supervisor exits 1."""
    result, text = _stop_worker(EXIT_DEAF, takes_s=0.2, grace_s=10)
    assert result == [1]
    assert f"worker exited with status {EXIT_DEAF} (its consumer watchdog gave up) while " in text
    assert "exit status 1" in text


def test_supervisor_worker_finishing_within_its_allowance_exits_0() -> None:
    """A worker that takes its time but exits 0 within the allowance: a clean stop, exit 0;
    the stop line says how long it may take and why."""
    result, text = _stop_worker(0, takes_s=1.0, grace_s=10)
    assert result == [0]
    assert "rounds in progress finish, at most 10 s: a test's)" in text
    assert "SIGKILL" not in text and "!!!" not in text
