"""`taskdispatch run` (what `make run` starts): the whole stack in the foreground.

Picks a Redis (TASKDISPATCH_REDIS_URL if set, else its own embedded one on a fixed port,
persisted under <data-dir>/redis), checks it, then runs and supervises the API, one worker,
one beat and Flower, their output prefixed by name. Ctrl-C stops them in an order that lets
rounds in progress finish: the worker gets as long as a round may last (the round time
limit plus `STOP_MARGIN_S`), and one that exits with an error while stopping makes the
supervisor exit 1. A child that dies takes the whole stack down, loudly: a dev stack
with a silently missing worker or beat looks healthy while nothing runs. The one exception
is a worker that exits because its consumer went deaf (`watchdog.EXIT_DEAF`): it is started
again, as compose or Kubernetes would.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port, redis_answers
from taskdispatch.domain.exceptions import InvalidTaskError, StoreUnavailableError
from taskdispatch.domain.validation import check_queue
from taskdispatch.engine.watchdog import EXIT_DEAF
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.checks import EvictionPolicyError, run_startup_checks
from taskdispatch.store.connections import masked

__all__ = [
    "Child",
    "Console",
    "ConsoleLogHandler",
    "RedisChoice",
    "StopRequest",
    "Supervisor",
    "choose_redis",
    "main",
    "worker_allowance",
]

ROOT = Path(__file__).resolve().parents[2]
TAIL_LINES = 20
# The API and Flower, stopped last, get this long (uvicorn's own graceful timeout is 5 s).
LAST_STOP_S = 10.0
# What the worker gets on top of the round time limit (Celery's soft time limit) to stop: at
# that limit a handler is interrupted, its round recorded `failed`; then the worker exits.
STOP_MARGIN_S = 10.0
# While the worker finishes its rounds, a line this often says what the stop waits for.
STOP_NOTE_EVERY_S = 15.0
BEAT_STOP_S = 10.0
BANNER_WAIT_S = 30.0
REDIS_CHECK_S = 1.0
# The embedded Redis's port: fixed, so that var/redis.url (and an export of it) stays valid
# across restarts; not 6379, where another program's Redis may answer.
EMBEDDED_REDIS_PORT = 16379
# Restarts of a child that asks for them, before a persistent fault stops the stack.
MAX_RESTARTS = 5
REDIS_MISSES = 3
# The worker's extra queues when `--queues` is not given (comma-separated).
QUEUES_ENV = "TASKDISPATCH_RUN_QUEUES"
_POLL_S = 0.2
# A clean stop: exit 0, or death by the SIGTERM we sent (a program without a handler).
_STOPPED_STATUSES = frozenset({0, -signal.SIGTERM})
_COLORS = {"api": "36", "worker": "32", "beat": "33", "flower": "35", "redis": "34", "run": "1"}
_ALARM = "1;31"


class Console:
    """Procfile-style output: `name   | line`, one writer at a time, colored on a terminal."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.width = max(len(name) for name in _COLORS)
        self._lock = threading.Lock()

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, name: str, text: str, *, alarm: bool = False) -> None:
        prefix = self._paint(_COLORS.get(name, "0"), f"{name:<{self.width}} |")
        body = self._paint(_ALARM, text) if alarm else text
        self.write(f"{prefix} {body}\n")

    def write(self, text: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


class ConsoleLogHandler(logging.Handler):
    """The supervisor's own log records (startup-check warnings) as `run | ...` lines."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.line("run", self.format(record), alarm=record.levelno >= logging.WARNING)


@dataclass
class Child:
    """One supervised process; its own process group keeps the terminal's Ctrl-C away from it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    # Exit statuses after which the child is started again rather than taking the stack
    # down: the worker's "my consumer is deaf, restart me" (taskdispatch/engine/watchdog.py).
    restart_on: frozenset[int] = frozenset()
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    def start(self, console: Console) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self.reader = threading.Thread(
            target=self._pump, args=(console,), name=f"log-{self.name}", daemon=True
        )
        self.reader.start()

    def _pump(self, console: Console) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode(errors="replace").rstrip()
            self.tail.append(text)
            console.line(self.name, text)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, signum: int) -> None:
        # The main process only: Celery's warm shutdown must reach the worker, not its pool.
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the whole group, which also catches pool processes left without a parent."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def last_lines(self) -> list[str]:
        if self.reader is not None:
            self.reader.join(timeout=1.0)  # let the final lines reach the tail
        return list(self.tail)


@dataclass
class RedisChoice:
    url: str
    origin: str
    server: EmbeddedRedis | None = None


@contextlib.contextmanager
def _terminal_signals_blocked() -> Iterator[None]:
    """Spawn with Ctrl-C and Ctrl-\\ blocked, so the child inherits them blocked.

    EmbeddedRedis starts redis-server in our process group, where a Ctrl-C would stop it before
    the worker's rounds finish; the supervisor stops it last, with SHUTDOWN.
    """
    terminal = {signal.SIGINT, signal.SIGQUIT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, terminal)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _port_free(port: int) -> bool:
    """Whether redis-server could listen on the port (it sets SO_REUSEADDR too, so the
    connections of a Redis stopped a moment ago, in TIME_WAIT, do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_own_leftover(port: int, redis_dir: Path) -> None:
    """A redis-server of a previous run that was killed before it could stop its Redis
    still holds the port; it is ours if it serves our data directory: shut it down (its
    append-only file keeps everything) so that this run starts it again."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        served = str(client.config_get("dir").get("dir", ""))
        if Path(served).resolve() == redis_dir.resolve():
            client.shutdown()
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()


def choose_redis(settings: Settings, *, data_dir: Path, redis_port: int) -> RedisChoice:
    """TASKDISPATCH_REDIS_URL if it is set, else the embedded Redis on `redis_port`.

    Never a Redis that merely answers on the default port: it may be another program's,
    with its own data and queues. The embedded one keeps its port (and so var/redis.url)
    across restarts; port 0 picks a free one (tests).
    """
    if "redis_url" in settings.model_fields_set:
        return RedisChoice(settings.redis_url, "from TASKDISPATCH_REDIS_URL")
    redis_dir = data_dir / "redis"
    port = redis_port or free_port()
    if not _port_free(port):
        _stop_own_leftover(port, redis_dir)
        deadline = time.monotonic() + 5
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _port_free(port):
            raise RuntimeError(
                f"port {port} on 127.0.0.1 is taken by another program; start with another "
                f"port: `make run RUN_ARGS='--redis-port {port + 1}'` (or `taskdispatch run "
                f"--redis-port {port + 1}`), or point TASKDISPATCH_REDIS_URL at a Redis of yours"
            )
    server = EmbeddedRedis(port=port, data_dir=redis_dir, appendonly=True)
    with _terminal_signals_blocked():
        server.start()
    return RedisChoice(server.url, f"embedded, append-only file in {redis_dir}", server)


def build_children(
    settings: Settings,
    *,
    redis_url: str,
    api_host: str,
    api_port: int,
    flower_port: int,
    access_log: bool = False,
    queues: Sequence[str] = (),
) -> list[Child]:
    """The supervised processes; the worker consumes the default queue and `queues`."""
    env = {**os.environ, "TASKDISPATCH_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    # The API checks the address it serves on (no token on a public one is refused).
    env["API_HOST"] = api_host
    level = settings.log_level.lower()
    celery = [sys.executable, "-m", "celery", "-A", "celery_app"]
    return [
        Child(
            "api",
            [
                *(sys.executable, "-m", "uvicorn", "api.main:app", "--host", api_host),
                *("--port", str(api_port), "--log-level", level),
                # Open event streams (dashboards) must not hold the stop forever.
                *("--timeout-graceful-shutdown", "5"),
                # One line per request drowned the worker lines a newcomer watches.
                *(() if access_log else ("--no-access-log",)),
            ],
            env,
        ),
        Child(
            "worker",
            [*celery, "worker", "-l", level, "-n", "worker1@%h", *_worker_queues(settings, queues)],
            env,
            restart_on=frozenset({EXIT_DEAF}),
        ),
        Child("beat", [*celery, "beat", "-l", level], env),
        Child(
            "flower",
            [*celery, "flower", f"--port={flower_port}", "--address=127.0.0.1"],
            # Locally only: lets `/api/workers` answer without auth; compose uses basic auth.
            {**env, "FLOWER_UNAUTHENTICATED_API": "true"},
        ),
    ]


class StopRequest:
    """Signal handler: the first SIGINT/SIGTERM/SIGHUP stops in order, a second one kills.

    It only sets flags: printing from a handler could deadlock on the console lock that the
    interrupted main thread may be holding.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.force = threading.Event()
        self.signal_name = ""

    def __call__(self, signum: int, _frame: FrameType | None = None) -> None:
        if self.requested.is_set():
            self.force.set()
        else:
            self.signal_name = signal.Signals(signum).name
            self.requested.set()


class Supervisor:
    """Starts the children, watches them, and stops them beat -> worker -> api, flower."""

    def __init__(
        self,
        children: Sequence[Child],
        console: Console,
        stop: StopRequest,
        *,
        grace_s: float,
        grace_note: str = "",
        embedded_redis: EmbeddedRedis | None = None,
    ) -> None:
        self.children = {child.name: child for child in children}
        self.console = console
        self.stop = stop
        self.grace_s = grace_s
        # Where the worker's allowance comes from, for the stop's first line.
        self.grace_note = grace_note
        self.embedded_redis = embedded_redis
        self._redis_misses = 0
        self._redis_checked = 0.0

    def run(self, banner: Sequence[str], health_url: str) -> int:
        """Run until a signal (exit 0 if everything stopped in time and without an error)
        or a child dies (exit 1)."""
        for child in self.children.values():
            if self.stop.requested.is_set():
                break
            child.start(self.console)
        threading.Thread(
            target=self._announce, args=(banner, health_url), name="banner", daemon=True
        ).start()
        dead = self._watch()
        clean = self._stop_all()
        if dead is not None:
            self.console.line("run", f"stopped because {dead} died; exit status 1", alarm=True)
            return 1
        return 0 if clean else 1

    def _announce(self, banner: Sequence[str], health_url: str) -> None:
        deadline = time.monotonic() + BANNER_WAIT_S
        note = ""
        while not _answers(health_url):
            if self.stop.requested.is_set():
                return
            if time.monotonic() > deadline:
                note = f"(the API is not answering {health_url} yet)\n"
                break
            time.sleep(0.5)
        rule = "-" * 64
        self.console.write("\n".join(["", rule, *banner, rule, ""]) + note + "\n")

    def _watch(self) -> str | None:
        """Wait for a stop signal (returns None) or a dead child (returns its name)."""
        while not self.stop.requested.wait(_POLL_S):
            dead = self._find_dead()
            if dead is not None:
                # Stopping now, so a Ctrl-C during the stop means "kill at once".
                self.stop.requested.set()
                return dead
        note = f": {self.grace_note}" if self.grace_note else ""
        self.console.line(
            "run",
            f"{self.stop.signal_name}: stopping beat, then worker (rounds in progress finish, "
            f"at most {self.grace_s:g} s{note}), then api and flower; a second Ctrl-C kills "
            "at once (rounds cut short are recorded lost and run again)",
        )
        return None

    def _find_dead(self) -> str | None:
        for child in self.children.values():
            if child.proc is None or child.alive:
                continue
            code = child.proc.returncode
            if code in child.restart_on and child.restarts < MAX_RESTARTS:
                child.restarts += 1
                self.console.line(
                    "run",
                    f"!!! {child.name} exited with status {code} and asked to be restarted "
                    f"(see its last lines above); starting it again "
                    f"({child.restarts}/{MAX_RESTARTS})",
                    alarm=True,
                )
                child.start(self.console)
                continue
            self._report_death(child.name, code, child.last_lines())
            return child.name
        if self.embedded_redis is not None and self._embedded_redis_gone(self.embedded_redis):
            self._report_death("redis", None, _tail(self.embedded_redis.log_file))
            return "redis"
        return None

    def _embedded_redis_gone(self, server: EmbeddedRedis) -> bool:
        """Our redis-server is a child too; PING says whether it still serves (no pid needed)."""
        now = time.monotonic()
        if now - self._redis_checked < REDIS_CHECK_S:
            return False
        self._redis_checked = now
        if redis_answers(server.url, timeout_s=REDIS_CHECK_S):
            self._redis_misses = 0
        else:
            self._redis_misses += 1
        return self._redis_misses >= REDIS_MISSES

    def _report_death(self, name: str, code: int | None, lines: list[str]) -> None:
        if code is None:
            how = "no longer answers"
        elif code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        self.console.line(
            "run", f"!!! {name} exited unexpectedly ({how}); stopping everything", alarm=True
        )
        if lines:
            self.console.line("run", f"!!! last {len(lines)} lines of {name}:", alarm=True)
            for text in lines:
                self.console.line("run", f"!!!   {text}", alarm=True)

    def _stop_all(self) -> bool:
        """Ordered stop; True if every child exited on its own, without an error, within its
        allowance."""
        clean = self._stop(["beat"], BEAT_STOP_S)
        # SIGTERM is Celery's warm shutdown: rounds in progress finish, no new ones start.
        clean &= self._stop(["worker"], self.grace_s, waiting_for="its rounds in progress")
        clean &= self._stop(["api", "flower"], LAST_STOP_S)
        return clean

    def _stop(self, names: list[str], allowance_s: float, *, waiting_for: str = "") -> bool:
        group = [self.children[name] for name in names if name in self.children]
        # A child already dead was reported when it died; only the stop's own are judged.
        stopping = {child.name for child in group if child.alive}
        started = time.monotonic()
        noted = started
        for child in group:
            child.send(signal.SIGTERM)
        while any(child.alive for child in group):
            now = time.monotonic()
            if self.stop.force.is_set() or now - started >= allowance_s:
                break
            if waiting_for and now - noted >= STOP_NOTE_EVERY_S:
                noted = now
                self.console.line(
                    "run",
                    f"waiting for {' and '.join(c.name for c in group if c.alive)} to finish "
                    f"{waiting_for}: {now - started:.0f} s of at most {allowance_s:g} s "
                    "(Ctrl-C again kills at once)",
                )
            time.sleep(0.1)
        clean = True
        for child in group:
            if child.alive:
                clean = False
                why = "second signal" if self.stop.force.is_set() else "did not stop in time"
                self.console.line("run", f"{child.name}: {why}, SIGKILL", alarm=True)
            elif (
                child.name in stopping
                and child.proc is not None
                and child.proc.returncode not in _STOPPED_STATUSES
            ):
                clean = False
                self._report_failed_stop(child.name, child.proc.returncode)
            child.kill_group()
            if child.reader is not None:
                child.reader.join(timeout=1.0)
        return clean

    def _report_failed_stop(self, name: str, code: int) -> None:
        """A child that exited with an error while stopping: the stop was not clean (a
        worker's rounds in progress may have been cut); the supervisor exits 1."""
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
            if code == EXIT_DEAF:
                how += " (its consumer watchdog gave up)"
        self.console.line(
            "run",
            f"!!! {name} {how} while stopping (see its last lines above); exit status 1",
            alarm=True,
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (a Redis URL may carry a password)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return []


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def worker_allowance(settings: Settings, grace_period_s: float | None) -> tuple[float, str]:
    """How long the worker may take to stop, and where that figure comes from: as long as
    a round may last (the round time limit, Celery's soft limit) plus STOP_MARGIN_S, unless
    `--grace-period` says otherwise."""
    if grace_period_s is not None:
        return grace_period_s, "--grace-period"
    limit_s = settings.round_time_limit_s
    return (
        limit_s + STOP_MARGIN_S,
        f"TASKDISPATCH_ROUND_TIME_LIMIT_S {limit_s:g} s + {STOP_MARGIN_S:g} s",
    )


def _banner(
    choice: RedisChoice, *, api: str, flower_port: int, url_file: Path, stop_s: float
) -> list[str]:
    return [
        "taskdispatch is running; Ctrl-C stops everything, rounds in progress finish first "
        f"(up to {stop_s:g} s).",
        f"  Dashboard  {api}/",
        f"  API docs   {api}/docs  (reference: docs/api.md)",
        f"  Flower     http://127.0.0.1:{flower_port}",
        f"  Redis      {masked(choice.url)} ({choice.origin})",
        "  For the celery CLI in another shell:",
        f"    export TASKDISPATCH_REDIS_URL=$(cat {url_file})",
    ]


def _worker_queues(settings: Settings, queues: Sequence[str]) -> list[str]:
    """The worker's `-Q` option: the default queue, then `queues` (none: Celery's default,
    which is the default queue too)."""
    if not queues:
        return []
    return ["-Q", ",".join(dict.fromkeys([settings.default_queue, *queues]))]


def _queue_list(text: str) -> list[str]:
    """`--queues a,b` (or TASKDISPATCH_RUN_QUEUES): each a name a task's `queue` may hold."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            check_queue(name)
        except InvalidTaskError:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a queue name: 1..64 letters, digits and _ . : @ -, starting "
                "with a letter or digit, and not one of Celery's own (*.dq2, *.pidbox, celeryev.*)"
            ) from None
    return names


def _parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taskdispatch run",
        description="Run Redis (if needed), the API, a worker, a beat and Flower until Ctrl-C.",
    )
    parser.add_argument("--api-port", type=int, default=settings.api_port)
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var"),
        help="where the embedded Redis keeps its data (DIR/redis/) and DIR/redis.url lives",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=EMBEDDED_REDIS_PORT,
        metavar="PORT",
        help=(
            f"port of the embedded Redis on 127.0.0.1 (default {EMBEDDED_REDIS_PORT}, the same "
            "at every start; 0 picks a free one); ignored when TASKDISPATCH_REDIS_URL is set"
        ),
    )
    parser.add_argument(
        "--access-log", action="store_true", help="print one line per API request (off by default)"
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=None,
        metavar="SECONDS",
        help=(
            "how long the worker may take to stop (rounds in progress finish) before SIGKILL "
            f"(default: TASKDISPATCH_ROUND_TIME_LIMIT_S + {STOP_MARGIN_S:g} s)"
        ),
    )
    parser.add_argument(
        "--queues",
        type=_queue_list,
        # A string default goes through `type` too: a bad $TASKDISPATCH_RUN_QUEUES is a usage error.
        default=os.environ.get(QUEUES_ENV, ""),
        metavar="Q1,Q2",
        help=(
            "more queues for the worker to consume besides the default one, e.g. the queues "
            f"of tasks pinned to devices: dev-a,dev-b (default: ${QUEUES_ENV})"
        ),
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    settings = get_settings()
    args = _parse_args(argv, settings)
    console = Console(sys.stdout, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    logging.basicConfig(level=logging.WARNING, handlers=[ConsoleLogHandler(console)])
    # Loopback unless API_HOST says otherwise.
    api_host = settings.api_host
    stop = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)

    data_dir: Path = args.data_dir.resolve()
    url_file = data_dir / "redis.url"
    try:
        choice = choose_redis(settings, data_dir=data_dir, redis_port=args.redis_port)
    except RuntimeError as exc:
        console.line("run", f"cannot start the embedded Redis: {exc}", alarm=True)
        return 1
    try:
        console.line("run", f"Redis: {masked(choice.url)} ({choice.origin})")
        try:
            run_startup_checks(
                settings.model_copy(update={"redis_url": choice.url}), process="startup check"
            )
        except (StoreUnavailableError, EvictionPolicyError) as exc:
            console.line("run", str(exc), alarm=True)
            if choice.server is None:
                console.line(
                    "run",
                    "TASKDISPATCH_REDIS_URL chooses that Redis; to use taskdispatch's own "
                    "embedded Redis instead, unset it (in the environment and in .env) and "
                    "run `make run` again",
                    alarm=True,
                )
            return 1
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(url_file, choice.url + "\n")
        children = build_children(
            settings,
            redis_url=choice.url,
            api_host=api_host,
            api_port=args.api_port,
            flower_port=args.flower_port,
            access_log=args.access_log,
            queues=args.queues,
        )
        grace_s, grace_note = worker_allowance(settings, args.grace_period)
        supervisor = Supervisor(
            children,
            console,
            stop,
            grace_s=grace_s,
            grace_note=grace_note,
            embedded_redis=choice.server,
        )
        api = f"http://{_display_host(api_host)}:{args.api_port}"
        banner = _banner(
            choice, api=api, flower_port=args.flower_port, url_file=url_file, stop_s=grace_s
        )
        return supervisor.run(banner, f"{api}/api/v1/health")
    finally:
        url_file.unlink(missing_ok=True)
        if choice.server is not None:
            console.line("run", "stopping the embedded Redis (SHUTDOWN, AOF fsynced)")
            choice.server.stop()
        console.line("run", "stopped")
