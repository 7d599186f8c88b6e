"""A Redis master, its replicas and three Sentinels on 127.0.0.1, as real processes.

Every process is the `redis-server` binary (`find_redis_server`), data nodes with a config
file each (Sentinel rewrites a replica's `replicaof` into it on a failover) and Sentinels
with `--sentinel` and their own config file (which they rewrite too), all in directories
of the test. Timings are short so that a failover takes a few seconds: a master is
declared down after `down_after_ms` without an answer, and a failover is given
`failover_timeout_ms`.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from taskdispatch.dev.embedded_redis import find_redis_server, free_port, redis_answers
from tests.support.probes import wait_until

__all__ = ["MASTER_NAME", "DataNode", "SentinelNode", "SentinelSet"]

MASTER_NAME = "mymaster"
_LOG_TAIL_LINES = 30


class _Server:
    """One redis-server process with a config file of its own in `directory`."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.log_file = directory / "redis.log"
        self.conf = directory / "redis.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, conf: str, *extra: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(conf)
        self.proc = subprocess.Popen(
            [find_redis_server(), str(self.conf), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync, connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _base_conf(self) -> str:
        return (
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f'dir "{self.directory}"\nlogfile "{self.log_file}"\n'
        )


class DataNode(_Server):
    """A master or replica: AOF on, noeviction, and a full sync that starts at once."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        super().__init__(directory)
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, *, replica_of: int | None = None) -> None:
        """Start (again, on the same port and data) as a master, or as a replica of the
        data node on port `replica_of`; returns once it answers PING."""
        conf = self._base_conf() + (
            'appendonly yes\nappendfsync everysec\nsave ""\n'
            "maxmemory-policy noeviction\nhash-max-listpack-value 1024\n"
            # A full sync waits 5 s for more replicas by default; here nobody else comes.
            "repl-diskless-sync-delay 0\n"
        )
        if self.password:
            conf += f"requirepass {self.password}\nmasterauth {self.password}\n"
        if replica_of is not None:
            conf += f"replicaof 127.0.0.1 {replica_of}\n"
        self._spawn(conf)
        wait_until(
            lambda: self._answers_or_raise(),
            timeout_s=10,
            interval_s=0.05,
            message=f"redis-server on port {self.port} to answer",
        )

    def _answers_or_raise(self) -> bool:
        if not self.alive():
            raise AssertionError(f"redis-server on port {self.port} exited:\n{self.tail()}")
        return redis_answers(self.url, timeout_s=0.2)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
        )

    def replication(self) -> dict[str, Any]:
        client = self.client()
        try:
            return dict(client.info("replication"))
        finally:
            client.close()


class SentinelNode(_Server):
    """A `redis-server --sentinel` watching the master named MASTER_NAME."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        super().__init__(directory)
        self.password = password

    def start(
        self,
        *,
        master_port: int,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        master_password: str | None,
    ) -> None:
        conf = self._base_conf() + (
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        if master_password:
            conf += f"sentinel auth-pass {MASTER_NAME} {master_password}\n"
        if self.password:
            conf += f"requirepass {self.password}\n"
        self._spawn(conf, "--sentinel")
        wait_until(
            lambda: self._answers_or_raise(),
            timeout_s=10,
            interval_s=0.05,
            message=f"Sentinel on port {self.port} to answer",
        )

    def _answers_or_raise(self) -> bool:
        if not self.alive():
            raise AssertionError(f"Sentinel on port {self.port} exited:\n{self.tail()}")
        with contextlib.closing(self.client(timeout_s=0.2)) as client:
            try:
                return bool(client.ping())
            except (redis.RedisError, OSError):
                return False

    def client(self, *, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def view(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """What this Sentinel knows of the master and of its replicas."""
        with contextlib.closing(self.client()) as client:
            master = dict(client.sentinel_master(MASTER_NAME))
            replicas = [dict(r) for r in client.sentinel_slaves(MASTER_NAME)]
        return master, replicas


class SentinelSet:
    """A master, `replicas` replicas and `sentinels` Sentinels (quorum: a majority)."""

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.nodes = [
            DataNode(directory / f"node{i + 1}", password=password) for i in range(1 + replicas)
        ]
        self.sentinels = [
            SentinelNode(directory / f"sentinel{i + 1}", password=sentinel_password)
            for i in range(sentinels)
        ]
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        """The Sentinel URL of the set, as a user writes it (the master's password once)."""
        auth = f":{self.password}@" if self.password else ""
        first, *rest = self.sentinels
        return ";".join(
            [f"sentinel://{auth}127.0.0.1:{first.port}/0"]
            + [f"sentinel://127.0.0.1:{s.port}" for s in rest]
        )

    def start(self) -> None:
        master, *replicas = self.nodes
        master.start()
        for node in replicas:
            node.start(replica_of=master.port)
        for node in replicas:
            self.wait_synced(node)
        for sentinel in self.sentinels:
            sentinel.start(
                master_port=master.port,
                quorum=len(self.sentinels) // 2 + 1,
                down_after_ms=self.down_after_ms,
                failover_timeout_ms=self.failover_timeout_ms,
                master_password=self.password,
            )
        self.wait_settled(master.port, timeout_s=30)

    def node_on(self, port: int) -> DataNode:
        return next(node for node in self.nodes if node.port == port)

    def master(self) -> DataNode:
        """The data node every Sentinel names as the master (they must agree)."""
        ports = set()
        for sentinel in self.sentinels:
            with contextlib.closing(sentinel.client()) as client:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            ports.add(int(address[1]))
        assert len(ports) == 1, f"the Sentinels disagree on the master: {ports}"
        return self.node_on(ports.pop())

    def wait_synced(self, node: DataNode, *, timeout_s: float = 30) -> None:
        """`node` is a replica whose link to its master is up."""

        def synced() -> bool:
            info = node.replication()
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        wait_until(synced, timeout_s, interval_s=0.1, message=f"replica {node.port} in sync")

    def wait_settled(self, master_port: int, *, timeout_s: float) -> None:
        """Every Sentinel names `master_port` as a healthy master, sees the other Sentinels,
        and sees every live replica in sync: a failover may then choose any of them."""
        live = {n.port for n in self.nodes if n.alive() and n.port != master_port}

        def settled() -> bool:
            for sentinel in self.sentinels:
                master, replicas = sentinel.view()
                healthy = {
                    int(r["port"])
                    for r in replicas
                    if r["flags"] == "slave" and r.get("master-link-status") == "ok"
                }
                if (
                    int(master["port"]) != master_port
                    or master["flags"] != "master"
                    or int(master["num-other-sentinels"]) != len(self.sentinels) - 1
                    or not live <= healthy
                ):
                    return False
            return True

        wait_until(settled, timeout_s, interval_s=0.2, message="the Sentinels to settle")

    def kill_master(self) -> DataNode:
        """SIGKILL the current master; returns it."""
        node = self.master()
        node.kill()
        return node

    def wait_promoted(self, old: DataNode, *, timeout_s: float = 30) -> DataNode:
        """Wait until every Sentinel names another node as master and that node says it is
        one; returns it."""

        def promoted() -> DataNode | None:
            try:
                node = self.master()
            except (AssertionError, redis.RedisError):
                return None
            if node is old or node.replication().get("role") != "master":
                return None
            return node

        found: DataNode = wait_until(
            promoted, timeout_s, interval_s=0.05, message="a replica to be promoted"
        )
        return found

    def rejoin(self, node: DataNode, *, timeout_s: float = 30) -> None:
        """Start a killed node again as a replica of the current master and wait until it
        is in sync and every Sentinel counts it among the healthy replicas."""
        master = self.master()
        node.start(replica_of=master.port)
        self.wait_synced(node, timeout_s=timeout_s)
        self.wait_settled(master.port, timeout_s=timeout_s)

    def close(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.kill()

    def tails(self) -> str:
        return "\n".join(
            f"----- {type(s).__name__} {s.port} ({s.log_file}) -----\n{s.tail()}"
            for s in [*self.nodes, *self.sentinels]
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
