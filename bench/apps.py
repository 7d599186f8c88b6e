"""The Celery app and schedulers under test, each built the way its users build it."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace
from typing import Any

from taskdispatch.engine.worker import create_celery_app
from taskdispatch.settings import Settings, get_settings

__all__ = [
    "celery_app",
    "have_redbeat",
    "persistent_scheduler",
    "redbeat_scheduler",
    "td_scheduler",
]


def have_redbeat() -> bool:
    try:
        import redbeat  # noqa: F401
    except ImportError:
        return False
    return True


def celery_app(redis_url: str, *, key_prefix: str = "td:", redbeat_prefix: str = "redbeat:") -> Any:
    """taskdispatch's Celery app (its config: events on, JSON, Redis broker = the bench Redis).

    The key prefixes let several stored sizes live side by side in one Redis, so that sizes
    can be measured in interleaved rounds (see bench/tick.py).
    """
    # Each measurement builds its own app; Celery warns that they share task names.
    warnings.filterwarnings("ignore", message=r"Task name .* is already registered")
    # RedisScheduler reads get_settings(), i.e. the environment.
    os.environ["TASKDISPATCH_REDIS_URL"] = redis_url
    os.environ["TASKDISPATCH_KEY_PREFIX"] = key_prefix
    get_settings.cache_clear()
    app = create_celery_app(Settings(redis_url=redis_url, key_prefix=key_prefix))
    # RedBeat reads these; set explicitly so it never falls back to the broker settings.
    app.conf.redbeat_redis_url = redis_url
    app.conf.redbeat_key_prefix = redbeat_prefix
    return app


def td_scheduler(app: Any) -> Any:
    from taskdispatch.engine.beat import RedisScheduler

    return RedisScheduler(app=app, lazy=True)


def redbeat_scheduler(app: Any) -> Any:
    """RedBeat as `celery beat -S redbeat.RedBeatScheduler` runs it, leader lock included."""
    from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock

    scheduler = RedBeatScheduler(app=app, lazy=True)
    # beat_init does this in a real beat; every tick then extends the lock (one round trip).
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=scheduler))
    return scheduler


def persistent_scheduler(app: Any, schedule_filename: str) -> Any:
    """Celery's default PersistentScheduler over `app.conf.beat_schedule` (a shelve file)."""
    from celery.beat import PersistentScheduler

    return PersistentScheduler(app=app, schedule_filename=schedule_filename)
