"""Specification of the broker patches: a Redis restart cannot crash a worker's teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import celery
import kombu

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.engine._broker_patches import PATCHED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]

# What celery's Consumer.on_connection_error_after_connected does when Redis dies while a
# BRPOP is pending and a message is reserved but not acked: collect(), then close(); then
# the late ack of that message. Prints one line per step.
_SCENARIO = """
import logging, sys
if sys.argv[2] == "patched":
    from taskdispatch.engine import _broker_patches
    assert _broker_patches.apply()
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.common import ignore_errors

url = sys.argv[1]
conn = Connection(url)
conn.connect()
queue = Queue("celery", Exchange("celery"), "celery")
got = []
channel = conn.default_channel
channel.basic_qos(0, 2, False)
Consumer(channel, [queue], callbacks=[lambda body, msg: got.append(msg)]).consume()
with conn.Producer() as producer:
    producer.publish({"x": 1}, exchange=queue.exchange, routing_key="celery", declare=[queue])
pidbox = conn.channel()  # like a worker's remote control: an auto-delete fanout queue
fanout = Queue("w1.pidbox", Exchange("w1.pidbox", "fanout"), auto_delete=True)
Consumer(pidbox, [fanout], callbacks=[lambda b, m: None], no_ack=True).consume()
while not got:
    conn.drain_events(timeout=5)
channel._brpop_start()  # a BRPOP is pending, as in the worker's event loop
redis.Redis.from_url(url).shutdown(nosave=True)
try:
    conn.collect(socket_timeout=5)
except Exception as exc:
    pass
try:
    ignore_errors(conn, conn.close)
    print("close: ok")
except Exception as exc:
    print("close:", type(exc).__name__)
try:
    got[0].ack_log_error(logging.getLogger("late-ack"), conn.connection_errors)
    print("late ack: ok")
except Exception as exc:
    print("late ack:", type(exc).__name__)
"""


def _scenario(mode: str) -> list[str]:
    with EmbeddedRedis() as server:
        out = subprocess.run(
            [sys.executable, "-c", _SCENARIO, server.url, mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_broker_patches_are_written_for_the_pinned_versions() -> None:
    """Upgrading celery or kombu makes this fail: re-check the patches (then drop them)."""
    assert (celery.__version__, kombu.__version__) == PATCHED_VERSIONS


def test_unpatched_teardown_after_redis_died_crashes_with_attribute_error() -> None:
    """The pinned celery/kombu, unpatched: the close after collect() raises AttributeError,
    which ends a worker ("Unrecoverable error", exit 1)."""
    assert _scenario("unpatched")[0] == "close: AttributeError"


def test_patched_teardown_after_redis_died_raises_nothing() -> None:
    """Patched: the close is a no-op and a late ack is only logged."""
    assert _scenario("patched") == ["close: ok", "late ack: ok"]
