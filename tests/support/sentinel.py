"""A Redis master, its replicas and three Sentinels on 127.0.0.1, as real processes.

Every process is the `redis-server` binary (`find_redis_server`), data nodes with a config
file each (Sentinel rewrites a replica's `replicaof` into it on a failover) and Sentinels
with `--sentinel` and their own config file (which they rewrite too), all in directories
of the test. Timings are short so that a failover takes a few seconds: a master is
declared down after `down_after_ms` without an answer, and a failover is given
`failover_timeout_ms`. Given a `Tls`, every server listens with TLS only and the set's URL
carries the options that verify them.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from taskdispatch.dev.embedded_redis import find_redis_server, free_port, redis_answers
from tests.support.probes import wait_until

__all__ = [
    "MASTER_NAME",
    "DataNode",
    "DeadSentinel",
    "SentinelNode",
    "SentinelSet",
    "Tls",
    "wait_synced",
]

MASTER_NAME = "mymaster"
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Tls:
    """A certificate (self-signed: it is its own CA) and its key; a server given one listens
    only with TLS, and talks TLS to the other servers (replication, Sentinel links)."""

    cert: Path
    key: Path

    def conf(self) -> str:
        return (
            f'tls-cert-file "{self.cert}"\ntls-key-file "{self.key}"\n'
            f'tls-ca-cert-file "{self.cert}"\ntls-auth-clients no\ntls-replication yes\n'
        )

    def query(self) -> str:
        """The URL options that make a client verify the servers against this CA."""
        return f"ssl_cert_reqs=required&ssl_ca_certs={self.cert}"

    def client_options(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_cert_reqs": "required", "ssl_ca_certs": str(self.cert)}


class _Server:
    """One redis-server process with a config file of its own in `directory`."""

    def __init__(self, directory: Path, *, port: int | None = None, tls: Tls | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.log_file = directory / "redis.log"
        self.conf = directory / "redis.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, conf: str | None, *extra: str) -> None:
        """Start the process on `conf`, or on the config file as it is (None)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if conf is not None:
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
        listen = (
            f"port 0\ntls-port {self.port}\n{self.tls.conf()}"
            if self.tls
            else f"port {self.port}\n"
        )
        return (
            f"{listen}bind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f'dir "{self.directory}"\nlogfile "{self.log_file}"\n'
        )

    def tls_options(self) -> dict[str, Any]:
        return self.tls.client_options() if self.tls else {}


class DataNode(_Server):
    """A master or replica: AOF on, noeviction, and a full sync that starts at once."""

    def __init__(
        self, directory: Path, *, password: str | None = None, tls: Tls | None = None
    ) -> None:
        super().__init__(directory, tls=tls)
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?{self.tls.query()}"
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


def wait_synced(node: DataNode, *, timeout_s: float = 30) -> None:
    """`node` is a replica whose link to its master is up and which acknowledges the
    master's latest write, as WAIT counts replicas.

    The replica says "up" once it loaded the master's data, and after a diskless sync the
    master lists it "online" at once, yet streams nothing to it until its first
    acknowledgement (up to a second later): WAIT then counts it as missing.
    """

    def synced() -> bool:
        info = node.replication()
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return False
        master = redis.Redis(
            host=str(info["master_host"]),
            port=int(info["master_port"]),
            password=node.password,
            decode_responses=True,
            socket_timeout=5,
            **node.tls_options(),
        )
        with contextlib.closing(master):
            # A PUBLISH is replicated: it moves the replication offset without a key.
            master.publish("tests:replication-probe", node.port)
            wanted = int(master.info("replication")["master_repl_offset"])
            master.execute_command("WAIT", 1, 100)  # asks the replicas to acknowledge now
            replicas = master.info("replication")
        return any(
            isinstance(entry, dict)
            and entry.get("port") == node.port
            and entry["state"] == "online"
            and int(entry["offset"]) >= wanted
            for entry in replicas.values()
        )

    wait_until(synced, timeout_s, interval_s=0.1, message=f"replica {node.port} in sync")


class SentinelNode(_Server):
    """A `redis-server --sentinel` watching the master named MASTER_NAME."""

    def __init__(
        self, directory: Path, *, password: str | None = None, tls: Tls | None = None
    ) -> None:
        super().__init__(directory, tls=tls)
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
        self._wait_answering()

    def restart(self) -> None:
        """Start again on the config file this Sentinel rewrote itself (its id, the master,
        the replicas and Sentinels it knew), as on a host that comes back."""
        self._spawn(None, "--sentinel")
        self._wait_answering()

    def _wait_answering(self) -> None:
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
            **self.tls_options(),
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
        tls: Tls | None = None,
    ) -> None:
        self.nodes = [
            DataNode(directory / f"node{i + 1}", password=password, tls=tls)
            for i in range(1 + replicas)
        ]
        self.sentinels = [
            SentinelNode(directory / f"sentinel{i + 1}", password=sentinel_password, tls=tls)
            for i in range(sentinels)
        ]
        self.password = password
        self.tls = tls
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        """The Sentinel URL of the set, as a user writes it (the master's password once)."""
        auth = f":{self.password}@" if self.password else ""
        query = f"?{self.tls.query()}" if self.tls else ""
        first, *rest = self.sentinels
        return ";".join(
            [f"sentinel://{auth}127.0.0.1:{first.port}/0{query}"]
            + [f"sentinel://127.0.0.1:{s.port}" for s in rest]
        )

    def start(self) -> None:
        master, *replicas = self.nodes
        master.start()
        for node in replicas:
            node.start(replica_of=master.port)
        for node in replicas:
            wait_synced(node)
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
        """The data node every live Sentinel names as the master (they must agree)."""
        ports = set()
        for sentinel in self.live_sentinels():
            with contextlib.closing(sentinel.client()) as client:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            ports.add(int(address[1]))
        assert len(ports) == 1, f"the Sentinels disagree on the master: {ports}"
        return self.node_on(ports.pop())

    def live_sentinels(self) -> list[SentinelNode]:
        return [sentinel for sentinel in self.sentinels if sentinel.alive()]

    def wait_settled(self, master_port: int, *, timeout_s: float) -> None:
        """Every live Sentinel names `master_port` as a healthy master, knows the other
        Sentinels, and sees every live replica in sync: a failover may then choose any."""
        live = {n.port for n in self.nodes if n.alive() and n.port != master_port}

        def settled() -> bool:
            for sentinel in self.live_sentinels():
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
        wait_synced(node, timeout_s=timeout_s)
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


class DeadSentinel:
    """A port where a Sentinel should be that closes every connection at once, counting
    them: a Sentinel that is down, whose callers' attempts can be counted."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"sentinel://127.0.0.1:{self.port}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        # A close alone leaves accept() blocked in the other thread; a shutdown ends it.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
