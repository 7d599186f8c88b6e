"""Every Redis client of taskdispatch over a Sentinel URL, against real Sentinels: each one
finds the master with passwords on the master and on the Sentinels, and a Sentinel that is
down costs one attempt, not redis-py's default ten retries (about 4 s) per lookup."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from taskdispatch.settings import Settings
from taskdispatch.store.connections import (
    api_client,
    broker_client,
    broker_transport_options,
    broker_url,
    lease_client,
    store_client,
    stream_client,
)
from tests.support.sentinel import DeadSentinel, SentinelSet

MASTER_PASSWORD = "m4ster-pw"
SENTINEL_PASSWORD = "s3ntinel-pw"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    directory: Path = tmp_path_factory.mktemp("sentinel-clients")
    with SentinelSet(
        directory, password=MASTER_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    ) as started:
        yield started


@pytest.fixture
def dead() -> Iterator[DeadSentinel]:
    with DeadSentinel() as sentinel:
        yield sentinel


def _settings(servers: SentinelSet, dead: DeadSentinel) -> Settings:
    """The dead Sentinel first in the list, where every lookup starts."""
    return Settings(
        redis_url=f"{dead.url};{servers.url}", redis_sentinel_password=SENTINEL_PASSWORD
    )


async def test_clients_sentinel_url_reach_the_master_asking_a_dead_sentinel_once(
    servers: SentinelSet, dead: DeadSentinel
) -> None:
    """Every client reaches the master, asking a dead Sentinel once, not ten times."""
    settings = _settings(servers, dead)
    master_port = servers.master().port
    ports = []
    for client in (
        store_client(settings),
        lease_client(settings),
        broker_client(settings, timeout_s=3),
    ):
        assert client is not None
        with contextlib.closing(client):
            ports.append(int(client.info("server")["tcp_port"]))
    for async_client in (
        api_client(settings),
        stream_client(settings, client_name="test-stream", timeout_s=3),
    ):
        try:
            ports.append(int((await async_client.info("server"))["tcp_port"]))
        finally:
            await async_client.aclose()
    assert ports == [master_port] * 5
    assert dead.connections == 5


def test_broker_sentinel_url_publishes_and_consumes_through_kombu(
    servers: SentinelSet, dead: DeadSentinel
) -> None:
    """kombu's sentinel transport, configured as the app does, carries a message."""
    settings = _settings(servers, dead)
    with Connection(
        broker_url(settings), transport_options=broker_transport_options(settings)
    ) as connection:
        queue = connection.SimpleQueue("td-test-sentinel")
        try:
            queue.put({"round": 1})
            message = queue.get(timeout=10)
            message.ack()
            assert message.payload == {"round": 1}
        finally:
            queue.close()
    with contextlib.closing(servers.master().client()) as client:
        assert client.llen("td-test-sentinel") == 0
    assert dead.connections >= 1
