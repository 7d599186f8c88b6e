"""Specification of GET /metrics: Prometheus text for the deployment, behind the token."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store.history import RunRecord, queue_run_record
from tests.support.api import TOKEN, CreateTask


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def test_metrics_is_prometheus_text_with_tasks_per_status(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Tasks per status are gauges with the right counts, in Prometheus' text format."""
    for account in ("a1", "a2", "a3"):
        await create_task(account)
    paused = (await create_task("a4"))["task_id"]
    await client.post(f"/api/v1/tasks/{paused}/pause")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'taskdispatch_tasks{status="pending"} 3.0' in response.text
    assert value(response.text, "taskdispatch_tasks", status="paused") == 1
    assert value(response.text, "taskdispatch_tasks", status="error") == 0
    assert value(response.text, "taskdispatch_dispatcher_enabled") == 1


async def test_metrics_counts_rounds_recorded_by_the_core(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, create_task: CreateTask
) -> None:
    """A run record written as a worker writes it shows in the round counters and lag."""
    task = await dispatcher.get_task((await create_task())["task_id"])
    now = time.time_ns() // 1_000_000
    records = [
        RunRecord(outcome="ok", scheduled_ms=now - 10_000, started_ms=now - 9_800),
        RunRecord(outcome="ok", scheduled_ms=now - 5_000, started_ms=now - 2_000),
        RunRecord(outcome="failed", scheduled_ms=now - 1_000, started_ms=now - 1_000),
    ]
    async with dispatcher.redis.pipeline(transaction=True) as pipe:
        for record in records:
            queue_run_record(pipe, dispatcher.keys, task, record, keep=50)
        await pipe.execute()

    text = (await client.get("/metrics")).text
    rounds = "taskdispatch_rounds_total"
    assert value(text, rounds, outcome="ok", task_type="xhs_type") == 2
    assert value(text, rounds, outcome="failed", task_type="xhs_type") == 1
    lag = "taskdispatch_round_start_lag_seconds"
    assert value(text, f"{lag}_count") == 3
    assert value(text, f"{lag}_bucket", le="0.25") == 2  # 0.2 s and 0 s
    assert value(text, f"{lag}_sum") == pytest.approx(3.2)


async def test_metrics_is_top_level_only(client: httpx.AsyncClient) -> None:
    """Served at /metrics, where Prometheus scrapes by default, not under /api/v1."""
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/api/v1/metrics")).status_code == 404


async def test_metrics_with_token_needs_bearer(secured_client: httpx.AsyncClient) -> None:
    """With an API token, scrapes need `Authorization: Bearer` like every other route."""
    assert (await secured_client.get("/metrics")).status_code == 401
    assert (await secured_client.get("/metrics?token=" + TOKEN)).status_code == 401
    authorized = await secured_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200
    assert "taskdispatch_tasks" in authorized.text


async def test_metrics_names_each_queue_no_live_worker_consumes(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """Rounds waiting in a queue without a live consumer show per queue; a consumer hides it."""
    # Arranged as a beat leaves it: the queue noted as published, its messages in its list.
    await dispatcher.redis.sadd(dispatcher.keys.published_queues(), "dev-a")
    await dispatcher.redis.lpush("dev-a", "m1", "m2")
    gauge = "taskdispatch_queue_unconsumed_messages"
    assert value((await client.get("/metrics")).text, gauge, queue="dev-a") == 2

    now = time.time_ns() // 1_000_000
    await dispatcher.redis.hset(dispatcher.keys.worker_queues(), "w1@host", "celery,dev-a")
    await dispatcher.redis.zadd(dispatcher.keys.workers(), {"w1@host": now})
    assert value((await client.get("/metrics")).text, gauge, queue="dev-a") is None
