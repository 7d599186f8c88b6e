"""Start and stop the real processes a measurement needs: celery worker/beat, uvicorn.

Each child gets its own session (process group), so stopping it also stops what it forked
(prefork pool children), and only what this bench started is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.probe import ROOT

__all__ = ["Child", "bench_env"]


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a child: the bench Redis, no API token, extra settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
    env.update(TASKDISPATCH_REDIS_URL=redis_url, PYTHONUNBUFFERED="1", **extra)
    return env


class Child:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time of the child and everything it forked (user + system)."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL to the child's own process group."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group we created
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self._log.close()


def wait_until(predicate: object, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(step_s)
    return False
