"""TASKDISPATCH_REDIS_MIN_REPLICAS: an API write is acknowledged only once replicas have it.

A real master and replica (redis-server processes); the API in-process on them.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from taskdispatch.domain.messages import text
from taskdispatch.settings import Settings
from tests.support.api import create_body, serve
from tests.support.probes import wait_until
from tests.support.sentinel import DataNode, wait_synced

WAIT_TIMEOUT_MS = 300


@pytest.fixture
def master(tmp_path: Path) -> Iterator[DataNode]:
    node = DataNode(tmp_path / "master")
    node.start()
    try:
        yield node
    finally:
        node.kill()


@pytest.fixture
def replica(tmp_path: Path, master: DataNode) -> Iterator[DataNode]:
    node = DataNode(tmp_path / "replica")
    node.start(replica_of=master.port)
    try:
        wait_synced(node)
        yield node
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)  # a frozen replica must die too
        node.kill()


def _settings(master: DataNode, replicas: int) -> Settings:
    return Settings(
        redis_url=master.url,
        key_prefix="tdrepl:",
        redis_min_replicas=replicas,
        redis_wait_timeout_ms=WAIT_TIMEOUT_MS,
    )


@pytest.fixture
async def api(master: DataNode, replica: DataNode) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(_settings(master, 1))) as client:
        yield client


def _stored(node: DataNode, task_id: str) -> dict[str, str]:
    with contextlib.closing(node.client()) as client:
        return dict(client.hgetall(f"tdrepl:task:{task_id}"))


def _connected_replicas(node: DataNode) -> int:
    return int(node.replication().get("connected_slaves", 0))


async def test_min_replicas_replica_connected_write_succeeds_and_replica_has_it(
    api: httpx.AsyncClient, replica: DataNode
) -> None:
    """Create and PATCH answer 200 and the replica has each write when it is acknowledged."""
    created = await api.post("/api/v1/tasks/", json=create_body("acct-repl"))
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    assert _stored(replica, task_id)["account_id"] == "acct-repl"
    patched = await api.patch(f"/api/v1/tasks/{task_id}", json={"interval": 7200})
    assert patched.status_code == 200, patched.text
    assert _stored(replica, task_id)["interval_s"] == "7200"


@pytest.mark.parametrize("fault", ["killed", "frozen"])
async def test_min_replicas_replica_stopped_write_answers_503_with_the_documented_message(
    api: httpx.AsyncClient, master: DataNode, replica: DataNode, fault: str
) -> None:
    """Writes answer 503 write_not_replicated while the replica is away, 200 once back."""
    created = await api.post("/api/v1/tasks/", json=create_body("acct-before"))
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    if fault == "killed":
        replica.kill()
        wait_until(lambda: _connected_replicas(master) == 0, 10, message="the replica gone")
    else:
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)

    refused = text("write_not_replicated", confirmed=0, required=1, timeout_ms=WAIT_TIMEOUT_MS)
    began = time.monotonic()
    response = await api.post("/api/v1/tasks/", json=create_body("acct-during"))
    elapsed_s = time.monotonic() - began
    assert response.status_code == 503, response.text
    assert response.json() == {"success": False, "error": refused}
    assert WAIT_TIMEOUT_MS / 1000 <= elapsed_s < WAIT_TIMEOUT_MS / 1000 + 2
    patched = await api.patch(f"/api/v1/tasks/{task_id}", json={"interval": 7200})
    assert patched.status_code == 503 and patched.json()["error"] == refused
    # Applied on the master: the client is told to read before retrying, and the read shows it.
    listed = await api.get("/api/v1/tasks/", params={"limit": 10})
    assert listed.status_code == 200
    assert {t["account_id"] for t in listed.json()["tasks"]} == {"acct-before", "acct-during"}
    assert (await api.get(f"/api/v1/tasks/{task_id}")).json()["interval"] == 7200

    if fault == "killed":
        replica.start(replica_of=master.port)
    else:
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGCONT)
    wait_synced(replica)
    after = await api.post("/api/v1/tasks/", json=create_body("acct-after"))
    assert after.status_code == 200, after.text
    assert _stored(replica, after.json()["task_id"])


async def test_min_replicas_more_than_connected_names_both_counts(
    master: DataNode, replica: DataNode
) -> None:
    """MIN_REPLICAS=2 with one replica: 503 saying one confirmed, two required."""
    async with serve(create_app(_settings(master, 2))) as api:
        response = await api.post("/api/v1/tasks/", json=create_body("acct-two"))
    assert response.status_code == 503
    assert response.json()["error"] == text(
        "write_not_replicated", confirmed=1, required=2, timeout_ms=WAIT_TIMEOUT_MS
    )


async def test_min_replicas_zero_write_succeeds_without_any_replica(master: DataNode) -> None:
    """The default (0) never waits: a master without replicas takes writes as before."""
    async with serve(create_app(_settings(master, 0))) as api:
        response = await api.post("/api/v1/tasks/", json=create_body("acct-alone"))
    assert response.status_code == 200, response.text
    assert _connected_replicas(master) == 0
