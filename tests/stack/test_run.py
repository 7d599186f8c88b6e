"""`taskdispatch run`: the stack comes up, runs rounds, stops cleanly and persists.

Each supervisor runs in its own session, as a terminal's foreground job does, and Ctrl-C is
sent to that whole process group: only the supervisor may act on it, in its own order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.store.keys import Keys

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# The design document's example (section 14), made to run every second in any hour.
TASK = {
    "sys_type": "mac_intel",
    "xhs_account_id": "account_1",
    "xhs_account_name": "账号1",
    "user_query": "开始运营",
    "interval": 1,
    "valid_time_range": [0, 24],
    "kwargs": {"demo_duration_s": 0.2},
}


def wait_for(probe: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except (httpx.HTTPError, OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


class Stack:
    """One `taskdispatch run` (embedded Redis on a free port) with every process it spawned."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        *,
        grace_s: float | None = 20,
        redis_port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log = log
        self.api = f"http://127.0.0.1:{free_port()}"
        self.flower_port = free_port()
        # Nothing configured, as on a fresh machine (the test session's Redis URL included).
        env = {
            **{
                key: value
                for key, value in os.environ.items()
                if key not in ("TASKDISPATCH_REDIS_URL", "TASKDISPATCH_BROKER_URL")
            },
            "TASKDISPATCH_BEAT_MAX_SLEEP_S": "1",
            **(env or {}),
        }
        argv = [sys.executable, "-m", "taskdispatch", "run", "--redis-port", str(redis_port)]
        argv += ["--data-dir", str(data_dir), "--api-port", self.api.rsplit(":", 1)[1]]
        argv += ["--flower-port", str(self.flower_port)]
        # None: the supervisor's own allowance (the round time limit plus its margin).
        argv += [] if grace_s is None else ["--grace-period", str(grace_s)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.seen: dict[int, psutil.Process] = {}

    def collect(self) -> list[psutil.Process]:
        """Remember every descendant alive now (pool processes and redis-server included)."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=5)

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, "the supervisor exited during startup"
            self.collect()
            return httpx.get(f"{self.api}/api/v1/health", timeout=1).status_code == 200

        wait_for(healthy, timeout_s=40, what="GET /api/v1/health")

    def ctrl_c(self, *, timeout_s: float = 45) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        self.collect()
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout_s)

    def survivors(self) -> list[str]:
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{proc.pid} {' '.join(proc.cmdline())}")
            except psutil.NoSuchProcess:
                pass
        return alive

    def kill(self) -> None:
        """Teardown after a failure: leave nothing behind."""
        self.collect()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for proc in self.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start supervisors; their output is printed (shown by pytest on failure)."""
    log = tmp_path / "supervisor.log"
    stacks: list[Stack] = []

    def start(data_dir: Path, **options: Any) -> Stack:
        stacks.append(Stack(data_dir, log, **options))
        return stacks[-1]

    try:
        yield start
    finally:
        for stack in stacks:
            stack.kill()
        if log.exists():
            print(log.read_text(errors="replace"))


def _round_num(client: httpx.Client, task_id: str) -> int:
    response = client.get(f"/api/v1/tasks/{task_id}")
    response.raise_for_status()
    return int(response.json()["round_num"])


def _flower_workers(stack: Stack) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{stack.flower_port}/api/workers?refresh=1"
    workers = httpx.get(url, timeout=10).json()
    return workers if isinstance(workers, dict) and workers else None


def _inspect_ping(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKDISPATCH_REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_app", "inspect", "ping", "--timeout", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_ctrl_c_stops_every_child_and_tasks_survive_restart(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """Up, rounds run, visible in Flower and inspect; Ctrl-C exits 0, no orphan; the task
    persists, and the embedded Redis comes back on the same port (same redis.url)."""
    data_dir = tmp_path / "data"
    port = free_port()
    stack = start_stack(data_dir, redis_port=port)
    stack.wait_healthy()
    with stack.client() as client:
        created = client.post("/api/v1/tasks/", json=TASK)
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        wait_for(
            lambda: _round_num(client, task_id) >= 2, timeout_s=20, what="round_num to reach 2"
        )
    workers = wait_for(lambda: _flower_workers(stack), timeout_s=20, what="a worker in Flower")
    assert any(name.startswith("worker1@") for name in workers)
    redis_url = (data_dir / "redis.url").read_text().strip()
    ping = _inspect_ping(redis_url)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "pong" in ping.stdout
    children = [" ".join(p.cmdline()) for p in stack.collect() if p.is_running()]
    for part in ("redis-server", "uvicorn", "worker", "beat", "flower"):
        assert any(part in cmdline for cmdline in children), (part, children)

    assert redis_url == f"redis://127.0.0.1:{port}/0"
    assert stack.ctrl_c() == 0
    assert stack.survivors() == []
    assert not (data_dir / "redis.url").exists()

    again = start_stack(data_dir, redis_port=port)
    again.wait_healthy()
    assert (data_dir / "redis.url").read_text().strip() == redis_url
    with again.client() as client:
        response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == task_id
    assert response.json()["round_num"] >= 2
    assert again.ctrl_c() == 0
    assert again.survivors() == []


def test_run_without_configuration_uses_its_own_redis_not_one_on_6379(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """No TASKDISPATCH_REDIS_URL: the embedded Redis, never a Redis that happens to answer on
    localhost:6379; a task created through the stack exists only in the embedded one."""
    stack = start_stack(tmp_path / "data")
    stack.wait_healthy()
    account = f"untouched-{uuid.uuid4().hex[:8]}"
    with stack.client() as client:
        created = client.post("/api/v1/tasks/", json={**TASK, "xhs_account_id": account})
        assert created.status_code == 200, created.text
    ours = redis.Redis.from_url((tmp_path / "data" / "redis.url").read_text().strip())
    assert ours.exists(f"td:account:{account}") == 1
    ours.close()
    # The banner follows the API's first healthy answer by up to one poll of the supervisor.
    banner = wait_for(
        lambda: text if "Dashboard" in (text := stack.log.read_text(errors="replace")) else None,
        timeout_s=10,
        what="the start banner",
    )
    assert "(embedded, append-only file in" in banner
    assert "export TASKDISPATCH_REDIS_URL=" in banner
    other = redis.Redis(host="localhost", port=6379, socket_timeout=1, socket_connect_timeout=1)
    try:
        # Read only: that Redis is not ours. If none answers there, nothing could be touched.
        assert other.exists(f"td:account:{account}") == 0
    except redis.ConnectionError:
        pass
    finally:
        other.close()
    assert stack.ctrl_c() == 0


def test_run_unreachable_redis_url_says_how_to_use_the_embedded_one(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """An explicit TASKDISPATCH_REDIS_URL that does not answer: exit 1 with the way back."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    stack = start_stack(tmp_path / "data", env={"TASKDISPATCH_REDIS_URL": url})
    assert stack.proc.wait(timeout=30) == 1
    output = stack.log.read_text(errors="replace")
    assert "cannot be reached" in output or "无法连接" in output
    assert "to use taskdispatch's own embedded Redis instead, unset it" in output


def test_run_child_death_stops_everything_and_exits_nonzero(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """A killed beat is reported with its last lines; everything stops; exit status 1."""
    stack = start_stack(tmp_path / "data")
    stack.wait_healthy()
    # Killed once it has said something, so that there are last lines to report.
    wait_for(
        lambda: "beat   | " in stack.log.read_text(errors="replace"),
        timeout_s=30,
        what="the beat's first output line",
    )
    beat = next(p for p in stack.collect() if " beat " in f" {' '.join(p.cmdline())} ")
    beat.kill()
    assert stack.proc.wait(timeout=45) == 1
    stack.collect()
    assert stack.survivors() == []
    output = stack.log.read_text(errors="replace")
    assert "beat exited unexpectedly" in output
    assert "last " in output and "lines of beat" in output


def _start_long_round(stack: Stack, duration_s: float) -> str:
    """Create a task whose first round takes `duration_s`; return its id once it runs."""
    stack.wait_healthy()
    body = {**TASK, "kwargs": {"demo_duration_s": duration_s}}
    with stack.client() as client:
        created = client.post("/api/v1/tasks/", json=body)
        assert created.status_code == 200, created.text
        task_id: str = created.json()["task_id"]
        wait_for(
            lambda: client.get(f"/api/v1/tasks/{task_id}").json()["status"] == "running",
            timeout_s=20,
            what="the round to start",
        )
    return task_id


def test_run_ctrl_c_mid_round_lets_the_round_finish(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """Ctrl-C during a 3 s round: the worker finishes it (warm shutdown), then exit 0."""
    stack = start_stack(tmp_path / "data")
    _start_long_round(stack, 3)
    assert stack.ctrl_c() == 0
    assert stack.survivors() == []
    after_signal = stack.log.read_text(errors="replace").partition("SIGINT: stopping")[2]
    assert re.search(r"taskdispatch\.run_round\[[^\]]+\] succeeded", after_signal), after_signal


def test_run_round_longer_than_grace_is_killed_and_exit_is_nonzero(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """A round outlasting --grace-period is SIGKILLed with its pool; nothing survives; exit 1."""
    stack = start_stack(tmp_path / "data", grace_s=2)
    _start_long_round(stack, 60)
    started = time.monotonic()
    assert stack.ctrl_c() == 1
    assert time.monotonic() - started < 20
    assert stack.survivors() == []
    assert "worker: did not stop in time, SIGKILL" in stack.log.read_text(errors="replace")


def test_run_ctrl_c_mid_round_longer_than_30_s_lets_it_finish_and_records_it_ok(
    start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """Ctrl-C during a 40 s round with a 50 s round time limit: the worker may take 60 s
    (the limit plus the margin, said in the stop line), the round runs to its end and is
    recorded ok, nothing is lost or killed, and run exits 0."""
    data_dir = tmp_path / "data"
    stack = start_stack(data_dir, grace_s=None, env={"TASKDISPATCH_ROUND_TIME_LIMIT_S": "50"})
    task_id = _start_long_round(stack, 40)
    assert stack.ctrl_c(timeout_s=90) == 0
    assert stack.survivors() == []
    output = stack.log.read_text(errors="replace")
    assert "at most 60 s: TASKDISPATCH_ROUND_TIME_LIMIT_S 50 s + 10 s" in output
    assert "SIGKILL" not in output and "!!!" not in output and "consumer is deaf" not in output

    # The stack is gone; its Redis's append-only file holds what the worker recorded.
    with EmbeddedRedis(data_dir=data_dir / "redis", appendonly=True) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        runs = [json.loads(x) for x in client.lrange(Keys("td:").runs(task_id), 0, -1)]
        client.close()
    assert [r["outcome"] for r in runs] == ["ok"], runs
    assert runs[0]["finished_ms"] - runs[0]["started_ms"] >= 40_000
