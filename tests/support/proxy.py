"""A TCP proxy in front of a Redis that cuts connections at chosen moments.

Tests point a client at `proxy.url` instead of the server and then

- `lose_next_exec_reply()`: the next MULTI/EXEC is forwarded and executed by Redis, but its
  reply never reaches the client, whose connection is closed instead (the worst case for
  a retrying writer: it cannot know whether its transaction was applied);
- `block()` / `unblock()`: every connection is cut and new ones are refused until unblocked
  (Redis unreachable, as during a restart);
- `deafen_next(b"BRPOP")`: the next connection that sends this command goes silent in both
  directions from then on, while every other connection works (a consumer stuck on a
  connection that will never answer, as in a "deaf worker" after a broker reconnect);
- `partition()` / `heal()`: nothing passes in either direction, but no connection is closed
  and new ones are accepted (packets dropped, as in a real partition: a client only notices
  through its own timeouts); healing closes the connections that lived through it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Self

__all__ = ["FlakyProxy"]

_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


class _Link:
    """One client connection and its upstream connection, pumped by two threads."""

    def __init__(self, proxy: FlakyProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.drop_reply = False
        self.silent = False
        self.closed = threading.Event()
        for target in (self._client_to_upstream, self._upstream_to_client):
            threading.Thread(target=target, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _client_to_upstream(self) -> None:
        tail = b""
        while not self.closed.is_set():
            try:
                data = self.client.recv(65536)
            except OSError:
                break
            if not data:
                break
            # EXEC may straddle two reads: look at the end of the previous one too.
            if _EXEC in tail + data and self.proxy._take_exec_arm():
                self.drop_reply = True
            tail = data[-len(_EXEC) :]
            if not self.silent and self.proxy._take_deafen(data):
                self.silent = True
            if self.proxy.partitioned or self.silent:
                continue  # dropped on the floor
            try:
                self.upstream.sendall(data)
            except OSError:
                break
            if self.drop_reply:
                # Give Redis time to run the EXEC (loopback: well under a millisecond),
                # while the other pump swallows every reply; then cut the client off.
                time.sleep(0.05)
                self.proxy.exec_replies_lost += 1
                break
        self.close()

    def _upstream_to_client(self) -> None:
        while not self.closed.is_set():
            try:
                data = self.upstream.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.drop_reply or self.silent or self.proxy.partitioned:
                continue  # the transaction's replies never reach the client
            try:
                self.client.sendall(data)
            except OSError:
                break
        self.close()


class FlakyProxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._exec_armed = 0
        self._blocked = False
        self.partitioned = False
        self._deafen: bytes | None = None
        self.deafened = 0
        self.exec_replies_lost = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def url_for(self, password: str | None = None, db: int = 0) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for()

    def lose_next_exec_reply(self, count: int = 1) -> None:
        with self._lock:
            self._exec_armed += count

    def _take_exec_arm(self) -> bool:
        with self._lock:
            if self._exec_armed <= 0:
                return False
            self._exec_armed -= 1
            return True

    def block(self) -> None:
        with self._lock:
            self._blocked = True
            links, self._links = self._links, []
        for link in links:
            link.close()

    def unblock(self) -> None:
        with self._lock:
            self._blocked = False

    def deafen_next(self, command: bytes) -> None:
        with self._lock:
            self._deafen = command.upper()

    def _take_deafen(self, data: bytes) -> bool:
        with self._lock:
            if self._deafen is None or self._deafen not in data.upper():
                return False
            self._deafen = None
            self.deafened += 1
            return True

    def partition(self) -> None:
        self.partitioned = True

    def heal(self) -> None:
        """End the partition; connections that lived through it are cut (their streams lost
        bytes), so clients reconnect."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        self.partitioned = False

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                blocked = self._blocked
            if blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links = [x for x in self._links if not x.closed.is_set()]
                self._links.append(_Link(self, client, upstream))

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.block()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
