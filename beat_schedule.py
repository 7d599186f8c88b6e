"""Beat configuration: the Redis scheduler class, and room for a deployment's own entries.

Task rounds are not listed here: the scheduler reads them from Redis, and it does its own
housekeeping (recovery of lost rounds, the end of timed pauses) inside every tick, so that
it runs whatever queues the workers consume. Add periodic Celery tasks of your own to the
dict `beat_schedule` returns, as in any Celery beat configuration.
"""

from __future__ import annotations

from typing import Any

from taskdispatch.settings import Settings

__all__ = ["beat_schedule", "beat_scheduler"]

beat_scheduler = "taskdispatch.engine.beat:RedisScheduler"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {}
