"""A fix for the pinned Celery/kombu: a Redis restart must not make a worker shut down.

Found by reproducing the failures of the Redis-restart tests (docs/reliability.md, "No
deaf workers"): 13 of 30 runs of 5 restarts in 15 s with busy workers ended with the worker
gone. `Consumer.on_connection_error_after_connected` (celery 5.7.0,
celery/worker/consumer/consumer.py) calls `connection.collect()` and then, new in 5.7.0,
`connection.close()`. `collect()` closes the channels and detaches the transport
(kombu/connection.py `_do_close_transport`: `transport.client = None`) but keeps
`_default_channel`. When its close of that channel was cut short (draining a pending BRPOP
on the dead socket raises, kombu/transport/redis.py `Channel.close`), `close()` closes it a
second time, for real: the channel drops its pool, `restore_unacked` needs a new one, and
`Channel._connparams` fails on `self.connection.client.hostname` with an AttributeError.
`ignore_errors` lets it through (it ignores connection errors only), `Consumer.start`
raises it, and the worker logs "Unrecoverable error" and exits with status 1.

- Patch A: after `collect()` the connection holds no channel of the transport it detached,
  so the `close()` that follows has nothing left to do, as in celery 5.6.
- Patch B: a channel of a detached transport raises redis-py's `ConnectionError` instead of
  an AttributeError when it needs a new pool; every caller (ignore_errors, ack_log_error,
  the consumer's reconnect) already handles that, so no late use of an old channel (a
  message's ack after the reconnect) can end the worker.

Both apply only to the versions they were written for; `tests/unit/test_broker_patches.py`
reproduces the crash on the unpatched versions, so an upgrade that fixes it upstream shows.
"""

from __future__ import annotations

import logging
from typing import Any

import celery
import kombu
from kombu import connection as kombu_connection
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["PATCHED_VERSIONS", "apply"]

log = logging.getLogger(__name__)

# (celery, kombu) versions these patches were written for and tested against.
PATCHED_VERSIONS = ("5.7.0", "5.7.0")

_applied = False


def apply() -> bool:
    """Apply both patches once; returns whether they are in place."""
    global _applied
    if _applied:
        return True
    if (celery.__version__, kombu.__version__) != PATCHED_VERSIONS:
        log.warning(
            "broker patches written for celery/kombu %s, found %s/%s: not applied",
            "/".join(PATCHED_VERSIONS),
            celery.__version__,
            kombu.__version__,
        )
        return False
    collect: Any = kombu_connection.Connection.collect
    connparams: Any = kombu_redis.Channel._connparams

    def collect_detaching_channel(self: Any, socket_timeout: float | None = None) -> Any:
        try:
            return collect(self, socket_timeout)
        finally:
            self._default_channel = None  # it belongs to the transport just detached

    def connparams_of_live_transport(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("channel of a closed broker connection used after close")
        return connparams(self, asynchronous=asynchronous)

    setattr(kombu_connection.Connection, "collect", collect_detaching_channel)  # noqa: B010
    setattr(kombu_redis.Channel, "_connparams", connparams_of_live_transport)  # noqa: B010
    _applied = True
    return True
