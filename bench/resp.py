"""A write-only Redis pipeline for bulk loads: redis-py's commands, packed by hand.

The loaders queue `write.queue_task_write` (and RedBeat's own writes) on this object exactly
as on a redis-py pipeline: every command method is redis-py's own (`CoreCommands`), so the
commands and records are the ones the store writes. Only the transport differs: redis-py
packs each command in ~17 µs and builds a Python object for every reply, which made loading
1M tasks take over three minutes; here a command is one bytes join and replies are skipped.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from redis.commands.core import CoreCommands

__all__ = ["RespPipe"]


def _arg(value: Any) -> bytes:
    """Encode one argument as redis-py's Encoder does (str as UTF-8, float by repr)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _skip(buf: bytearray, pos: int) -> int:
    """The position after the RESP2 reply starting at `pos`, or -1 if it is incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return -1
    kind = buf[pos]
    if kind in b"+:":
        return end + 2
    if kind == ord("-"):
        raise RuntimeError(f"Redis refused a bulk-load command: {buf[pos + 1 : end].decode()}")
    n = int(buf[pos + 1 : end])
    if kind == ord("$"):
        stop = end + 2 + (n + 2 if n >= 0 else 0)
        return stop if len(buf) >= stop else -1
    after = end + 2  # an array: skip its n elements
    for _ in range(max(n, 0)):
        after = _skip(buf, after)
        if after < 0:
            return -1
    return after


class RespPipe(CoreCommands):  # type: ignore[misc]
    """Queue commands; `execute()` sends them at once and checks no reply is an error."""

    def __init__(self, url: str, *, flush_every: int = 20_000) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._buf: list[bytes] = []
        self._pending = 0
        self.flush_every = flush_every
        self.sent = 0
        db = int(parts.path.strip("/") or 0)
        if db:
            self.execute_command("SELECT", db)
            self.execute()

    def execute_command(self, *args: Any, **options: Any) -> None:
        """Where every redis-py command method ends: pack the command, flush when many."""
        encoded = [a if type(a) is bytes else _arg(a) for a in args]
        self._buf.append(
            b"*%d\r\n%s"
            % (len(encoded), b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded]))
        )
        self._pending += 1
        if self._pending >= self.flush_every:
            self.execute()

    def execute(self) -> None:
        if not self._pending:
            return
        self._sock.sendall(b"".join(self._buf))
        expected, self._pending, self._buf = self._pending, 0, []
        data, pos, seen = bytearray(), 0, 0
        while seen < expected:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("Redis closed the connection during a bulk load")
            data += chunk
            while seen < expected and (after := _skip(data, pos)) >= 0:
                pos, seen = after, seen + 1
            del data[:pos]
            pos = 0
        self.sent += expected

    def close(self) -> None:
        try:
            self.execute()
        finally:
            self._sock.close()

    def __enter__(self) -> RespPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
