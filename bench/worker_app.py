"""The Celery app the worker floor runs (`celery -A bench.worker_app worker`): taskdispatch's
own app, plus a plain no-op task to compare a round with (bench/worker.py)."""

from __future__ import annotations

from celery_app import app

__all__ = ["app", "noop"]


@app.task(name="bench.noop", ignore_result=True)  # type: ignore[untyped-decorator]
def noop() -> None:
    """Celery's minimum: a message received, run, acknowledged, its events sent."""
