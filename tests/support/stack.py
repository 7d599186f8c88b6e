"""Real `celery worker` and `celery beat` processes against the test Redis.

Every process gets its own session (`start_new_session=True`), so the whole group (a
prefork worker's main process and its pool children) can be signalled at once, and a
log file under the test's tmp_path. Teardown kills everything (SIGKILL to every group: how
the processes stop is not under test there) and asserts with psutil that none of our
processes survived; when the test failed, the tail of every log is printed. `Stack.stop` is
the graceful stop (SIGTERM, then SIGKILL) for the tests that need one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from taskdispatch.settings import Settings
from taskdispatch.store.connections import store_client
from taskdispatch.store.keys import Keys
from tests.support.probes import View, now_ms, wait_until

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ",".join(
    f"{name}=tests.support.handlers:{function}"
    for name, function in (
        ("probe", "probe_round"),
        ("probe_file", "probe_file_round"),
        ("probe_async", "probe_async_round"),
        ("probe_async_file", "probe_async_file_round"),
        ("returns_coroutine", "returns_coroutine"),
    )
)
# Short timings so that every behaviour shows within seconds. Everything else is pinned
# too, so a developer's own TASKDISPATCH_* variables cannot leak into the processes.
BASE_ENV = {
    "TASKDISPATCH_KEY_PREFIX": "td:",
    "TASKDISPATCH_TIMEZONE": "Asia/Shanghai",
    "TASKDISPATCH_DEFAULT_QUEUE": "celery",
    "TASKDISPATCH_ROUTE_BY_SYS_TYPE": "false",
    "TASKDISPATCH_LEASE_TTL_S": "3",
    "TASKDISPATCH_DISPATCH_TIMEOUT_S": "5",
    "TASKDISPATCH_RETRY_BACKOFF_S": "1",
    "TASKDISPATCH_LOCK_RETRY_S": "0.5",
    "TASKDISPATCH_BEAT_MAX_SLEEP_S": "1",
    "TASKDISPATCH_MAX_CONSECUTIVE_FAILURES": "3",
    "TASKDISPATCH_HANDLERS": HANDLERS,
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 60


def e2e_env(redis_url: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The TASKDISPATCH_* variables of one stack (the broker is the test Redis too)."""
    return {
        **BASE_ENV,
        **(overrides or {}),
        "TASKDISPATCH_REDIS_URL": redis_url,
        "TASKDISPATCH_BROKER_URL": redis_url,
    }


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings the processes of a stack read from `env`."""
    prefix = "TASKDISPATCH_"
    return Settings(**{k.removeprefix(prefix).lower(): v for k, v in env.items()})


def wait_dead(members: list[psutil.Process]) -> None:
    """Wait until every one of `members` has exited (a zombie counts: it runs nothing).

    A killed worker's pool children are reparented to PID 1, which may reap them only a
    second or two later; waiting for them to vanish (`psutil.wait_procs`) would pay that
    every time.
    """

    def dead(p: psutil.Process) -> bool:
        try:
            # is_running is False for a reaped pid, even one reused since.
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(
        lambda: all(dead(p) for p in members),
        STOP_TIMEOUT_S,
        interval_s=0.02,
        message=f"processes {[p.pid for p in members]} to exit",
    )


class Proc:
    """One celery process (the leader of its own session and process group)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid  # also the process group id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group(self) -> list[psutil.Process]:
        """Live (non-zombie) processes of this process group, wherever they were reparented."""
        found = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == self.pid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    def close_log(self) -> None:
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and wait until every member is gone."""
        members = self.group()
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT_S)
        wait_dead(members)
        self._log.close()

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait for a graceful exit until `deadline`, then SIGKILL whatever is left."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        leftovers = self.group()
        self.signal_group(signal.SIGKILL)
        if self.alive():
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        wait_dead(leftovers)
        self._log.close()


class Stack:
    """Workers and beats of one test, with a view of the shared Redis."""

    def __init__(self, redis_url: str, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.settings = settings_of(env)
        self.keys = Keys(self.settings.key_prefix)
        # Built like the processes' own clients, so that a Sentinel URL follows the master.
        self.redis = store_client(self.settings.model_copy(update={"redis_url": redis_url}))
        self.view = View(self.redis, self.keys)
        self.log_dir = log_dir
        self.workers: list[Proc] = []
        self.beats: list[Proc] = []
        self.host = socket.gethostname()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
        self._proc_env = {**inherited, "PYTHONUNBUFFERED": "1", **env}

    def node(self, i: int) -> str:
        """The Celery node name of worker `i` (as it appears in logs and history)."""
        return f"w{i + 1}@{self.host}"

    def start(
        self,
        *,
        workers: int,
        beats: int,
        concurrency: int,
        queues: str,
        beat_log_level: str = "info",
    ) -> None:
        for i in range(workers):
            args = ["worker", "-l", "info", "-P", "prefork", "-c", str(concurrency)]
            args += ["-n", f"w{i + 1}@%h", "-Q", queues, "--without-mingle", "--without-gossip"]
            path = self.log_dir / f"worker{i + 1}.log"
            self.workers.append(Proc(f"worker {i + 1}", args, self._proc_env, path))
        for i in range(beats):
            path = self.log_dir / f"beat{i + 1}.log"
            args = ["beat", "-l", beat_log_level]
            self.beats.append(Proc(f"beat {i + 1}", args, self._proc_env, path))
        for i, worker in enumerate(self.workers):
            self._wait_ready(worker, lambda w=worker, i=i: f"{self.node(i)} ready." in w.log())
        for beat in self.beats:
            self._wait_ready(beat, lambda b=beat: self._beat_heartbeat(b))

    def _wait_ready(self, proc: Proc, ready: Callable[[], bool]) -> None:
        def check() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited during startup:\n{proc.tail()}")
            return ready()

        wait_until(check, START_TIMEOUT_S, message=f"{proc.name} to be ready")

    def _beat_heartbeat(self, beat: Proc) -> bool:
        """A beat's first tick writes its heartbeat (beat id = host:pid:random)."""
        ids = self.redis.zrange(self.keys.beats(), 0, -1)
        return any(str(x).startswith(f"{self.host}:{beat.pid}:") for x in ids)

    def add_worker(self, *, concurrency: int = 2, queues: str = "celery") -> int:
        """Start one more worker (node w<n>@host, its own log); returns its index.

        `start` numbers workers from 1 on every call, so a replacement started with it
        would reuse a node name and a log file; this keeps both unique.
        """
        i = len(self.workers)
        args = ["worker", "-l", "info", "-P", "prefork", "-c", str(concurrency)]
        args += ["-n", f"w{i + 1}@%h", "-Q", queues, "--without-mingle", "--without-gossip"]
        proc = Proc(f"worker {i + 1}", args, self._proc_env, self.log_dir / f"worker{i + 1}.log")
        self.workers.append(proc)
        self._wait_ready(proc, lambda: f"{self.node(i)} ready." in proc.log())
        return i

    def add_beat(self, *, log_level: str = "info") -> int:
        """Start one more beat (its own log, e.g. after one was killed); returns its index."""
        i = len(self.beats)
        path = self.log_dir / f"beat{i + 1}.log"
        proc = Proc(f"beat {i + 1}", ["beat", "-l", log_level], self._proc_env, path)
        self.beats.append(proc)
        self._wait_ready(proc, lambda: self._beat_heartbeat(proc))
        return i

    def worker_running_pid(self, pid: int) -> int:
        """Index of the worker whose process group holds `pid` (a pool child)."""
        for i, worker in enumerate(self.workers):
            if any(p.pid == pid for p in worker.group()):
                return i
        raise AssertionError(f"no worker of this stack runs pid {pid}")

    def kill_worker(self, i: int) -> int:
        """SIGKILL worker `i` with its pool children; returns when (ms) all of them were dead."""
        self.workers[i].kill()
        return now_ms()

    def procs(self) -> list[Proc]:
        return [*self.beats, *self.workers]

    def stop(self) -> None:
        """SIGTERM everything at once, wait, SIGKILL leftovers; assert nothing survived."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs():
            proc.terminate()
        for proc in self.procs():
            proc.wait_stopped(deadline)
        survivors = [(proc.name, p.pid) for proc in self.procs() for p in proc.group()]
        self.redis.close()
        assert not survivors, f"processes survived the stack's stop: {survivors}"

    def kill(self) -> None:
        """SIGKILL every process group at once and wait them out; assert nothing survived.

        For teardown, where how the processes stop is not under test: a worker's warm
        shutdown takes about 3 s even when idle (longer with a round running), which every
        test would otherwise pay. Specs of a graceful stop signal the processes themselves.
        """
        members = [(proc, proc.group()) for proc in self.procs()]
        for proc, _ in members:
            proc.signal_group(signal.SIGKILL)
        for proc, group in members:
            proc.popen.wait(timeout=STOP_TIMEOUT_S)
            wait_dead(group)
            proc.close_log()
        survivors = [(proc.name, p.pid) for proc in self.procs() for p in proc.group()]
        self.redis.close()
        assert not survivors, f"processes survived the stack's kill: {survivors}"

    def tails(self) -> str:
        parts = [f"----- {p.name} ({p.log_path}) -----\n{p.tail()}" for p in self.procs()]
        return "\n".join(parts)
