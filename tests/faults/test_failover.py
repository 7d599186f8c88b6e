"""The Redis master SIGKILLed under a running system; Sentinel promotes its replica, twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import ApiProcess
from tests.support.probes import (
    duplicate_slots,
    now_ms,
    overlaps,
    probe_file_records,
    unfinished,
    wait_until,
)
from tests.support.sentinel import DataNode, SentinelSet, wait_synced
from tests.support.stack import Stack, e2e_env

pytestmark = pytest.mark.e2e

ACCOUNTS = 20
ROUND_S = 0.5
# Outlasts a failover (down-after 1 s + about 2 s < 0.65 x the TTL, docs/scaling.md): a
# round in progress keeps its lease through it.
LEASE_TTL_S = "10"
RERUN_WITHIN_MS = 30_000
DEFINITION = (
    "account_id",
    "account_name",
    "task_type",
    "sys_type",
    "interval",
    "valid_time_range",
    "timezone",
    "created_at",
    "kwargs",
)


@pytest.fixture
def env(sentinel_set: SentinelSet, tmp_path: Path) -> dict[str, str]:
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    overrides = {
        "TASKDISPATCH_LEASE_TTL_S": LEASE_TTL_S,
        "TASKDISPATCH_REDIS_MIN_REPLICAS": "1",
        "E2E_PROBE_DIR": str(probe_dir),
    }
    return e2e_env(sentinel_set.url, overrides)


@pytest.fixture
def ha_stack(
    request: pytest.FixtureRequest, sentinel_set: SentinelSet, env: dict[str, str], tmp_path: Path
) -> Iterator[Stack]:
    """2 workers and 2 beats whose store and broker are the Sentinel URL."""
    log_dir = tmp_path / "stack"
    log_dir.mkdir()
    s = Stack(sentinel_set.url, env, log_dir)
    try:
        s.start(workers=2, beats=2, concurrency=4, queues="celery")
        yield s
    finally:
        failed = getattr(getattr(request.node, "rep_call", None), "failed", True)
        try:
            s.kill()
        finally:
            if failed:
                print(f"\n===== logs of {log_dir} =====\n{s.tails()}")


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    with ApiProcess(env, tmp_path / "api.log") as process:
        yield process


class Writer:
    """Creates tasks through the API, one after another, until stopped; remembers which
    creates were acknowledged (200) and what every other answer was."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=15)
        self.acknowledged: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._n += 1
            body = {
                "sys_type": "mac_intel",
                "xhs_account_id": f"written-{self._n:05d}",
                "xhs_account_name": f"written {self._n}",
                "task_type": "probe_file",
                # Never due during the test: these only prove that acknowledged writes stay.
                "interval": 3600,
                "valid_time_range": [0, 24],
            }
            try:
                response = self.client.post("/api/v1/tasks/", json=body)
            except httpx.HTTPError as exc:
                self.refused.append((0, repr(exc)))
                continue
            if response.status_code == 200:
                self.acknowledged.append(response.json()["task_id"])
            else:
                self.refused.append((response.status_code, response.json()["error"]))
                # A 503 comes at once while no replica confirms: do not spin.
                self._stop.wait(0.05)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


def _definitions(client: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for task_id in ids:
        response = client.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        out[task_id] = {k: response.json().get(k) for k in DEFINITION}
    return out


def _in_flight(probe_dir: Path) -> list[dict[str, Any]]:
    """Probe rounds that started within the last 0.4 s and have not ended."""
    starts, ends = probe_file_records(probe_dir)
    return [x for x in unfinished(starts, ends) if now_ms() - x["start_ms"] < 400]


def _failover(
    servers: SentinelSet, probe_dir: Path, ids: list[str], *, with_sentinel: bool
) -> tuple[DataNode, DataNode, dict[str, int]]:
    """SIGKILL the master in the middle of rounds (`with_sentinel`: and the Sentinel every
    client asks first, as when the master's host is lost with its Sentinel); wait for the
    promotion and for a round of every task after it. Returns the killed node, the promoted
    one and the timings (ms)."""
    wait_until(
        lambda: _in_flight(probe_dir), timeout_s=10, interval_s=0.02, message="rounds running"
    )
    killed_ms = now_ms()
    old = servers.kill_master()
    if with_sentinel:
        servers.sentinels[0].kill()
    new = servers.wait_promoted(old)
    promoted_ms = now_ms()

    def first_rounds() -> dict[str, int] | None:
        after: dict[str, int] = {}
        for x in probe_file_records(probe_dir)[0]:
            if x["start_ms"] > promoted_ms and x["task_id"] in ids:
                after[x["task_id"]] = min(after.get(x["task_id"], 2**62), x["start_ms"])
        return after if len(after) == len(ids) else None

    again = wait_until(
        first_rounds,
        timeout_s=RERUN_WITHIN_MS / 1000,
        interval_s=0.2,
        message="a round of every task after the promotion",
    )
    return (
        old,
        new,
        {
            "promotion": promoted_ms - killed_ms,
            "slowest_rerun": max(again.values()) - promoted_ms,
            "fastest_rerun": min(again.values()) - promoted_ms,
        },
    )


def test_failover_master_killed_twice_loses_no_acknowledged_task_nor_duplicates_or_overlaps(
    sentinel_set, ha_stack, api, env
):
    """Two failovers under load: no acknowledged task lost, no duplicate, no overlap."""
    s, servers = ha_stack, sentinel_set
    probe_dir = Path(env["E2E_PROBE_DIR"])
    client = httpx.Client(base_url=api.base_url, timeout=15)
    ids = []
    for i in range(ACCOUNTS):
        body = {
            "sys_type": "mac_intel",
            "xhs_account_id": f"acct-{i:02d}",
            "xhs_account_name": f"name-{i}",
            "task_type": "probe_file",
            "interval": 1 + i % 2,
            "valid_time_range": [0, 24],
            "kwargs": {"sleep_s": ROUND_S},
        }
        response = client.post("/api/v1/tasks/", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    wait_until(
        lambda: {x["task_id"] for x in probe_file_records(probe_dir)[1]} >= set(ids),
        timeout_s=30,
        interval_s=0.2,
        message="a round of every task",
    )
    pids = [p.pid for p in s.procs()] + [api.popen.pid]
    before = _definitions(client, ids)

    timings = []
    with Writer(api.base_url) as writer:
        first_master, second_master, first = _failover(servers, probe_dir, ids, with_sentinel=True)
        timings.append(first)
        # Fail back: the lost host comes back (its node as a replica of the new master, its
        # Sentinel on the configuration it had), then the new master is killed and Sentinel
        # promotes the old one again.
        servers.rejoin(first_master)
        servers.sentinels[0].restart()
        servers.wait_settled(second_master.port, timeout_s=30)
        _, promoted, second = _failover(servers, probe_dir, ids, with_sentinel=False)
        timings.append(second)
        assert promoted is first_master
        # The API's writes need a replica again (MIN_REPLICAS=1).
        second_master.start(replica_of=first_master.port)
        wait_synced(second_master)
        acknowledged = len(writer.acknowledged)
        wait_until(
            lambda: len(writer.acknowledged) > acknowledged,
            timeout_s=15,
            message="an acknowledged write once a replica is back",
        )

    assert [p.pid for p in s.procs()] + [api.popen.pid] == pids, "a process was restarted"
    assert all(p.alive() for p in s.procs()) and api.alive()

    stopped = client.post("/api/v1/dispatcher/stop")
    assert stopped.status_code == 200, stopped.text
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=30, message="quiescence")
    starts, ends = probe_file_records(probe_dir)
    bad = overlaps(starts, ends, open_end_ms={})
    assert bad == [], json.dumps(bad, indent=1)
    assert duplicate_slots(starts) == []
    missing = [
        t for t in writer.acknowledged if client.get(f"/api/v1/tasks/{t}").status_code != 200
    ]
    assert missing == [], f"{len(missing)} acknowledged task(s) lost: {missing}"
    assert _definitions(client, ids) == before
    check = client.get("/api/v1/dispatcher/check").json()
    assert check == {"consistent": True, "problems": []}, check
    client.close()
    # Refused writes are 503s in the standard body: Redis unreachable, or not replicated.
    assert {code for code, _ in writer.refused} <= {503}, writer.refused
    refusals = sorted({(code, error[:60]) for code, error in writer.refused})
    print(
        f"\nfailovers: {timings}; writes acknowledged {len(writer.acknowledged)}, "
        f"refused {len(writer.refused)}: {refusals}"
    )
