"""Driving the dashboard in tests: a real `uvicorn api.main:app` process, headless Chromium
through Selenium and Debian's `chromium-driver`, and readers of what the page shows.

Selenium is imported inside the functions that need it, so that the dashboard's conftest
can import this module on a machine without it (the test modules then skip, see
`require_browser`). Screenshots go to test-artifacts/; with UPDATE_SCREENSHOT=1 the one
named dashboard.png is also copied to docs/img/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.store.keys import Keys

__all__ = [
    "ADMIN_TOKEN",
    "PREFIX",
    "ROOT",
    "WAIT_S",
    "Api",
    "chromium",
    "click",
    "live",
    "live_machinery",
    "load_times",
    "record_requests",
    "requests_made",
    "require_browser",
    "rows",
    "save_screenshot",
    "settled",
    "table",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver && make venv"  # selenium: dev.lock
PREFIX = "tddash:"
WAIT_S = 15.0
ADMIN_TOKEN = "dash-s3cret-token-0123"


def require_browser() -> None:
    """Skip the calling test module (at import) when Chromium, its driver or Selenium is
    missing, naming the install command. Nothing is installed from here."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(
            f"headless Chromium or its driver is missing (/usr/bin/chromium, "
            f"/usr/bin/chromedriver); install with: {INSTALL}",
            allow_module_level=True,
        )
    pytest.importorskip(
        "selenium.webdriver", reason=f"selenium is not installed; install with: {INSTALL}"
    )


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
    return value


class Api:
    """A real `uvicorn api.main:app` process, configured through the environment.

    `token` is an admin token (TASKDISPATCH_API_TOKEN) that `http` sends; `tokens` adds
    named ones, name -> (token, role), as TASKDISPATCH_API_TOKENS.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        token: str | None = None,
        tokens: dict[str, tuple[str, str]] | None = None,
        prefix: str = PREFIX,
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.keys = Keys(prefix)
        # Nothing from the developer's own settings (tokens, a rate limit) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
        env |= {"TASKDISPATCH_REDIS_URL": redis_url, "TASKDISPATCH_KEY_PREFIX": prefix}
        if token:
            env["TASKDISPATCH_API_TOKEN"] = token
        if tokens:
            env["TASKDISPATCH_API_TOKENS"] = json.dumps(
                {name: {"token": value, "role": role} for name, (value, role) in tokens.items()}
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "api.main:app"),
                *("--host", "127.0.0.1", "--port", port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=10)
        wait_for(self._healthy, "the API to answer /api/v1/health")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            _, err = self.process.communicate()
            raise AssertionError(f"uvicorn exited: {err.decode(errors='replace')[-2000:]}")
        try:
            return self.http.get("/api/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    def create(self, account_id: str, **overrides: Any) -> dict[str, Any]:
        body = {
            "sys_type": "mac_intel",
            "xhs_account_id": account_id,
            "xhs_account_name": f"账号 {account_id[-1]}",
            "interval": 3600,
            "valid_time_range": [0, 24],
            **overrides,
        }
        response = self.http.post("/api/v1/tasks/", json=body)
        assert response.status_code == 200, response.text
        info: dict[str, Any] = response.json()["task_info"]
        return info

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def listing(self, **params: Any) -> dict[str, Any]:
        response = self.http.get("/api/v1/tasks/", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def chromium(profile_dir: Path) -> Any:
    """Headless Chromium under Selenium, with the driver Debian installed."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,860",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager never tries to download one.
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    return driver


def live_machinery(store: redis.Redis, prefix: str = PREFIX) -> None:
    """Heartbeats of one beat and one worker (on the default queue), as a running stack has."""
    keys = Keys(prefix)
    now_ms = time.time_ns() // 1_000_000
    store.zadd(keys.beats(), {"beat@test": now_ms})
    store.zadd(keys.workers(), {"celery@test": now_ms})
    store.hset(keys.worker_queues(), "celery@test", "celery")


# Read in one script run: the page may re-render a row between two WebDriver calls.
_TABLE = """
return [...document.querySelectorAll('#accounts tbody tr')].map((row) => ({
  account: row.dataset.account,
  task_id: row.dataset.taskId,
  status: row.querySelector('.status').dataset.status,
  status_text: row.querySelector('.status').textContent,
  reason: row.querySelector('.reason').dataset.code,
  reason_text: row.querySelector('.reason').textContent,
  buttons: [...row.querySelectorAll('button[data-action]')].map((b) => b.dataset.action),
  pick: Boolean(row.querySelector('input.pick')),
  stopping: row.querySelector('.stopping')?.textContent ?? null,
}));
"""


def rows(driver: Any) -> list[dict[str, Any]]:
    """The rows of the accounts table, in page order."""
    found: list[dict[str, Any]] = driver.execute_script(_TABLE)
    return found


def table(driver: Any) -> dict[str, dict[str, Any]]:
    """What each row of the accounts table shows, by account id."""
    return {row["account"]: row for row in rows(driver)}


def settled(driver: Any) -> bool:
    """The page shows its rows and has loaded every detail it asked for."""
    return bool(
        driver.execute_script(
            "const t = document.getElementById('accounts');"
            "return !document.getElementById('content').hidden"
            " && t.getAttribute('aria-busy') === 'false';"
        )
    )


def click(driver: Any, css: str) -> None:
    """Click the element, finding it again if a refresh replaced it under the pointer."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(attempt, f"a clickable {css}")


def live(driver: Any) -> bool:
    """The page receives live events (its badge says so)."""
    return bool(
        driver.execute_script("return document.getElementById('live').textContent == '实时';")
    )


# Before any page script runs: every fetch the page makes (method, URL, body), in order;
# when the first row of the accounts table appeared and when the table first stopped being
# busy with rows in it (ms since navigation start).
_RECORDER = """
window.__requests = [];
window.__firstRowsMs = null;
window.__settledMs = null;
const nativeFetch = window.fetch;
window.fetch = (url, init = {}) => {
  window.__requests.push({
    url: String(url), method: init.method || "GET", body: init.body || null,
    at: performance.now(),
  });
  return nativeFetch(url, init);
};
new MutationObserver((changes, observer) => {
  const table = document.getElementById("accounts");
  const shown = Boolean(table && table.querySelector("tbody tr"));
  if (shown && window.__firstRowsMs === null) window.__firstRowsMs = performance.now();
  if (shown && table.getAttribute("aria-busy") === "false") {
    window.__settledMs = performance.now();
    observer.disconnect();
  }
}).observe(document, {
  childList: true, subtree: true, attributes: true, attributeFilter: ["aria-busy"],
});
"""


def record_requests(driver: Any) -> None:
    """Record the page's requests from the next navigation on (see `requests_made`)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORDER})


def requests_made(driver: Any) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = driver.execute_script("return window.__requests;")
    return made


def load_times(driver: Any) -> tuple[float, float]:
    """(first rows, settled) in ms since the navigation started, as `record_requests` saw."""
    first, done = driver.execute_script("return [window.__firstRowsMs, window.__settledMs];")
    return float(first), float(done)


def save_screenshot(driver: Any, name: str = "dashboard.png") -> Path:
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / name
    # The whole page, not just the window: the timeline sits below the table.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, int(height) + 24)
    driver.save_screenshot(str(shot))
    if os.environ.get("UPDATE_SCREENSHOT") == "1" and name == "dashboard.png":
        docs = ROOT / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs / name)
    return shot
