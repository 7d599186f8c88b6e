"""The dashboard's notifications page end to end: a real API process (whose notifier thread
delivers), headless Chromium, and a receiver of the test's own (tests/support/receiver.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest

from taskdispatch.store.notifications import NOTIFY_EVENTS
from tests.support.dashboard import require_browser

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys as Key  # noqa: E402

from tests.support.dashboard import ADMIN_TOKEN, Api, click, live, settled, wait_for  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402

VIEWER_TOKEN = "viewer-token-0123456789"
SECRET = "s3cret-for-the-receiver"

# What the page shows, read in one script run (a poll may redraw a table between calls).
_PAGE = """
const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr`)];
return {
  notifications: rows('notifications').map((row) => ({
    name: row.dataset.name,
    cells: [...row.cells].map((cell) => cell.textContent),
    buttons: [...row.querySelectorAll('button[data-notify-action]')]
      .map((b) => b.dataset.notifyAction),
  })),
  deliveries: rows('deliveries').map((row) => ({
    delivery_id: row.dataset.deliveryId,
    event: row.dataset.event,
    outcome: row.dataset.outcome,
    status_code: row.querySelector('.status-code').textContent,
    attempts: row.querySelector('.attempts').textContent,
  })),
  busy: document.getElementById('notifications').getAttribute('aria-busy') === 'true',
};
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def page(driver: Any) -> dict[str, Any]:
    shown: dict[str, Any] = driver.execute_script(_PAGE)
    return shown


def listed(driver: Any) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in page(driver)["notifications"]}


def dialog_open(driver: Any) -> bool:
    return bool(
        driver.execute_script("return document.getElementById('notification-dialog').open;")
    )


def type_into(driver: Any, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Key.CONTROL, "a")
    field.send_keys(Key.DELETE)
    field.send_keys(value)


def tick_events(driver: Any, *events: str) -> None:
    """Leave exactly these event boxes ticked."""
    for box in driver.find_elements(By.CSS_SELECTOR, '#n-events input[name="events"]'):
        if box.is_selected() != (box.get_attribute("value") in events):
            box.click()


def open_page(driver: Any, url: str) -> None:
    driver.get(f"{url}/")
    wait_for(lambda: settled(driver), "the accounts page")
    click(driver, "#page-notifications")
    wait_for(lambda: not page(driver)["busy"], "the notifications page")


def test_dashboard_notification_created_in_the_form_is_tested_and_its_delivery_listed(
    api: Api, browser: Any, receiver: Receiver
) -> None:
    """An admin creates a notification through the form, sees it listed, presses test, and
    sees the delivery the receiver got (signed with the secret) in its recent deliveries."""
    open_page(browser, api.url)
    assert listed(browser) == {}
    assert browser.find_element(By.ID, "notifications-empty").is_displayed()

    click(browser, "#create-notification")
    wait_for(lambda: dialog_open(browser), "the form")
    offered = browser.find_elements(By.CSS_SELECTOR, '#n-events input[name="events"]')
    # Every event a notification may ask for (`test` is the test button's).
    assert sorted(box.get_attribute("value") for box in offered) == sorted(
        set(NOTIFY_EVENTS) - {"test"}
    )
    type_into(browser, "n-name", "ops")
    type_into(browser, "n-url", receiver.url)
    tick_events(browser, "task.error", "task.recovered", "task.overdue")
    type_into(browser, "n-secret", SECRET)
    type_into(browser, "n-match-tags", "team:a, device:mac-01")
    type_into(browser, "n-overdue_after_s", "600")
    type_into(browser, "n-group_window_s", "10")
    click(browser, "#notification-submit")
    wait_for(lambda: not dialog_open(browser), "the form to close")
    wait_for(lambda: "ops" in listed(browser), "the new notification listed")

    saved = api.http.get("/api/v1/notifications/ops").json()
    assert saved["url"] == receiver.url
    assert saved["events"] == ["task.error", "task.recovered", "task.overdue"]
    assert saved["match"] == {"tags": ["team:a", "device:mac-01"], "queue": None}
    assert (saved["has_secret"], saved["format"]) == (True, "json")
    assert (saved["overdue_after_s"], saved["group_window_s"]) == (600, 10)
    row = listed(browser)["ops"]
    assert row["buttons"] == ["deliveries", "test", "edit", "delete"]
    assert receiver.url in row["cells"] and "标签 team:a、device:mac-01" in row["cells"]
    assert SECRET not in browser.page_source

    click(browser, 'button[data-notify-action="test"][data-name="ops"]')
    [delivered] = wait_for(lambda: receiver.delivered(), "the test message at the receiver")
    [shown] = wait_for(lambda: page(browser)["deliveries"], "the delivery listed")
    assert shown == {
        "delivery_id": delivered.delivery_id,
        "event": "test",
        "outcome": "delivered",
        "status_code": "200",
        "attempts": "1",
    }
    expected = hmac.new(SECRET.encode(), delivered.body, hashlib.sha256).hexdigest()
    assert delivered.headers["x-taskdispatch-signature"] == f"sha256={expected}"


def test_dashboard_notification_form_shows_the_field_the_api_refuses(
    api: Api, browser: Any
) -> None:
    """A URL the API refuses is marked at its field with the API's message; nothing is saved."""
    open_page(browser, api.url)
    click(browser, "#create-notification")
    wait_for(lambda: dialog_open(browser), "the form")
    type_into(browser, "n-name", "ops")
    type_into(browser, "n-url", "ftp://files.example.com/")
    click(browser, "#notification-submit")
    error = browser.find_element(By.CSS_SELECTOR, '.field[data-field="url"] .field-error')
    wait_for(lambda: error.is_displayed(), "the url field's error")
    assert "http://" in error.text
    assert dialog_open(browser)
    assert api.http.get("/api/v1/notifications/ops").status_code == 404


def test_dashboard_notification_edit_keeps_the_secret_it_never_shows(
    api: Api, browser: Any, receiver: Receiver
) -> None:
    """Editing says a secret is set without showing it, and saving without typing one keeps
    it; ticking "delete" removes it."""
    body = {"url": receiver.url, "events": ["task.error"], "secret": SECRET}
    assert api.http.put("/api/v1/notifications/ops", json=body).status_code == 200
    open_page(browser, api.url)
    click(browser, 'button[data-notify-action="edit"][data-name="ops"]')
    wait_for(lambda: dialog_open(browser), "the form")
    secret = browser.find_element(By.ID, "n-secret")
    assert secret.get_attribute("value") == ""
    assert "已设置" in (secret.get_attribute("placeholder") or "")
    type_into(browser, "n-group_window_s", "60")
    click(browser, "#notification-submit")
    wait_for(lambda: not dialog_open(browser), "the form to close")
    saved = api.http.get("/api/v1/notifications/ops").json()
    assert (saved["group_window_s"], saved["has_secret"]) == (60, True)

    click(browser, 'button[data-notify-action="edit"][data-name="ops"]')
    wait_for(lambda: dialog_open(browser), "the form again")
    click(browser, "#n-clear-secret")
    click(browser, "#notification-submit")
    wait_for(lambda: not dialog_open(browser), "the form to close")
    assert api.http.get("/api/v1/notifications/ops").json()["has_secret"] is False


@pytest.fixture
def roles_api(redis_url: str) -> Iterator[Api]:
    server = Api(redis_url, token=ADMIN_TOKEN, tokens={"wall": (VIEWER_TOKEN, "viewer")})
    yield server
    server.close()


def test_dashboard_notifications_viewer_reads_deliveries_but_changes_nothing(
    roles_api: Api, browser: Any, receiver: Receiver
) -> None:
    """A viewer's token lists the notifications and their deliveries, with no create, test,
    edit or delete control."""
    body = {"url": receiver.url, "events": ["task.error"]}
    assert roles_api.http.put("/api/v1/notifications/ops", json=body).status_code == 200
    test = roles_api.http.post("/api/v1/notifications/ops/test")
    wait_for(lambda: receiver.delivered(), "the test message at the receiver")

    browser.get(f"{roles_api.url}/")
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), "the token form")
    browser.find_element(By.ID, "token-input").send_keys(VIEWER_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: settled(browser), "the accounts page")
    click(browser, "#page-notifications")
    wait_for(lambda: "ops" in listed(browser), "the notification listed")
    assert listed(browser)["ops"]["buttons"] == ["deliveries"]
    assert not browser.find_element(By.ID, "create-notification").is_displayed()

    click(browser, 'button[data-notify-action="deliveries"][data-name="ops"]')
    [shown] = wait_for(lambda: page(browser)["deliveries"], "the delivery listed")
    assert (shown["delivery_id"], shown["outcome"]) == (test.json()["delivery_id"], "delivered")


def test_dashboard_notifications_page_follows_changes_made_elsewhere(
    api: Api, browser: Any, receiver: Receiver
) -> None:
    """A notification saved or deleted through the API while the page is open shows there
    (from the live event stream: the page does not poll its list)."""
    open_page(browser, api.url)
    wait_for(lambda: live(browser), "the live event stream")
    body = {"url": receiver.url, "events": ["task.error"]}
    assert api.http.put("/api/v1/notifications/ops", json=body).status_code == 200
    wait_for(lambda: "ops" in listed(browser), "the notification saved elsewhere")
    assert api.http.delete("/api/v1/notifications/ops").status_code == 200
    wait_for(lambda: listed(browser) == {}, "the notification deleted elsewhere")
