"""The dashboard with a fleet: 5,000 tasks stored at once (`tests/support/fleet.py`), a real
API process and headless Chromium driven by Selenium (`tests/support/dashboard.py`).

Every account `acct-NNNNN` carries the tag `device:mac-<N mod 125>`, so each device tag
selects 40 accounts spread over the whole fleet. Skips, naming the install command, when
Chromium, its driver or Selenium is missing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
import redis

from taskdispatch.store.keys import Keys
from tests.support.dashboard import require_browser
from tests.support.fleet import seed_fleet

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys as Key  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

from tests.support.dashboard import (  # noqa: E402
    ADMIN_TOKEN,
    PREFIX,
    ROOT,
    Api,
    click,
    live,
    live_machinery,
    load_times,
    record_requests,
    requests_made,
    rows,
    save_screenshot,
    settled,
    table,
    wait_for,
)

FLEET = 5000
DEVICES = 125
PAGE = 50  # the page's default page size
ZONE = ZoneInfo("Asia/Shanghai")  # the fleet's time zone
VIEWER_TOKEN = "wall-screen-token-0123"
OPERATOR_TOKEN = "ops-on-call-token-0123"


def device_of(i: int) -> tuple[str, ...]:
    return (f"device:mac-{i % DEVICES:03d}",)


def accounts_of(device: int) -> list[str]:
    return [f"acct-{i:05d}" for i in range(device, FLEET, DEVICES)]


@pytest.fixture
def fleet(redis_url: str) -> list[str]:
    return seed_fleet(
        redis_url, Keys(PREFIX), FLEET, now_ms=time.time_ns() // 1_000_000, tags_of=device_of
    )


def accounts(driver: Any) -> list[str]:
    return [row["account"] for row in rows(driver)]


def shows(driver: Any, expected: list[str]) -> bool:
    """The page has settled on exactly these rows, in this order."""
    return settled(driver) and accounts(driver) == expected


def text(driver: Any, element_id: str) -> str:
    return str(
        driver.execute_script(f"return document.getElementById('{element_id}').textContent;")
    )


def displayed(driver: Any, css: str) -> bool:
    return any(e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, css))


def fill(driver: Any, css: str, value: str) -> None:
    """Replace what the field holds by typing, as an operator would."""
    field = driver.find_element(By.CSS_SELECTOR, css)
    field.send_keys(Key.CONTROL, "a")
    field.send_keys(Key.DELETE)
    if value:
        field.send_keys(value)


def set_value(driver: Any, css: str, value: str) -> None:
    """For date-time pickers, whose typed form depends on the browser's locale."""
    driver.execute_script("document.querySelector(arguments[0]).value = arguments[1];", css, value)


def dialog_open(driver: Any, element_id: str) -> bool:
    return bool(driver.execute_script(f"return document.getElementById('{element_id}').open;"))


def log_in(driver: Any, url: str, token: str) -> None:
    driver.get(f"{url}/")
    wait_for(lambda: driver.find_element(By.ID, "login").is_displayed(), "the token form")
    driver.find_element(By.ID, "token-input").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def test_fleet_page_load_requests_do_not_grow_with_the_stored_count(
    redis_url: str, browser: Any
) -> None:
    """A page load with 1,000 and with 5,000 tasks stored makes the very same requests: one
    list call for one page, and one call for the latest and upcoming runs of its rows only."""
    record_requests(browser)
    first_page = [f"acct-{i:05d}" for i in range(PAGE)]
    made: dict[int, list[str]] = {}
    figures: dict[str, Any] = {}
    for count in (1000, 5000):
        prefix = f"tdfleet{count}:"
        seed_fleet(redis_url, Keys(prefix), count, now_ms=time.time_ns() // 1_000_000)
        server = Api(redis_url, prefix=prefix)
        try:
            browser.get(f"{server.url}/")
            wait_for(lambda: shows(browser, first_page), f"the first page of {count}")
            made[count] = [
                urlsplit(r["url"]).path + "?" + urlsplit(r["url"]).query
                for r in requests_made(browser)
            ]
            first_rows_ms, settled_ms = load_times(browser)
            figures[str(count)] = {
                "requests": len(made[count]),
                "first_rows_ms": round(first_rows_ms),
                "settled_ms": round(settled_ms),
            }
        finally:
            # Away from the page first: its open event stream would hold up the shutdown.
            browser.get("about:blank")
            server.close()

    assert Counter(made[1000]) == Counter(made[5000])
    paths = Counter(url.split("?")[0].rsplit("/", 1)[-1] for url in made[5000])
    # The stream, who am I, the dispatcher's status, one page, and its rows' details.
    assert paths == {"events": 1, "me": 1, "status": 1, "": 1, "days": 1}
    [listing] = [url for url in made[5000] if "/tasks/?" in url]
    assert f"limit={PAGE}" in listing and "offset=0" in listing
    assert detailed_ids(made[5000]) == {f"fleet-{i:05d}" for i in range(PAGE)}
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "dashboard-load.json").write_text(json.dumps(figures, indent=2))
    print(f"dashboard page load: {figures}")


def test_fleet_pages_move_through_5000_tasks_a_page_at_a_time(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """Previous/next, the page size and the URL hash page through the server's order and total."""
    browser.get(f"{api.url}/")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")
    assert text(browser, "page-range") == "第 1–50 个，共 5000 个"
    assert text(browser, "page-of") == "1 / 100 页"
    assert not browser.find_element(By.ID, "prev-page").is_enabled()

    click(browser, "#next-page")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50, 100)]), "page 2")
    assert text(browser, "page-range") == "第 51–100 个，共 5000 个"

    Select(browser.find_element(By.ID, "page-size")).select_by_value("20")
    # The first row shown (the 51st) stays on the page: page 3 of 20 rows.
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(40, 60)]), "rows 41-60")
    click(browser, "#next-page")
    page_4 = [f"acct-{i:05d}" for i in range(60, 80)]
    wait_for(lambda: shows(browser, page_4), "rows 61-80")
    assert urlsplit(browser.current_url).fragment == "size=20&page=4"
    assert text(browser, "page-of") == "4 / 250 页"

    browser.refresh()  # the hash keeps the view
    wait_for(lambda: shows(browser, page_4), "the same page after a reload")
    browser.get(f"{api.url}/#size=20&page=250")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(4980, 5000)]), "the last page")
    assert not browser.find_element(By.ID, "next-page").is_enabled()
    # The timeline draws the rows shown, not the fleet.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .tl-row[data-task-id]")) == 20


def test_fleet_filters_by_tag_search_and_status_and_sorts_by_next_run(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """The tag box, the search box (debounced) and the status list narrow the page through the
    server; sorting by next run puts an account run now first."""
    browser.get(f"{api.url}/")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")

    browser.find_element(By.ID, "filter-tag").send_keys("device:mac-007")
    wait_for(lambda: shows(browser, accounts_of(7)), "the 40 accounts of device:mac-007")
    assert text(browser, "page-range") == "第 1–40 个，共 40 个"
    assert "tag=device%3Amac-007" in urlsplit(browser.current_url).fragment

    browser.find_element(By.ID, "filter-q").send_keys("acct-0013")
    wait_for(lambda: shows(browser, ["acct-00132"]), "the one account of both")

    fill(browser, "#filter-q", "")
    fill(browser, "#filter-tag", "")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("paused")
    wait_for(lambda: shows(browser, []), "no paused account")
    assert text(browser, "empty") == "没有符合筛选条件的任务。"

    response = api.http.post("/api/v1/tasks/fleet-04999/run")
    assert response.status_code == 200, response.text
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-sort")).select_by_value("next")
    wait_for(
        lambda: settled(browser) and accounts(browser)[:2] == ["acct-04999", "acct-00000"],
        "the account run now first",
    )


def test_fleet_bulk_pause_of_a_tag_with_until_and_note_pauses_exactly_those(
    api: Api, browser: Any, store: redis.Redis, fleet: list[str]
) -> None:
    """All 40 accounts of a device (two pages of 20) paused in one confirmation, with a resume
    time and a note: exactly those are paused, each with both and an audit entry; the one
    already paused is listed as the failure the API reported."""
    live_machinery(store)
    response = api.http.post("/api/v1/tasks/fleet-00132/pause")
    assert response.status_code == 200, response.text
    browser.get(f"{api.url}/#tag=device:mac-007&size=20")
    wait_for(lambda: shows(browser, accounts_of(7)[:20]), "the first 20 of the device")

    click(browser, "#select-page")
    wait_for(lambda: displayed(browser, "#select-matching"), "the offer to select all 40")
    assert text(browser, "selection-text") == "已选择 20 个任务"
    click(browser, "#select-matching")
    assert text(browser, "selection-text") == "已选择符合筛选条件的全部 40 个任务"
    click(browser, '[data-bulk="pause"]')
    wait_for(lambda: dialog_open(browser, "bulk-dialog"), "the confirmation")
    assert text(browser, "bulk-title") == "暂停 40 个任务？"

    until = (datetime.now(ZONE) + timedelta(days=2)).replace(second=0, microsecond=0)
    set_value(browser, "#bulk-until", until.strftime("%Y-%m-%dT%H:%M"))
    browser.find_element(By.ID, "bulk-note").send_keys("设备维护")
    click(browser, "#bulk-confirm")
    wait_for(lambda: displayed(browser, "#bulk-result"), "the outcome")
    assert text(browser, "bulk-summary") == "批量暂停：选中 40 个，成功 39 个，失败 1 个。"
    [failure] = browser.find_elements(By.CSS_SELECTOR, "#bulk-failures li")
    assert failure.get_attribute("data-task-id") == "fleet-00132"
    assert failure.text.startswith("acct-00132：")

    paused = api.listing(status="paused", limit=1000)
    assert sorted(t["account_id"] for t in paused["tasks"]) == sorted(accounts_of(7))
    for task in paused["tasks"]:
        if task["task_id"] != "fleet-00132":
            assert datetime.fromisoformat(task["paused_until"]) == until
            assert task["pause_note"] == "设备维护"
    [entry] = api.http.get("/api/v1/tasks/fleet-00007/audit").json()["entries"]
    assert (entry["action"], entry["note"]) == ("pause", "设备维护")
    assert entry["request"]  # the request id the page generated
    wait_for(
        lambda: {row["reason"] for row in rows(browser)} == {"paused"}, "the rows shown paused"
    )
    assert "设备维护" in table(browser)["acct-00007"]["reason_text"]

    # The picture of docs/dashboard.md: that outcome over the fleet's first page, two ticked.
    browser.get(f"{api.url}/#size=20")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(20)]), "the first 20")
    click(browser, 'input.pick[data-task-id="fleet-00001"]')
    click(browser, 'input.pick[data-task-id="fleet-00002"]')
    wait_for(lambda: text(browser, "selection-text") == "已选择 2 个任务", "two rows ticked")
    assert displayed(browser, "#bulk-result")
    assert save_screenshot(browser).stat().st_size > 10_000
    refused = [m for m in browser.get_log("browser") if "Content Security Policy" in m["message"]]
    assert not refused, refused  # dialogs, results and timeline drawn within the page's CSP


def test_fleet_bulk_delete_confirms_the_count_and_deletes_the_selected(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """Two rows ticked, delete: the confirmation names 2, and only those two are gone."""
    browser.get(f"{api.url}/")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")
    click(browser, 'input.pick[data-task-id="fleet-00001"]')
    click(browser, 'input.pick[data-task-id="fleet-00002"]')
    click(browser, '[data-bulk="delete"]')
    wait_for(lambda: dialog_open(browser, "bulk-dialog"), "the confirmation")
    assert text(browser, "bulk-title") == "删除 2 个任务？"
    assert displayed(browser, "#bulk-warning")
    click(browser, "#bulk-confirm")

    expected = ["acct-00000", *(f"acct-{i:05d}" for i in range(3, 52))]
    wait_for(lambda: shows(browser, expected), "the page without the two")
    assert text(browser, "bulk-summary") == "批量删除：选中 2 个，成功 2 个，失败 0 个。"
    assert api.listing(limit=1)["total"] == FLEET - 2
    assert api.http.get("/api/v1/tasks/fleet-00001").status_code == 404


def test_fleet_create_form_shows_errors_by_field_then_creates_with_the_calendar(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """The create form sends every field; the API's 422 shows next to the field at fault and
    creates nothing; corrected, the task is created with all its calendar fields."""
    browser.get(f"{api.url}/")
    wait_for(lambda: settled(browser) and rows(browser), "the first page")
    click(browser, "#create-task")
    wait_for(lambda: dialog_open(browser, "task-dialog"), "the form")
    # It starts from the create defaults as the API's schema states them.
    starting = ("#f-task_type", "#f-interval", "#f-windows", "#f-jitter_s", "#f-misfire_grace_s")
    assert [
        browser.find_element(By.CSS_SELECTOR, css).get_attribute("value") for css in starting
    ] == ["xhs_type", "3600", "08:00-22:00", "0", "60"]
    for css, value in (
        ("#f-xhs_account_id", "acct-new"),
        ("#f-xhs_account_name", "新账号"),
        ("#f-sys_type", "mac_m1"),
        ("#f-tags", "device:new, team:b"),
        ("#f-interval", "7200"),
        ("#f-timezone", "Asia/Shanghai"),
        ("#f-max_runs", "10"),
        ("#f-jitter_s", "60"),
        ("#f-misfire_grace_s", "120"),
        ("#f-windows", "09:00-12:00, 25:00-26:00"),
        ("#f-blackout_dates", "2030-01-01"),
        ("#f-user_query", "开始运营"),
        ("#f-kwargs", '{"depth": 3}'),
    ):
        fill(browser, css, value)
    Select(browser.find_element(By.ID, "f-misfire_policy")).select_by_value("skip")
    click(browser, '#task-form input[name="weekdays"][value="7"]')
    click(browser, "#task-submit")

    error = '.field[data-field="windows"] .field-error'
    wait_for(lambda: displayed(browser, error), "the error next to the windows")
    assert "25:00-26:00" in browser.find_element(By.CSS_SELECTOR, error).text
    assert displayed(browser, "#task-form-error")
    assert dialog_open(browser, "task-dialog")
    assert api.listing(q="acct-new")["total"] == 0

    fill(browser, "#f-windows", "09:00-12:00, 14:00-18:00")
    click(browser, "#task-submit")
    wait_for(lambda: not dialog_open(browser, "task-dialog"), "the form to close")
    assert text(browser, "notice") == "已创建 acct-new"
    [created] = api.listing(q="acct-new")["tasks"]
    assert {
        k: created[k]
        for k in (
            "account_name",
            "sys_type",
            "task_type",
            "interval",
            "windows",
            "weekdays",
            "blackout_dates",
            "jitter_s",
            "max_runs",
            "misfire_policy",
            "misfire_grace_s",
            "tags",
            "timezone",
        )
    } == {
        "account_name": "新账号",
        "sys_type": "mac_m1",
        "task_type": "xhs_type",
        "interval": 7200,
        "windows": ["09:00-12:00", "14:00-18:00"],
        "weekdays": [1, 2, 3, 4, 5, 6],
        "blackout_dates": ["2030-01-01"],
        "jitter_s": 60,
        "max_runs": 10,
        "misfire_policy": "skip",
        "misfire_grace_s": 120,
        "tags": ["device:new", "team:b"],
        "timezone": "Asia/Shanghai",
    }
    assert api.task(created["task_id"])["kwargs"] == {"user_query": "开始运营", "depth": 3}

    browser.find_element(By.ID, "filter-q").send_keys("acct-new")
    wait_for(lambda: shows(browser, ["acct-new"]), "the new account found by the search")


def test_fleet_edit_form_patches_only_the_changed_fields(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """The edit form opens filled with the task; saving sends a PATCH of the two fields
    changed, nothing else, and the row shows the new name."""
    record_requests(browser)
    browser.get(f"{api.url}/")
    wait_for(lambda: settled(browser) and "acct-00003" in accounts(browser), "the first page")
    click(browser, 'tr[data-account="acct-00003"] button[data-action="edit"]')
    name = browser.find_element(By.ID, "f-xhs_account_name")
    wait_for(
        lambda: dialog_open(browser, "task-dialog") and name.get_attribute("value") == "账号3",
        "the form filled with the task",
    )
    assert browser.find_element(By.ID, "f-windows").get_attribute("value") == "00:00-24:00"
    assert browser.find_element(By.ID, "f-tags").get_attribute("value") == "device:mac-003"
    assert browser.find_element(By.ID, "f-user_query").get_attribute("value") == "开始运营"
    assert not browser.find_element(By.ID, "f-sys_type").is_enabled()
    assert not displayed(browser, "#f-start_at")

    fill(browser, "#f-interval", "5400")
    fill(browser, "#f-xhs_account_name", "账号3（新）")
    click(browser, "#task-submit")
    wait_for(lambda: not dialog_open(browser, "task-dialog"), "the form to close")

    [patch] = [r for r in requests_made(browser) if r["method"] == "PATCH"]
    assert urlsplit(patch["url"]).path.endswith("api/v1/tasks/fleet-00003")
    assert json.loads(patch["body"]) == {"interval": 5400, "account_name": "账号3（新）"}
    task = api.task("fleet-00003")
    assert (task["interval"], task["account_name"]) == (5400, "账号3（新）")
    assert (task["tags"], task["windows"]) == (["device:mac-003"], ["00:00-24:00"])
    assert task["kwargs"] == {"user_query": "开始运营"}
    wait_for(
        lambda: (
            browser.find_element(By.CSS_SELECTOR, 'tr[data-account="acct-00003"] .name').text
            == "账号3（新）"
        ),
        "the row with the new name",
    )


_AUDIT = """
return [...document.querySelectorAll('#audit-entries .audit-entry')].map((entry) => ({
  action: entry.dataset.action,
  actor: entry.querySelector('.actor').textContent,
  changes: [...entry.querySelectorAll('.changes li')].map((li) => [
    li.dataset.field,
    li.querySelector('.before').textContent,
    li.querySelector('.after').textContent,
  ]),
  note: entry.querySelector('.note')?.textContent ?? null,
}));
"""


def test_fleet_audit_view_lists_changes_newest_first(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """A task's audit view lists its pause, resume and edit, newest first, each with the
    actor, the fields changed (before -> after) and the note."""
    for path, body in (
        ("/api/v1/tasks/fleet-00002/pause", {"note": "账号申诉中"}),
        ("/api/v1/tasks/fleet-00002/resume", None),
    ):
        response = api.http.post(path, json=body)
        assert response.status_code == 200, response.text
    response = api.http.patch("/api/v1/tasks/fleet-00002", json={"interval": 7200})
    assert response.status_code == 200, response.text

    browser.get(f"{api.url}/")
    wait_for(lambda: settled(browser) and "acct-00002" in accounts(browser), "the first page")
    click(browser, 'tr[data-account="acct-00002"] button[data-action="audit"]')
    entries = wait_for(lambda: browser.execute_script(_AUDIT), "the audit entries")

    assert [e["action"] for e in entries] == ["patch", "resume", "pause"]
    assert {e["actor"] for e in entries} == {"anonymous"}
    assert ["interval", "3600", "7200"] in entries[0]["changes"]
    assert ["status", "paused", "pending"] in entries[1]["changes"]
    assert ["status", "pending", "paused"] in entries[2]["changes"]
    assert ["pause_note", "—", "账号申诉中"] in entries[2]["changes"]
    assert entries[2]["note"] == "备注：账号申诉中"
    assert text(browser, "audit-title") == "操作记录 · 账号2（acct-00002）"


@pytest.fixture
def roles_api(redis_url: str) -> Any:
    server = Api(
        redis_url,
        token=ADMIN_TOKEN,
        tokens={"wall": (VIEWER_TOKEN, "viewer"), "ops": (OPERATOR_TOKEN, "operator")},
    )
    yield server
    server.close()


def test_fleet_viewer_sees_no_write_controls(
    roles_api: Api, browser: Any, fleet: list[str]
) -> None:
    """A viewer's token shows the fleet read-only: no selection, bulk, create, edit, pause,
    run or dispatcher buttons; the audit view stays."""
    log_in(browser, roles_api.url, VIEWER_TOKEN)
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")
    assert text(browser, "whoami") == "wall · 只读"
    assert {tuple(row["buttons"]) for row in rows(browser)} == {("audit",)}
    assert not any(row["pick"] for row in rows(browser))
    for css in (
        "#create-task",
        "#dispatcher-toggle",
        "#select-page",
        "#bulk-bar",
        '[data-bulk="delete"]',
    ):
        assert not displayed(browser, css), css
    click(browser, 'tr[data-account="acct-00000"] button[data-action="audit"]')
    wait_for(lambda: text(browser, "audit-status") == "还没有记录。", "the audit view")


def test_fleet_operator_pauses_but_cannot_create_edit_or_delete(
    roles_api: Api, browser: Any, fleet: list[str]
) -> None:
    """An operator's token may select, bulk pause/resume/run and pause a row (recorded under
    the token's name), but sees no create, edit, delete or dispatcher button."""
    log_in(browser, roles_api.url, OPERATOR_TOKEN)
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")
    assert text(browser, "whoami") == "ops · 操作员"
    row = table(browser)["acct-00000"]
    assert row["buttons"] == ["pause", "run", "audit"] and row["pick"]
    click(browser, 'input.pick[data-task-id="fleet-00004"]')
    wait_for(lambda: displayed(browser, "#bulk-bar"), "the bulk actions")
    assert displayed(browser, '[data-bulk="pause"]') and displayed(browser, '[data-bulk="run"]')
    for css in ("#create-task", "#dispatcher-toggle", '[data-bulk="delete"]'):
        assert not displayed(browser, css), css

    click(browser, 'tr[data-account="acct-00000"] button[data-action="pause"]')
    wait_for(lambda: table(browser)["acct-00000"]["status"] == "paused", "acct-00000 paused")
    [entry] = roles_api.http.get("/api/v1/tasks/fleet-00000/audit").json()["entries"]
    assert (entry["action"], entry["actor"]) == ("pause", "ops")


def test_fleet_event_refreshes_only_the_page_shown(
    api: Api, browser: Any, fleet: list[str]
) -> None:
    """A change to a row shown re-reads that page and that row's details only; a change to
    an account on another page re-reads the page once and no details; never all tasks."""
    record_requests(browser)
    browser.get(f"{api.url}/")
    wait_for(lambda: shows(browser, [f"acct-{i:05d}" for i in range(50)]), "the first page")
    wait_for(lambda: live(browser), "the event stream")
    before = len(requests_made(browser))

    response = api.http.post("/api/v1/tasks/fleet-00003/pause")
    assert response.status_code == 200, response.text
    wait_for(
        lambda: settled(browser) and table(browser)["acct-00003"]["status"] == "paused",
        "the row paused by the event",
    )
    made = [r["url"] for r in requests_made(browser)[before:]]
    assert detailed_ids(made) == {"fleet-00003"}
    assert all(f"limit={PAGE}" in url for url in made if "/tasks/?" in url), made

    before = len(requests_made(browser))
    response = api.http.post("/api/v1/tasks/fleet-04000/pause")
    assert response.status_code == 200, response.text
    wait_for(lambda: settled(browser) and "已暂停 2" in text(browser, "summary"), "the new count")
    made = [r["url"] for r in requests_made(browser)[before:]]
    assert not detailed_ids(made), made
    assert len([url for url in made if "/tasks/?" in url]) == 1, made


def detailed_ids(urls: list[str]) -> set[str]:
    """The tasks whose details (latest and upcoming runs) these requests asked for."""
    return {
        task_id
        for url in urls
        if "/tasks/days?" in url
        for task_id in unquote(parse_qs(urlsplit(url).query)["ids"][0]).split(",")
    }
