"""Beat configuration: the Redis scheduler class and its housekeeping entries.

Task rounds are not listed here: the scheduler reads them from Redis. Only
housekeeping that every beat may run (it is idempotent) lives in this schedule.
"""

from __future__ import annotations

from typing import Any

from taskdispatch.settings import Settings
from taskdispatch.worker import RECOVER_TASK

__all__ = ["beat_schedule", "beat_scheduler"]

beat_scheduler = "taskdispatch.scheduler:RedisScheduler"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "taskdispatch-recover-lost-rounds": {
            "task": RECOVER_TASK,
            "schedule": settings.recovery_every_s,
            # A recovery message that waited longer than one period is superseded by the next.
            "options": {"expires": settings.recovery_every_s},
        },
    }
