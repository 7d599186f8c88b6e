"""Helpers shared by the fault, hostile-input and security tests (and the soak script)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from taskdispatch.dev.embedded_redis import free_port
from tests.e2e.support import ProbeRound, View, overlaps, unfinished, wait_until

__all__ = [
    "ROOT",
    "ApiProcess",
    "duplicate_slots",
    "iso_now",
    "overlaps_by_history",
    "percentile",
]

ROOT = Path(__file__).resolve().parents[2]


def iso_now(tz: str = "Asia/Shanghai") -> str:
    return datetime.now(ZoneInfo(tz)).isoformat(timespec="milliseconds")


def duplicate_slots(records: Iterable[ProbeRound]) -> list[tuple[str, int]]:
    """(task_id, scheduled_ms) pairs that ran more than once."""
    seen = Counter((x["task_id"], x["scheduled_ms"]) for x in records)
    return [key for key, n in seen.items() if n > 1]


def overlaps_by_history(
    view: View, starts: list[ProbeRound], rounds: list[ProbeRound]
) -> list[tuple[ProbeRound, ProbeRound]]:
    """Overlapping rounds of one account, where the probe's own end record may be missing.

    A probe round whose handler failed before it wrote its end (its Redis call failed
    during an outage) ended when its history record says; one with no such record is
    taken as never ended, so it overlaps everything after it.
    """
    ended = list(rounds)
    history: dict[str, list[dict[str, Any]]] = {}
    for x in unfinished(starts, rounds):
        records = history.setdefault(x["task_id"], view.runs(x["task_id"]))
        match = [
            r
            for r in records
            if r["scheduled_ms"] == x["scheduled_ms"] and r["outcome"] in ("ok", "failed")
        ]
        if match:
            ended.append({**x, "end_ms": match[0]["finished_ms"]})
    return overlaps(starts, ended, open_end_ms={})


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class ApiProcess:
    """`uvicorn api.main:app` in a child process on a free port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "api.main:app"),
                *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"),
            ],
            cwd=ROOT,
            env={**inherited, "PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def healthy() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"the API exited during startup:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout_s, interval_s=0.1, message="the API to answer")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def __enter__(self) -> ApiProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def elapsed_ms(since_monotonic: float) -> float:
    return (time.monotonic() - since_monotonic) * 1000


def error_body_ok(body: Any) -> bool:
    """The standard error body: {"success": false, "error": "<non-empty text>", ...}."""
    return (
        isinstance(body, dict)
        and body.get("success") is False
        and isinstance(body.get("error"), str)
        and bool(body["error"])
    )
