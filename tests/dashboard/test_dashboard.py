"""The dashboard end to end, a few accounts at a time: a real API process, headless
Chromium driven by Selenium (`tests/support/dashboard.py`). The fleet-sized tests are in
test_fleet.py.

Needs Debian's `chromium` and `chromium-driver` (same source package, so their versions
always match) and the `selenium` Python package; skips with the install command when any
is missing.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis

from taskdispatch.domain import lifecycle
from taskdispatch.domain.models import Task
from taskdispatch.store.history import RunRecord, queue_run_record
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import LimitBook, admit
from taskdispatch.store.transaction import Change, Read, transact
from tests.support.dashboard import require_browser

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402

from tests.support.dashboard import (  # noqa: E402
    ADMIN_TOKEN,
    PREFIX,
    Api,
    click,
    live,
    live_machinery,
    record_requests,
    requests_made,
    table,
    wait_for,
)


def record_ok_round(store: redis.Redis, task_id: str) -> None:
    """A finished round in the task's history, written the way a worker writes it."""
    keys = Keys(PREFIX)
    task = Task.from_hash(store.hgetall(keys.task(task_id)), task_id=task_id)
    now_ms = time.time_ns() // 1_000_000
    record = RunRecord(
        outcome="ok",
        scheduled_ms=now_ms - 61_000,
        round_num=1,
        started_ms=now_ms - 60_000,
        finished_ms=now_ms - 48_000,
        worker="celery@test",
    )
    with store.pipeline(transaction=True) as pipe:
        queue_run_record(pipe, keys, task, record, keep=50)
        # The fields the round updates that no index depends on.
        pipe.hset(keys.task(task_id), mapping={"round_num": "1", "last_ms": str(now_ms - 60_000)})
        pipe.execute()


def start_round(store: redis.Redis, task_id: str) -> str:
    """Mark the task's round as started, the way a worker's start transaction does."""
    run_id = uuid.uuid4().hex

    def plan(read: Read) -> Change:
        assert read.task is not None
        now_ms = time.time_ns() // 1_000_000
        return Change(lifecycle.started(read.task, run_id=run_id, worker="w1@h", now_ms=now_ms))

    transact(store, Keys(PREFIX), task_id, plan)
    return run_id


def test_dashboard_stop_round_asks_then_and_note_and_shows_the_round_stopping(
    api: Api, browser: Any, store: redis.Redis
) -> None:
    """A running row offers "停止本轮"; confirming with "pause" and a note asks the API to
    cancel, and the row then says the round is stopping."""
    task = api.create("account_1")
    run_id = start_round(store, task["task_id"])
    browser.get(f"{api.url}/")
    wait_for(lambda: "cancel" in table(browser).get("account_1", {}).get("buttons", []), "stop")
    click(browser, 'tr[data-account="account_1"] button[data-action="cancel"]')
    wait_for(lambda: browser.find_element(By.ID, "cancel-dialog").is_displayed(), "the dialog")
    browser.find_element(By.CSS_SELECTOR, '#cancel-then option[value="pause"]').click()
    browser.find_element(By.ID, "cancel-note").send_keys("验证码")
    click(browser, "#cancel-confirm")
    wait_for(lambda: table(browser)["account_1"]["stopping"] == "本轮正在停止…", "stopping")
    stored = Task.from_hash(
        store.hgetall(Keys(PREFIX).task(task["task_id"])), task_id=task["task_id"]
    )
    assert (stored.cancel_of, stored.status, stored.pause_note) == (run_id, "paused", "验证码")
    assert "cancel" not in table(browser)["account_1"]["buttons"]


def test_dashboard_lists_accounts_and_pause_button_pauses(
    api: Api, browser: Any, store: redis.Redis
) -> None:
    """Three accounts show in the table; clicking pause turns one to paused, in Redis too."""
    live_machinery(store)
    first = api.create("account_1")
    api.create("account_2")
    # A window that is closed now, so the picture shows a waiting reason and the shading.
    hour = datetime.now(ZoneInfo("Asia/Shanghai")).hour  # the tasks' (default) zone
    api.create("account_3", valid_time_range=[(hour + 3) % 24, (hour + 9) % 24], interval=5400)
    record_ok_round(store, first["task_id"])

    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1", "account_2", "account_3"}, "3 rows")
    assert table(browser)["account_2"]["status"] == "pending"
    click(browser, 'tr[data-account="account_2"] button[data-action="pause"]')

    wait_for(lambda: table(browser)["account_2"]["status"] == "paused", "account_2 paused")
    row = table(browser)["account_2"]
    assert (row["status_text"], row["reason"]) == ("已暂停", "paused")
    tasks = api.http.get("/api/v1/tasks/", params={"status": "paused"}).json()["tasks"]
    assert [t["account_id"] for t in tasks] == ["account_2"]
    wait_for(lambda: live(browser), "the event stream")


def test_dashboard_new_task_appears_through_the_event_stream(
    api: Api, browser: Any, store: redis.Redis
) -> None:
    """A task created elsewhere shows up without a reload: the page follows /api/v1/events."""
    api.create("account_1")
    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the first row")
    wait_for(lambda: live(browser), "the event stream")

    api.create("account_2")
    # Well inside the 60 s fallback poll: only the event can explain the new row in time.
    wait_for(lambda: "account_2" in table(browser), "the row of the new task", timeout_s=10)


def test_dashboard_with_token_asks_once_then_loads(secured_api: Api, browser: Any) -> None:
    """With an API token the page asks for it, then loads data and the live stream with it."""
    secured_api.create("account_1")
    browser.get(f"{secured_api.url}/")
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), "the token form")
    assert not table(browser)

    browser.find_element(By.ID, "token-input").send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the row after login")
    wait_for(lambda: live(browser), "the event stream")
    browser.refresh()  # same tab: sessionStorage keeps the token, no second prompt
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the row after reload")
    assert not browser.find_element(By.ID, "login").is_displayed()


def test_dashboard_shows_a_loading_state_until_the_data_arrives(api: Api, browser: Any) -> None:
    """The page says it is loading (not an empty page) until the first data is shown."""
    page = api.http.get("/").text
    assert 'id="loading"' in page and "加载中" in page
    api.create("account_1")
    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the first row")
    assert not browser.find_element(By.ID, "loading").is_displayed()


def test_dashboard_opens_the_event_stream_before_it_loads_the_tasks(api: Api, browser: Any) -> None:
    """The stream is opened before the task list is asked for, so a change made while the
    first page loads arrives as an event instead of being missed."""
    record_requests(browser)
    api.create("account_1")
    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the first row")
    calls = [request["url"] for request in requests_made(browser)]
    first_list = next(i for i, url in enumerate(calls) if "/tasks/?" in url)
    first_stream = next(i for i, url in enumerate(calls) if url.endswith("/events"))
    assert first_stream < first_list, calls


def test_dashboard_dense_task_is_drawn_over_the_whole_day(api: Api, browser: Any) -> None:
    """A task every 5 s (17,280 runs a day) is one band across its window, not 100 marks."""
    api.create("account_1", interval=5)
    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the first row")
    bands = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#timeline .tl-dense"), "the band"
    )
    width = browser.execute_script(
        "return parseFloat(arguments[0].style.width) + parseFloat(arguments[0].style.left);",
        bands[0],
    )
    assert width > 99.0  # to the right edge: the whole 24 h
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline .tl-run") == []
    assert "每 5 秒" in bands[0].get_attribute("title")


def test_dashboard_timeline_draws_every_window_of_the_day_and_the_jittered_starts(
    api: Api, browser: Any
) -> None:
    """Two windows a day, weekdays and jitter: the row shades exactly the server's windows of
    the next 24 h and marks each real start (slot plus jitter)."""
    # Windows away from the current time of day, so that no start lies near the 24 h edge
    # (where the page and this test, a second apart, could disagree).
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    windows = [
        f"{now + timedelta(hours=a):%H:%M}-{now + timedelta(hours=b):%H:%M}"
        for a, b in ((1, 4), (6, 10))
    ]
    info = api.create(
        "account_1",
        interval=3600,
        valid_time_range=None,
        windows=windows,
        weekdays=[1, 2, 3, 4, 5, 6, 7],
        jitter_s=600,
    )
    upcoming = api.http.get(
        f"/api/v1/tasks/{info['task_id']}/upcoming", params={"count": 30}
    ).json()
    browser.get(f"{api.url}/")
    wait_for(lambda: set(table(browser)) == {"account_1"}, "the first row")
    row = '#timeline .tl-row[data-status="pending"]'
    shaded = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, f"{row} .tl-window"), "the windows"
    )
    assert len(shaded) == len(upcoming["windows_24h"])
    day_from_now = datetime.now().timestamp() + 86_400
    starts = [
        s for s in upcoming["upcoming"] if datetime.fromisoformat(s).timestamp() < day_from_now
    ]
    marks = browser.find_elements(By.CSS_SELECTOR, f"{row} .tl-run")
    assert len(marks) == len(starts)
    assert upcoming["upcoming"] != upcoming["slots"], "the starts carry their jitter"


def test_dashboard_shows_limits_and_a_round_waiting_for_one(
    api: Api, browser: Any, store: redis.Redis
) -> None:
    """A full limit is listed with its use and waiters; the waiting account says why."""
    live_machinery(store)
    keys = Keys(PREFIX)
    response = api.http.put(
        "/api/v1/limits/mac-01", json={"match": {"tag": "device:mac-01"}, "max_concurrent": 1}
    )
    assert response.status_code == 200, response.text
    ids = [api.create(f"account_{i}", tags=["device:mac-01"])["task_id"] for i in (1, 2)]
    book = LimitBook(store, keys)
    now_ms = time.time_ns() // 1_000_000
    verdicts = []
    for task_id in ids:
        task = Task.from_hash(store.hgetall(keys.task(task_id)), task_id=task_id)
        verdicts.append(
            admit(
                store,
                keys,
                book,
                task,
                lease_token=f"token-{task_id}",
                lease_ttl_ms=600_000,
                start_token=f"start-{task_id}",
                now_ms=now_ms,
                park_until_ms=now_ms + 600_000,
            ).code
        )
    assert verdicts == [None, "limit_full"]

    browser.get(f"{api.url}/")
    wait_for(lambda: table(browser).get("account_2", {}).get("reason") == "limit_full", "reason")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-account="account_2"] .reason').text
    assert row == "等待限流 mac-01（1/1 已占用）"
    limit_row = browser.find_element(By.CSS_SELECTOR, '#limits tr[data-limit="mac-01"]').text
    assert "标签 device:mac-01" in limit_row and "1/1" in limit_row
