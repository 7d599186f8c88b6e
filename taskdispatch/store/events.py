"""Live events in a Redis stream, written in the same transaction as the change.

Every API replica can serve them (`GET /api/v1/events`), and a client that reconnects
resumes after the last id it saw (the SSE `Last-Event-ID`). The stream is trimmed to
about `MAX_EVENTS` entries, so a client away for longer misses the oldest.
"""

from __future__ import annotations

import json
from typing import Any

from taskdispatch.store.keys import Keys

__all__ = ["MAX_EVENTS", "event_fields", "queue_event"]

MAX_EVENTS = 10_000


def event_fields(kind: str, **data: Any) -> dict[str, str]:
    """The stream entry of one event (for a script that adds it, trimmed to `MAX_EVENTS`)."""
    return {"type": kind, "data": json.dumps(data, ensure_ascii=False, default=str)}


def queue_event(pipe: Any, keys: Keys, kind: str, **data: Any) -> None:
    """Queue one event, e.g. `task.created` or `round.finished`, with a JSON payload."""
    pipe.xadd(keys.events(), event_fields(kind, **data), maxlen=MAX_EVENTS, approximate=True)
