"""A real Flower process for the tests, and the states it shows through its HTTP API.

Flower learns task states only from the events it receives while it runs, so a test
starts it, waits until `sees_worker` (a worker's heartbeat events reached it), and only
then makes the rounds whose states it reads. Its API is open (`FLOWER_UNAUTHENTICATED_API`)
and bound to 127.0.0.1, as under `make run`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.engine.beat import ROUND_TASK

__all__ = ["Flower", "start_flower"]

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 15.0


class Flower:
    """One `celery -A celery_app flower` (the leader of its own process group)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
        self.popen = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "celery_app", "flower"),
                *(f"--port={self.port}", "--address=127.0.0.1"),
            ],
            cwd=ROOT,
            env={**inherited, **env, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _get(self, path: str, **params: Any) -> Any:
        assert self.popen.poll() is None, f"Flower exited:\n{self.log()}"
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def sees_worker(self, node: str) -> bool:
        """Whether Flower's event state holds `node` alive (its heartbeats arrive)."""
        try:
            return self._get("/api/workers", status="true").get(node) is True
        except httpx.HTTPError:
            return False

    def round_tasks(self, task_id: str) -> list[dict[str, Any]]:
        """The Celery tasks of the rounds of taskdispatch task `task_id`, each with its
        Celery id as "uuid" and its "state" (SUCCESS, FAILURE, REVOKED, ...)."""
        listed = self._get("/api/tasks", taskname=ROUND_TASK)
        return [
            {**task, "uuid": uuid}
            for uuid, task in listed.items()
            if task_id in str(task.get("kwargs") or "")
        ]

    def task_info(self, celery_id: str) -> dict[str, Any]:
        """Flower's record of one Celery task (state, exception, result, ...)."""
        info: dict[str, Any] = self._get(f"/api/task/info/{celery_id}")
        return info

    def terminate(self, celery_id: str) -> dict[str, Any]:
        """Flower's Terminate button: `POST /api/task/revoke/<id>?terminate=true`."""
        assert self.popen.poll() is None, f"Flower exited:\n{self.log()}"
        response = httpx.post(
            f"{self.url}/api/task/revoke/{celery_id}", params={"terminate": "true"}, timeout=10
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (Flower exits 0 on it), then SIGKILL the group if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()


@contextlib.contextmanager
def start_flower(env: dict[str, str], log_path: Path) -> Iterator[Flower]:
    """Flower against the broker of `env` (a stack's TASKDISPATCH_* variables); stopped on
    exit, its log printed if the block failed."""
    flower = Flower(env, log_path)
    try:
        yield flower
    except BaseException:
        print(f"\n===== Flower log ({log_path}) =====\n{flower.log()}")
        raise
    finally:
        flower.stop()
