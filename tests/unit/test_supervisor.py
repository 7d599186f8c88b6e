"""Specification of the `make run` supervisor's reaction to a child that exits."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

from taskdispatch.dev.supervisor import Child, Console, StopRequest, Supervisor
from taskdispatch.watchdog import EXIT_DEAF

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
    deadline = time.monotonic() + 20
    while not (marker.exists() and marker.read_text() == "2") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "2"
    assert result == [], "the supervisor stopped"
    stop(signal.SIGTERM)
    while not result and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result == [0]
    text = out.getvalue()
    assert f"worker exited with status {EXIT_DEAF} and asked to be restarted" in text
    assert child.restarts == 1


def test_supervisor_child_exiting_with_another_status_stops_the_stack(tmp_path: Path) -> None:
    """Any other exit is a death: everything stops and the supervisor exits 1."""
    child = Child("beat", [sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ))
    _, out, _, result = _supervise(child)
    deadline = time.monotonic() + 20
    while not result and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result == [1]
    assert "beat exited unexpectedly (exit code 3)" in out.getvalue()
