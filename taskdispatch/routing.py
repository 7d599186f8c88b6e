"""Which Celery queue a round goes to: the one rule the beat (to publish) and the service
(to explain `no_worker_for_queue`) share."""

from __future__ import annotations

from taskdispatch.settings import Settings

__all__ = ["queue_for"]


def queue_for(sys_type: str, settings: Settings) -> str:
    """The queue of a round: its task's sys_type when routing by it is on, else the default."""
    return sys_type if settings.route_by_sys_type else settings.default_queue
