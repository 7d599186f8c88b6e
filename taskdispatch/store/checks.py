"""Startup checks every process runs before it touches Redis.

A scheduler on a Redis that evicts keys loses tasks silently, and one without persistence
loses them on restart; both are cheap to detect at startup and expensive to discover later.
`taskdispatch check` runs the same checks from a shell, a CI job or a healthcheck.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.exceptions import StoreUnavailableError
from taskdispatch.settings import SentinelUrl, Settings, get_settings
from taskdispatch.store.connections import masked, sentinel_clients, store_client
from taskdispatch.store.keys import Keys

__all__ = [
    "PLACEHOLDER_MARK",
    "EvictionPolicyError",
    "beat_alive",
    "main",
    "placeholder_secrets",
    "run_startup_checks",
    "worker_consuming",
]

log = logging.getLogger(__name__)

_TIMEOUT_S = 3.0


class EvictionPolicyError(RuntimeError):
    """Redis may evict keys (maxmemory-policy other than noeviction) and eviction is not allowed."""

    def __init__(self, url: str, policy: str, *, process: str) -> None:
        super().__init__(
            f"{process}: Redis at {url} has maxmemory-policy '{policy}'; taskdispatch needs "
            "'noeviction' because an evicted key silently drops a task or its schedule. Run "
            "`CONFIG SET maxmemory-policy noeviction` (and keep it in redis.conf), or set "
            "TASKDISPATCH_ALLOW_EVICTION=true to accept the risk."
        )
        self.url = url
        self.policy = policy


def _config(client: Redis, *names: str) -> dict[str, str] | None:
    """CONFIG GET, or None where the server refuses it (managed Redis often disables CONFIG)."""
    values: dict[str, str] = {}
    try:
        for name in names:
            reply = client.config_get(name)
            values.update({str(key): str(value) for key, value in reply.items()})
    except ResponseError:
        return None
    return values


def run_startup_checks(settings: Settings, *, process: str) -> None:
    """Refuse to start on an unreachable or evicting Redis; warn when nothing is persisted.

    With a Sentinel URL, the Sentinels are asked first (each one that does not answer is a
    warning; none answering, or none knowing the master, refuses), and the master they name
    is checked. Raises StoreUnavailableError (unreachable) or EvictionPolicyError; messages
    are one line and never show a password.
    """
    url = masked(settings.redis_url)
    if settings.redis_sentinel is not None:
        _check_sentinels(settings, settings.redis_sentinel, process=process)
    client = store_client(settings, timeout_s=_TIMEOUT_S)
    try:
        try:
            client.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(url) from exc
        config = _config(client, "maxmemory-policy", "appendonly", "save")
        replicas = int(client.info("replication").get("connected_slaves", 0))
    except RedisError as exc:
        raise StoreUnavailableError(url) from exc
    finally:
        client.close()
    if replicas < settings.redis_min_replicas:
        log.warning(
            "%s: Redis at %s has %d connected replica(s) and TASKDISPATCH_REDIS_MIN_REPLICAS "
            "is %d: every API write answers 503 until enough replicas are connected",
            process,
            url,
            replicas,
            settings.redis_min_replicas,
        )
    if config is None:
        log.warning(
            "%s: Redis at %s refuses CONFIG GET, so its maxmemory-policy (must be noeviction) "
            "and persistence could not be verified",
            process,
            url,
        )
        return
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        if not settings.allow_eviction:
            raise EvictionPolicyError(url, policy, process=process)
        log.warning(
            "%s: Redis at %s has maxmemory-policy '%s' (TASKDISPATCH_ALLOW_EVICTION=true): "
            "tasks may be evicted silently under memory pressure",
            process,
            url,
            policy,
        )
    if config.get("appendonly", "no") == "no" and not config.get("save", "").strip():
        log.warning(
            "%s: Redis at %s persists nothing (appendonly no, no save points): every task is "
            "lost when it restarts; enable appendonly yes",
            process,
            url,
        )


def _check_sentinels(settings: Settings, parsed: SentinelUrl, *, process: str) -> None:
    """Every Sentinel answers and names the same master; at least one must name one."""
    url, name = masked(settings.redis_url), settings.redis_sentinel_master
    masters: dict[str, tuple[str, int] | None] = {}
    for (host, port), client in zip(
        parsed.sentinels,
        sentinel_clients(settings, parsed, timeout_s=_TIMEOUT_S),
        strict=True,
    ):
        where = f"{host}:{port}"
        try:
            address = client.sentinel_get_master_addr_by_name(name)
        except (RedisError, OSError) as exc:
            log.warning(
                "%s: Sentinel %s of %s does not answer (%s); a failover needs a quorum of "
                "the Sentinels",
                process,
                where,
                url,
                exc,
            )
            continue
        finally:
            client.close()
        # None when this Sentinel monitors no master of that name.
        masters[where] = (str(address[0]), int(address[1])) if isinstance(address, tuple) else None
    if not masters:
        log.error("%s: none of the Sentinels of %s answers", process, url)
        raise StoreUnavailableError(url)
    named = {address for address in masters.values() if address is not None}
    if not named:
        log.error(
            "%s: the Sentinels of %s know no master named '%s' (TASKDISPATCH_REDIS_SENTINEL_"
            "MASTER); they answered: %s",
            process,
            url,
            name,
            ", ".join(sorted(masters)),
        )
        raise StoreUnavailableError(url)
    if len(named) > 1:
        log.warning(
            "%s: the Sentinels of %s disagree on the master '%s' (%s): a failover in "
            "progress, or Sentinels that do not see each other",
            process,
            url,
            name,
            "; ".join(
                f"{s} says {a[0]}:{a[1]}" if a else f"{s} knows none" for s, a in masters.items()
            ),
        )


def beat_alive(settings: Settings, *, host: str, within_s: float) -> bool:
    """True if a beat on `host` sent its heartbeat (one per tick) within `within_s` seconds."""
    # Beat ids are "<hostname>:<pid>:<random>" (see RedisScheduler.beat_id).
    beats = _fresh(settings, Keys(settings.key_prefix).beats(), within_s=within_s)
    return any(beat.startswith(f"{host}:") for beat in beats)


def worker_consuming(settings: Settings, *, host: str, within_s: float) -> bool:
    """True if a worker on `host` proved within `within_s` seconds that it consumes.

    Workers write this heartbeat only while messages (or their own probes) reach them
    (taskdispatch/engine/watchdog.py), so a worker that is alive but deaf fails this check.
    """
    # Node names are "<name>@<hostname>", e.g. worker@3f2a1b (compose: the container id).
    workers = _fresh(settings, Keys(settings.key_prefix).workers(), within_s=within_s)
    return any(worker.endswith(f"@{host}") for worker in workers)


def _fresh(settings: Settings, key: str, *, within_s: float) -> list[str]:
    since_ms = now_ms() - int(within_s * 1000)
    client = store_client(settings, timeout_s=_TIMEOUT_S)
    try:
        return [str(member) for member in client.zrangebyscore(key, since_ms, "+inf")]
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(masked(settings.redis_url)) from exc
    finally:
        client.close()


# What every example secret in .env.example contains: a deployment that kept one is refused.
PLACEHOLDER_MARK = "change-me"


def placeholder_secrets(names: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """One line per secret among `names` that is unset, empty or still the example value."""
    problems = []
    for name in names:
        value = environ.get(name, "").strip()
        if not value:
            problems.append(f"{name} is not set; set it in .env (see .env.example)")
        elif PLACEHOLDER_MARK in value:
            problems.append(
                f"{name} still holds the example value of .env.example ({PLACEHOLDER_MARK!r} "
                "in it); set a secret of your own in .env"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """`taskdispatch check`: exit 0 when the checks pass, 1 with one line otherwise."""
    parser = argparse.ArgumentParser(prog="taskdispatch check", description=__doc__)
    parser.add_argument("--process", default="checks", help="name shown in messages")
    parser.add_argument(
        "--beat-alive",
        type=float,
        metavar="SECONDS",
        help="also require a heartbeat of a beat on this host within SECONDS (healthchecks)",
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="also require the environment variable NAME to hold a real secret, not the "
        "example value of .env.example (repeatable)",
    )
    parser.add_argument(
        "--worker-consuming",
        type=float,
        metavar="SECONDS",
        help="also require that a worker on this host proved it consumes within SECONDS",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    secrets = placeholder_secrets(args.secret, os.environ)
    if secrets:
        for problem in secrets:
            print(f"{args.process}: {problem}", file=sys.stderr)
        return 1
    settings = get_settings()
    try:
        run_startup_checks(settings, process=args.process)
        host = socket.gethostname()
        if args.beat_alive is not None and not beat_alive(
            settings, host=host, within_s=args.beat_alive
        ):
            print(
                f"{args.process}: no beat heartbeat from host {host} in the last "
                f"{args.beat_alive:g} s",
                file=sys.stderr,
            )
            return 1
        if args.worker_consuming is not None and not worker_consuming(
            settings, host=host, within_s=args.worker_consuming
        ):
            print(
                f"{args.process}: no worker on host {host} proved in the last "
                f"{args.worker_consuming:g} s that it consumes (alive but deaf, or down)",
                file=sys.stderr,
            )
            return 1
    except (StoreUnavailableError, EvictionPolicyError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.process}: Redis at {masked(settings.redis_url)} passed the startup checks")
    return 0
