"""When a beat or a worker counts as alive: one rule for every reader of their heartbeats
(status, readiness, metrics, waiting reasons, the healthcheck command)."""

from __future__ import annotations

__all__ = ["ALIVE_MS", "HEARTBEAT_RETENTION_MS"]

# A beat ticks at least every beat_max_sleep_s (5 s) and a consuming worker refreshes its
# heartbeat every 2 s; three missed beats of the slower one mean it is gone.
ALIVE_MS = 15_000
# Heartbeats (beats, workers) older than this are trimmed from their sorted sets.
HEARTBEAT_RETENTION_MS = 3_600_000
