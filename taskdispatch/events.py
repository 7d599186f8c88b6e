"""Live events in a Redis stream, written in the same transaction as the change.

Every API replica can serve them (`GET /api/v1/events`), and a client that reconnects
resumes after the last id it saw (the SSE `Last-Event-ID`). The stream is trimmed to
about `MAX_EVENTS` entries, so a client away for longer misses the oldest.
"""

from __future__ import annotations

import json
from typing import Any

from taskdispatch.keys import Keys

__all__ = ["MAX_EVENTS", "queue_event"]

MAX_EVENTS = 10_000


def queue_event(pipe: Any, keys: Keys, kind: str, **data: Any) -> None:
    """Queue one event, e.g. `task.created` or `round.finished`, with a JSON payload."""
    pipe.xadd(
        keys.events(),
        {"type": kind, "data": json.dumps(data, ensure_ascii=False, default=str)},
        maxlen=MAX_EVENTS,
        approximate=True,
    )
