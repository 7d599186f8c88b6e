"""Talking to the API in tests: the app in-process (`serve`), or a real uvicorn process
(`ApiProcess`), and the shapes every answer must have."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI

from taskdispatch.dev.embedded_redis import free_port
from tests.support.probes import wait_until

__all__ = [
    "ROOT",
    "TOKEN",
    "ApiProcess",
    "CreateTask",
    "create_body",
    "elapsed_ms",
    "error_body_ok",
    "iso_now",
    "serve",
]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-of-the-tests"

CreateTask = Callable[..., Awaitable[dict[str, Any]]]


def create_body(account_id: str = "account_1", **overrides: Any) -> dict[str, Any]:
    """A valid create body whose window is always open, so timings do not depend on the hour."""
    body: dict[str, Any] = {
        "sys_type": "mac_intel",
        "xhs_account_id": account_id,
        "xhs_account_name": f"name of {account_id}",
        "interval": 3600,
        "valid_time_range": [0, 24],
    }
    body.update(overrides)
    return body


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `app` with the app's lifespan running around it."""
    # Like a real server: an unhandled error reaches the client as the app's 500 response.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


def iso_now(tz: str = "Asia/Shanghai") -> str:
    return datetime.now(ZoneInfo(tz)).isoformat(timespec="milliseconds")


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
