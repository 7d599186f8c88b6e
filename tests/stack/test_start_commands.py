"""The three ways the design document starts the API (section 7.2), typed as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from taskdispatch.dev.embedded_redis import free_port
from tests.support.probes import wait_until

pytestmark = pytest.mark.e2e

Start = Callable[[list[str], int], httpx.Response]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def started(redis_url: str, tmp_path: Path) -> Iterator[Start]:
    """`started(argv, port)`: run `argv` from the checkout, wait for /health, stop it after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], port: int) -> httpx.Response:
        log = (tmp_path / f"{len(procs)}.log").open("wb")
        env = {**os.environ, "TASKDISPATCH_REDIS_URL": redis_url, "API_PORT": str(port)}
        procs.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

        def health() -> httpx.Response | None:
            assert procs[-1].poll() is None, (tmp_path / f"{len(procs) - 1}.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            except httpx.HTTPError:
                return None

        return wait_until(health, timeout_s=30, interval_s=0.2, message=f"{argv[0]} to answer")

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_start_python_m_api_main_answers_health(started: Start) -> None:
    """`python -m api.main` (host and port from API_HOST / API_PORT)."""
    port = free_port()
    assert started([sys.executable, "-m", "api.main"], port).status_code == 200


def test_start_uvicorn_answers_health(started: Start) -> None:
    """`uvicorn api.main:app --host 0.0.0.0 --port 8000` (with a free port)."""
    port = free_port()
    argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "0.0.0.0", "--port", str(port)]
    assert started(argv, port).status_code == 200


def test_start_gunicorn_with_uvicorn_workers_answers_health(started: Start) -> None:
    """`gunicorn api.main:app -w 4 -k uvicorn.workers.UvicornWorker --bind 0.0.0.0:8000`."""
    port = free_port()
    argv = [str(BIN / "gunicorn"), "api.main:app", "-w", "4", "-k", "uvicorn.workers.UvicornWorker"]
    argv += ["--bind", f"0.0.0.0:{port}"]
    assert started(argv, port).status_code == 200


def test_python_m_api_main_stops_promptly_with_an_event_stream_open(
    redis_url: str, tmp_path: Path
) -> None:
    """An open live stream (a dashboard left open) does not hold SIGTERM for ever: the
    process exits within its graceful-shutdown bound."""
    port = free_port()
    env = {**os.environ, "TASKDISPATCH_REDIS_URL": redis_url, "API_PORT": str(port)}
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.main"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s=30, interval_s=0.2, message="the API to answer")
        with httpx.stream("GET", f"{base}/api/v1/events", timeout=30) as stream:
            assert stream.status_code == 200
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        # uvicorn ends by re-raising the signal it stopped for: -SIGTERM, after a clean stop.
        log_text = (tmp_path / "api.log").read_text()
        assert proc.returncode in (0, -signal.SIGTERM), log_text
        assert "Application shutdown complete" in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
