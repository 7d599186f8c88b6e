"""A webhook receiver of the test's own: a local HTTP server recording every POST.

It answers 200 unless told otherwise: `fail_next(503, 503)` makes the next requests fail
with those statuses, `hold_next()` keeps the next request waiting for an answer until
`release()` (a sender killed meanwhile never gets one). Every request is recorded when it
arrives, with the status it is to be answered with, and marked `answered` once the answer
went out.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver"]

# A held request waits at most this long (a test that forgets to release it still ends).
_HOLD_MAX_S = 60.0


@dataclass(frozen=True)
class Received:
    at_ms: int
    path: str
    # Header names in lower case.
    headers: dict[str, str]
    body: bytes
    status: int
    answered: bool = False

    @property
    def ok(self) -> bool:
        """Answered with a 2xx: delivered."""
        return self.answered and 200 <= self.status < 300

    @property
    def delivery_id(self) -> str:
        return self.headers["x-taskdispatch-delivery"]

    @property
    def event(self) -> str:
        return self.headers["x-taskdispatch-event"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """`with Receiver() as r:` serves on 127.0.0.1 (a free port) in a thread; `r.url`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._statuses: deque[int] = deque()
        self._hold_next = False
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, hold = receiver._answer()
                received = Received(
                    at_ms=time.time_ns() // 1_000_000,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    status=status,
                )
                with receiver._lock:
                    index = len(receiver._received)
                    receiver._received.append(received)
                if hold:
                    receiver._released.wait(_HOLD_MAX_S)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    self.wfile.flush()
                except OSError:
                    return  # the sender is gone (killed while held)
                with receiver._lock:
                    receiver._received[index] = replace(received, answered=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def _answer(self) -> tuple[int, bool]:
        with self._lock:
            status = self._statuses.popleft() if self._statuses else 200
            hold, self._hold_next = self._hold_next, False
            return status, hold

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (then 200 again)."""
        with self._lock:
            self._statuses.extend(statuses)

    def hold_next(self) -> None:
        """Keep the next request waiting for its answer until `release()`."""
        with self._lock:
            self._hold_next = True
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx (a held one only once its answer went out)."""
        return [r for r in self.received() if r.ok]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
