"""Sentinel over TLS: data nodes and Sentinels that listen with TLS only, reached through a
`sentinel://...?ssl_cert_reqs=required&ssl_ca_certs=...` URL by every kind of client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from taskdispatch.domain.exceptions import StoreUnavailableError
from taskdispatch.settings import Settings
from taskdispatch.store.checks import run_startup_checks
from taskdispatch.store.connections import (
    api_client,
    broker_transport_options,
    broker_url,
    store_client,
)
from tests.support.sentinel import SentinelSet, Tls
from tests.support.tls import PASSWORD, make_cert, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="openssl is not installed")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    directory: Path = tmp_path_factory.mktemp("sentinel-tls")
    cert, key = make_cert(directory)
    with SentinelSet(directory, password=PASSWORD, tls=Tls(cert, key)) as started:
        yield started


async def test_sentinel_tls_url_every_client_reaches_the_master(
    servers: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Checks, store, API client and kombu all work through TLS-only Sentinels."""
    settings = Settings(redis_url=servers.url)
    assert "ssl_ca_certs=" in settings.redis_url
    with caplog.at_level(logging.WARNING):
        run_startup_checks(settings, process="worker")
    assert [r.getMessage() for r in caplog.records] == []
    master_port = servers.master().port
    with contextlib.closing(store_client(settings)) as store:
        assert int(store.info("server")["tcp_port"]) == master_port
        store.set("td-tls-probe", "1")
    plain = redis.Redis(port=master_port, password=PASSWORD, socket_timeout=2, retry=None)
    with contextlib.closing(plain), pytest.raises(redis.ConnectionError):
        plain.ping()  # the master speaks TLS only
    client = api_client(settings)
    try:
        assert await client.get("td-tls-probe") == "1"
    finally:
        await client.aclose()
    with Connection(
        broker_url(settings), transport_options=broker_transport_options(settings)
    ) as connection:
        queue = connection.SimpleQueue("td-tls-queue")
        try:
            queue.put({"round": 1})
            message = queue.get(timeout=10)
            message.ack()
            assert message.payload == {"round": 1}
        finally:
            queue.close()
    with contextlib.closing(servers.node_on(master_port).client()) as direct:
        assert direct.get("td-tls-probe") == "1"


def test_sentinel_tls_unverifiable_certificate_refused_without_the_password(
    servers: SentinelSet,
) -> None:
    """Without the CA the checks refuse to start, the password masked."""
    url = servers.url.replace(f"&ssl_ca_certs={servers.tls.cert}", "")  # type: ignore[union-attr]
    assert "ssl_ca_certs" not in url
    with pytest.raises(StoreUnavailableError) as caught:
        run_startup_checks(Settings(redis_url=url), process="api")
    assert PASSWORD not in str(caught.value)
    assert ":***@" in str(caught.value)
