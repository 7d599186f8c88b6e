"""Prometheus metrics that hold across processes.

Workers count rounds and their start lag into one Redis hash inside the transaction
that records the round, so any API replica can serve the totals of all workers at
`GET /metrics`; gauges (tasks per status, backlog, liveness) are read at scrape time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from taskdispatch.keys import Keys

if TYPE_CHECKING:
    from taskdispatch.dispatcher import TaskDispatcher
    from taskdispatch.history import RunRecord

__all__ = ["LAG_BUCKETS_S", "queue_round_stats", "render_metrics"]

LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)


def _bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def queue_round_stats(pipe: Any, keys: Keys, record: RunRecord, *, task_type: str) -> None:
    pipe.hincrby(keys.stats(), f"rounds|{record.outcome}|{task_type}", 1)
    if record.started_ms is None or record.scheduled_ms is None or record.outcome == "lost":
        return
    lag_s = max(0, record.started_ms - record.scheduled_ms) / 1000
    # Stored per bucket (not cumulative) so one round costs two HINCRBYs.
    le = next(b for b in LAG_BUCKETS_S if lag_s <= b)
    pipe.hincrby(keys.stats(), f"lag|{_bucket_label(le)}", 1)
    pipe.hincrbyfloat(keys.stats(), "lag_sum", lag_s)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def render_metrics(dispatcher: TaskDispatcher) -> bytes:
    """The Prometheus text exposition of the whole deployment."""
    status = await dispatcher.status()
    stats = await dispatcher.redis.hgetall(dispatcher.keys.stats())
    raw = {str(field): str(value) for field, value in stats.items()}

    tasks = GaugeMetricFamily("taskdispatch_tasks", "Tasks per status", labels=["status"])
    for name, count in status.counts.items():
        tasks.add_metric([name], count)
    families: list[Metric] = [tasks]
    gauges: list[tuple[str, str, float]] = [
        ("due_backlog", "Tasks due but not yet claimed by a beat", status.due_backlog),
        ("running_rounds", "Rounds in progress", len(status.running_rounds)),
        ("beats_alive", "Beats with a fresh heartbeat", status.beats_alive),
        ("workers_alive", "Workers with a fresh heartbeat", status.workers_alive),
        ("dispatcher_enabled", "1 when the dispatcher flag is on", int(status.enabled)),
        (
            "scheduling_lag_seconds",
            "Wait of the oldest unclaimed due task",
            status.scheduling_lag_ms / 1000,
        ),
    ]
    for name, doc, value in gauges:
        families.append(GaugeMetricFamily(f"taskdispatch_{name}", doc, value=value))

    rounds = CounterMetricFamily(
        "taskdispatch_rounds", "Rounds by outcome and task type", labels=["outcome", "task_type"]
    )
    for field, total in raw.items():
        if field.startswith("rounds|"):
            _, outcome, task_type = field.split("|", 2)
            rounds.add_metric([outcome, task_type], float(total))
    families.append(rounds)

    cumulative, buckets = 0.0, []
    for le in LAG_BUCKETS_S:
        cumulative += float(raw.get(f"lag|{_bucket_label(le)}", 0))
        buckets.append((_bucket_label(le), cumulative))
    families.append(
        HistogramMetricFamily(
            "taskdispatch_round_start_lag_seconds",
            "Round start minus its scheduled slot",
            buckets=buckets,
            sum_value=float(raw.get("lag_sum", 0)),
        )
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
