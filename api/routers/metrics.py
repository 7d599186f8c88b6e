"""GET /metrics: Prometheus text for the whole deployment (any API replica serves it).

Top level, where Prometheus looks by default. When the API has a token the route needs it
like every other; Prometheus sends it with `authorization: {type: Bearer, credentials: ...}`
(or `bearer_token` in older versions) in the scrape config. The counters are recorded by
the workers (`taskdispatch/store/stats.py`); the gauges are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.dependencies import DispatcherDep
from taskdispatch.engine.notifier import delivery_counts
from taskdispatch.service.dispatcher import LimitView, TaskDispatcher

__all__ = ["render_metrics", "router"]

router = APIRouter(tags=["调度器管理"])


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def render_metrics(dispatcher: TaskDispatcher) -> bytes:
    """The Prometheus text exposition of the whole deployment."""
    status = await dispatcher.status()
    stats = await dispatcher.round_stats()

    tasks = GaugeMetricFamily("taskdispatch_tasks", "Tasks per status", labels=["status"])
    for name, count in status.counts.items():
        tasks.add_metric([name], count)
    families: list[Metric] = [tasks]
    gauges: list[tuple[str, str, float]] = [
        (
            "due_backlog",
            "Tasks due but not yet claimed by a beat, plus messages in queues nobody consumes",
            status.due_backlog,
        ),
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
    # Per queue, so that an alert names the queue that needs a worker (due_backlog sums them).
    unconsumed = GaugeMetricFamily(
        "taskdispatch_queue_unconsumed_messages",
        "Rounds waiting in a queue no live worker consumes",
        labels=["queue"],
    )
    for queue, count in status.unconsumed_queues.items():
        unconsumed.add_metric([queue], count)
    families.append(unconsumed)

    per_limit: list[tuple[str, str, Callable[[LimitView], int | None]]] = [
        ("in_use", "Rounds holding a place in the limit", lambda v: v.in_use),
        ("capacity", "The limit's max_concurrent", lambda v: v.limit.max_concurrent),
        ("waiting", "Rounds waiting for the limit", lambda v: v.waiting),
        ("starts_in_window", "Starts in the limit's last per_s", lambda v: v.starts_in_window),
        ("max_starts", "The limit's max_starts per per_s", lambda v: v.limit.max_starts),
    ]
    for name, doc, value_of in per_limit:
        family = GaugeMetricFamily(f"taskdispatch_limit_{name}", doc, labels=["limit"])
        for view in status.limits:
            if (limit_value := value_of(view)) is not None:
                family.add_metric([view.limit.name], limit_value)
        families.append(family)
    waits = CounterMetricFamily(
        "taskdispatch_limit_waits", "Rounds that waited for a limit", labels=["reason", "limit"]
    )
    for (code, limit), total in stats.waits.items():
        waits.add_metric([code, limit], total)
    families.append(waits)

    rounds = CounterMetricFamily(
        "taskdispatch_rounds", "Rounds by outcome and task type", labels=["outcome", "task_type"]
    )
    for (outcome, task_type), total in stats.rounds.items():
        rounds.add_metric([outcome, task_type], total)
    families.append(rounds)
    families.append(
        HistogramMetricFamily(
            "taskdispatch_round_start_lag_seconds",
            "Round start minus its scheduled slot",
            buckets=stats.lag_buckets,
            sum_value=stats.lag_sum_s,
        )
    )
    notified = await delivery_counts(dispatcher.redis, dispatcher.keys)
    for name, doc, per_notification in (
        ("delivered", "Alert messages a receiver took", notified.delivered),
        ("given_up", "Alert messages given up after notify_retry_for_s", notified.given_up),
    ):
        counter = CounterMetricFamily(
            f"taskdispatch_notifications_{name}", doc, labels=["notification"]
        )
        for notification, total in sorted(per_notification.items()):
            counter.add_metric([notification], total)
        families.append(counter)
    families.append(
        GaugeMetricFamily(
            "taskdispatch_notifications_pending",
            "Alert messages waiting to be sent or retried",
            value=notified.pending,
        )
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


@router.get(
    "/metrics",
    summary="Prometheus 指标",
    description=(
        "任务数（按状态）、待派发积压、调度延迟、存活的 beat / worker、各结果的轮次计数、"
        "开始延迟直方图，各限流规则的占用、容量、等待数与等待次数，以及各告警通知的"
        "已送达、已放弃与待发送的消息数；数据来自 Redis，"
        "任一 API 副本返回的都是整个部署的数值。"
    ),
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "指标文本"}},
)
async def metrics(dispatcher: DispatcherDep) -> Response:
    # generate_latest writes the classic 0.0.4 text format, which every Prometheus parses;
    # prometheus_client's own server labels it the same way.
    return Response(await render_metrics(dispatcher), media_type=CONTENT_TYPE_PLAIN_0_0_4)
