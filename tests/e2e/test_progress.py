"""Live progress with real processes: a worker whose handler reports ten times a second, the
API answering reads, the event stream in Redis.

While the round runs, the task read through the API shows the handler's progress; the
progress is written at most once a second (counted by its `round.progress` events, which
the same script writes with every write); once the round ends, nothing of it is left.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store.keys import Keys
from taskdispatch.store.progress import EVENT
from tests.support.api import ApiProcess
from tests.support.probes import add_probe_task, wait_until
from tests.support.stack import HANDLERS, e2e_env, settings_of

pytestmark = pytest.mark.e2e

ENV = {"TASKDISPATCH_HANDLERS": f"{HANDLERS},progress=tests.support.handlers:progress_round"}
DURATION_S = 4
KEYS = Keys("td:")


def progress_events(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """The `round.progress` events of the task in the stream the API serves."""
    entries = ((f["type"], json.loads(f["data"])) for _, f in client.xrange(KEYS.events()))
    return [data for kind, data in entries if kind == EVENT and data["task_id"] == task_id]


async def test_progress_of_a_running_round_shows_on_the_task_and_goes_with_its_end(
    stack, redis_url: str, tmp_path: Path
) -> None:
    """Shown while running, written at most once a second, gone after the round."""
    s = stack(workers=1, beats=1, env=ENV)
    env = e2e_env(redis_url, ENV)
    with (
        redis.Redis.from_url(redis_url, decode_responses=True) as raw,
        ApiProcess(env, tmp_path / "api.log") as api,
        httpx.Client(base_url=api.base_url) as http,
    ):
        # The API answers before the round starts: a slow start must not hide the round.
        async with TaskDispatcher(settings_of(env)) as dispatcher:
            task_id = await add_probe_task(
                dispatcher,
                "acct-progress",
                task_type="progress",
                interval=600,
                kwargs={"duration_s": DURATION_S},
            )
            await dispatcher.run_now(task_id)

        def current_round() -> Any:
            response = http.get(f"/api/v1/tasks/{task_id}")
            assert response.status_code == 200, response.text
            return response.json()["current_round"]

        seen: list[dict[str, Any]] = []

        def progress_seen() -> bool:
            shown = current_round()
            if shown is not None and shown["progress"] is not None:
                seen.append(shown)
            return len({x["progress"] for x in seen}) >= 2

        wait_until(progress_seen, timeout_s=20, message="two progress values through the API")
        steps = DURATION_S * 10
        for shown in seen:
            assert shown["worker"] is not None and shown["started_at"] is not None
            assert shown["progress_at"] is not None
            n = int(shown["progress"].removeprefix("step ").split(" of ")[0])
            assert shown["progress"] == f"step {n} of {steps}"
            assert shown["fraction"] == pytest.approx(n / steps)

        [record] = wait_until(
            lambda: s.view.runs(task_id, "ok"), timeout_s=DURATION_S + 15, message="the round ok"
        )
        assert current_round() is None
        assert raw.exists(KEYS.progress(task_id)) == 0
        duration_s = (record["finished_ms"] - record["started_ms"]) / 1000
        written = progress_events(raw, task_id)

    print(f"\n{len(written)} progress writes in a {duration_s:.1f} s round")
    # One write a second at most, over the handler's 40 reports.
    assert 2 <= len(written) <= math.ceil(duration_s) + 1
