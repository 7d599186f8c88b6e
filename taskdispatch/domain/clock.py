"""The one wall clock: epoch milliseconds (UTC), which every instant in Redis uses.

Pure code takes `now_ms` as an argument; only the edges (API calls, a worker's round, a
beat's tick, heartbeats) read this clock, and tests pass their own.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
