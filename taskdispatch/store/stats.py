"""Round statistics that hold across processes: recorded here, exposed by the API.

Workers count rounds and their start lag into one Redis hash inside the transaction that
records the round, so any API replica can serve the totals of all workers at `GET
/metrics` (`api/routers/metrics.py`, which adds the gauges read at scrape time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskdispatch.store.keys import Keys

__all__ = [
    "LAG_BUCKETS_S",
    "RoundStats",
    "bucket_label",
    "queue_limit_wait",
    "queue_round_stats",
    "read_round_stats",
]

LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)


def bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def queue_round_stats(
    pipe: Any,
    keys: Keys,
    *,
    outcome: str,
    task_type: str,
    scheduled_ms: int | None,
    planned_ms: int | None,
    started_ms: int | None,
) -> None:
    """Count a round record (history.RunRecord's fields of the same names) and its lag."""
    pipe.hincrby(keys.stats(), f"rounds|{outcome}|{task_type}", 1)
    if started_ms is None or scheduled_ms is None or outcome == "lost":
        return
    # Lag from the planned start: jitter is intended, not lateness.
    planned = planned_ms if planned_ms is not None else scheduled_ms
    lag_s = max(0, started_ms - planned) / 1000
    # Stored per bucket (not cumulative) so one round costs two HINCRBYs.
    le = next(b for b in LAG_BUCKETS_S if lag_s <= b)
    pipe.hincrby(keys.stats(), f"lag|{bucket_label(le)}", 1)
    pipe.hincrbyfloat(keys.stats(), "lag_sum", lag_s)


def queue_limit_wait(pipe: Any, keys: Keys, *, limit: str, code: str) -> None:
    """Count a round that had to wait for `limit` ("limit_full" or "rate_limited")."""
    pipe.hincrby(keys.stats(), f"waits|{code}|{limit}", 1)


@dataclass(frozen=True)
class RoundStats:
    """The totals of every worker: rounds per (outcome, task_type), the lag histogram, and
    waits per (code, limit)."""

    rounds: dict[tuple[str, str], float]
    # (upper bound label, cumulative count) for each bucket of LAG_BUCKETS_S, in order.
    lag_buckets: list[tuple[str, float]]
    lag_sum_s: float
    waits: dict[tuple[str, str], float]


def read_round_stats(raw: Mapping[str, str]) -> RoundStats:
    """Parse the stats hash as `queue_round_stats` writes it."""
    rounds: dict[tuple[str, str], float] = {}
    waits: dict[tuple[str, str], float] = {}
    for field, total in raw.items():
        if field.startswith("rounds|"):
            _, outcome, task_type = field.split("|", 2)
            rounds[(outcome, task_type)] = float(total)
        elif field.startswith("waits|"):
            _, code, limit = field.split("|", 2)
            waits[(code, limit)] = float(total)
    cumulative, buckets = 0.0, []
    for le in LAG_BUCKETS_S:
        cumulative += float(raw.get(f"lag|{bucket_label(le)}", 0))
        buckets.append((bucket_label(le), cumulative))
    return RoundStats(rounds, buckets, float(raw.get("lag_sum", 0)), waits)
