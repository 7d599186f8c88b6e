"""The dashboard and a task's own queue: the queue filter, and the form's queue field."""

from __future__ import annotations

import json
from typing import Any

from tests.support.dashboard import require_browser

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys as Key  # noqa: E402

from tests.support.dashboard import (  # noqa: E402
    Api,
    click,
    record_requests,
    requests_made,
    rows,
    settled,
    wait_for,
)


def _shows(driver: Any, expected: list[str]) -> bool:
    return settled(driver) and [row["account"] for row in rows(driver)] == expected


def _fill(driver: Any, css: str, value: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, css)
    field.send_keys(Key.CONTROL, "a")
    field.send_keys(Key.DELETE)
    if value:
        field.send_keys(value)


def _dialog_open(driver: Any) -> bool:
    return bool(driver.execute_script("return document.getElementById('task-dialog').open;"))


def _patches(driver: Any) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in requests_made(driver) if r["method"] == "PATCH"]


def test_dashboard_queue_filter_lists_the_tasks_of_that_queue(api: Api, browser: Any) -> None:
    """Typing a queue in the filter lists the tasks pinned to it, and the URL keeps it."""
    api.create("acct-1", queue="mac-01")
    api.create("acct-2")
    api.create("acct-3", queue="mac-01")
    browser.get(f"{api.url}/")
    wait_for(lambda: _shows(browser, ["acct-1", "acct-2", "acct-3"]), "every account")
    browser.find_element(By.ID, "filter-queue").send_keys("mac-01")
    wait_for(lambda: _shows(browser, ["acct-1", "acct-3"]), "the accounts on mac-01")
    assert "queue=mac-01" in browser.current_url
    browser.refresh()
    wait_for(lambda: _shows(browser, ["acct-1", "acct-3"]), "the same view after a reload")
    assert browser.find_element(By.ID, "filter-queue").get_attribute("value") == "mac-01"


def test_dashboard_edit_form_moves_a_task_to_a_queue_and_back(api: Api, browser: Any) -> None:
    """The edit form shows the task's queue; a queue typed is sent as a PATCH of `queue`
    alone, and emptying the field sends `queue: null` (back to the default rule)."""
    task_id = api.create("acct-1")["task_id"]
    record_requests(browser)
    browser.get(f"{api.url}/")
    wait_for(lambda: _shows(browser, ["acct-1"]), "the account")

    def edit(value: str) -> None:
        click(browser, 'tr[data-account="acct-1"] button[data-action="edit"]')
        wait_for(lambda: _dialog_open(browser), "the form")
        _fill(browser, "#f-queue", value)
        click(browser, "#task-submit")
        wait_for(lambda: not _dialog_open(browser), "the form to close")

    edit("mac-02")
    assert _patches(browser) == [{"queue": "mac-02"}]
    assert api.task(task_id)["queue"] == "mac-02"
    click(browser, 'tr[data-account="acct-1"] button[data-action="edit"]')
    wait_for(
        lambda: browser.find_element(By.ID, "f-queue").get_attribute("value") == "mac-02",
        "the form showing the queue",
    )
    click(browser, "#task-cancel")
    wait_for(lambda: not _dialog_open(browser), "the form to close")
    edit("")
    assert _patches(browser)[-1] == {"queue": None}
    assert api.task(task_id)["queue"] is None


def test_dashboard_form_bad_queue_shows_the_error_next_to_the_field(api: Api, browser: Any) -> None:
    """The API's 422 on `queue` appears next to the queue field; nothing changes."""
    task_id = api.create("acct-1")["task_id"]
    browser.get(f"{api.url}/")
    wait_for(lambda: _shows(browser, ["acct-1"]), "the account")
    click(browser, 'tr[data-account="acct-1"] button[data-action="edit"]')
    wait_for(lambda: _dialog_open(browser), "the form")
    _fill(browser, "#f-queue", "mac 01")
    click(browser, "#task-submit")
    error = '.field[data-field="queue"] .field-error'
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, error).is_displayed(), "the queue's error"
    )
    assert "Celery 队列名" in browser.find_element(By.CSS_SELECTOR, error).text
    assert api.task(task_id)["queue"] is None
