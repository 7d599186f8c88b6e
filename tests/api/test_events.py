"""Specification of GET /api/v1/events: the event stream as Server-Sent Events.

httpx's ASGITransport returns a response only once the app has finished it, which a
stream never does; these tests run the app under a real uvicorn in a thread instead.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from api.main import create_app
from api.routers import events
from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.api import TOKEN, create_body
from tests.support.probes import wait_until

TIMEOUT_S = 10.0
Event = dict[str, str]


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """The app under uvicorn on a free port, for the duration of the block."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=free_port(),
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), TIMEOUT_S, 0.02, message="uvicorn")
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT_S)


@pytest.fixture(autouse=True)
def short_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep-alives every 0.3 s, so idle streams answer quickly and tests stay short."""
    monkeypatch.setattr(events, "BLOCK_MS", 300)


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    with running(settings) as url:
        yield url


@pytest.fixture
def secured_url(settings: Settings) -> Iterator[str]:
    with running(settings.model_copy(update={"api_token": TOKEN})) as url:
        yield url


class Stream:
    """An open SSE response, read event by event with a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next_frame(self) -> Event:
        """The next block of lines up to a blank line: fields by name, comments as ':'."""
        frame: Event = {}
        for line in self.lines:
            if not line:
                if frame:
                    return frame
                continue
            name, _, text = line.partition(":")
            frame[name or ":"] = text.removeprefix(" ")
        raise AssertionError(f"stream ended; partial frame {frame!r}")

    def next_event(self, timeout_s: float = TIMEOUT_S) -> Event:
        """The next frame with an `event:` field (skipping keep-alives and retry)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = self.next_frame()
            if "event" in frame:
                return frame
        raise AssertionError(f"no event within {timeout_s}s")


@contextmanager
def stream(url: str, **kwargs: Any) -> Iterator[Stream]:
    timeout = httpx.Timeout(TIMEOUT_S)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", f"{url}/api/v1/events", **kwargs) as response,
    ):
        assert response.status_code == 200, response.read()
        opened = Stream(response)
        # The first frame is the reconnect delay: once read, the stream's start id is fixed.
        assert opened.next_frame() == {"retry": str(events.RETRY_MS)}
        yield opened


def create(url: str, account_id: str, **kwargs: Any) -> str:
    response = httpx.post(f"{url}/api/v1/tasks/", json=create_body(account_id), **kwargs)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def created(event: Event) -> str:
    assert event["event"] == "task.created"
    task_id: str = json.loads(event["data"])["task_id"]
    return task_id


def stream_connections(admin: redis.Redis) -> int:
    return sum(1 for c in admin.client_list() if c.get("name") == events.CLIENT_NAME)


def test_events_created_task_arrives_as_task_created(base_url: str) -> None:
    """Creating a task sends `task.created` with its id, a stream id and a JSON payload."""
    with stream(base_url) as events_stream:
        task_id = create(base_url, "account_1")
        event = events_stream.next_event()
    assert created(event) == task_id
    assert re.fullmatch(r"\d+-\d+", event["id"])
    assert event["data"].startswith("{")


def test_events_without_last_id_start_with_new_events(base_url: str) -> None:
    """A fresh connection skips history: the first event is the one after connecting."""
    create(base_url, "before")
    with stream(base_url) as events_stream:
        task_id = create(base_url, "after")
        assert created(events_stream.next_event()) == task_id


@pytest.mark.parametrize("how", ["header", "query"])
def test_events_reconnect_with_last_event_id_gets_only_later_events(
    base_url: str, how: str
) -> None:
    """Resuming after an id replays exactly what followed it, header or query parameter."""
    with stream(base_url) as first:
        create(base_url, "one")
        seen = first.next_event()["id"]
    later = [create(base_url, "two"), create(base_url, "three")]
    options: dict[str, Any] = (
        {"headers": {"Last-Event-ID": seen}}
        if how == "header"
        else {"params": {"last_event_id": seen}}
    )
    with stream(base_url, **options) as resumed:
        assert [created(resumed.next_event()) for _ in later] == later


def test_events_header_wins_over_query_last_event_id(base_url: str) -> None:
    """EventSource's reconnect sends the newest id in the header while the URL keeps the old."""
    with stream(base_url) as first:
        create(base_url, "one")
        old = first.next_event()["id"]
        create(base_url, "two")
        newer = first.next_event()["id"]
    task_id = create(base_url, "three")
    options = {"headers": {"Last-Event-ID": newer}, "params": {"last_event_id": old}}
    with stream(base_url, **options) as resumed:
        assert created(resumed.next_event()) == task_id


def test_events_idle_stream_sends_keep_alive_comments(base_url: str) -> None:
    """With nothing happening, the stream sends `: keep-alive` after each block."""
    with stream(base_url) as events_stream:
        assert events_stream.next_frame() == {":": "keep-alive"}


def test_events_trimmed_history_sends_resync_first(base_url: str) -> None:
    """A last id older than everything kept: `resync` first, then what is kept."""
    task_id = create(base_url, "account_1")
    with stream(base_url, headers={"Last-Event-ID": "1-0"}) as resumed:
        assert resumed.next_event()["event"] == "resync"
        assert created(resumed.next_event()) == task_id


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "1-"])
def test_events_malformed_last_event_id_is_422(base_url: str, bad: str) -> None:
    """A last id that is not a stream id is refused before streaming."""
    response = httpx.get(f"{base_url}/api/v1/events", headers={"Last-Event-ID": bad})
    assert response.status_code == 422
    assert response.json()["error"].startswith("last_event_id: ")


def test_events_client_leaving_releases_its_redis_connection(
    base_url: str, settings: Settings
) -> None:
    """The stream's dedicated Redis connection closes soon after the client disconnects."""
    admin = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        with stream(base_url) as events_stream:
            events_stream.next_frame()  # a keep-alive: the stream's XREAD loop is running
            assert stream_connections(admin) == 1
        wait_until(
            lambda: stream_connections(admin) == 0,
            TIMEOUT_S,
            0.05,
            message="the stream's connection to close",
        )
    finally:
        admin.close()


def test_events_stream_carries_event_types_from_the_core(base_url: str, settings: Settings) -> None:
    """Dispatcher and task changes arrive with their types, in the order they happened."""
    with stream(base_url) as events_stream:
        task_id = create(base_url, "account_1")
        httpx.post(f"{base_url}/api/v1/tasks/{task_id}/pause")
        httpx.post(f"{base_url}/api/v1/dispatcher/stop")
        httpx.delete(f"{base_url}/api/v1/tasks/{task_id}")
        kinds = [events_stream.next_event()["event"] for _ in range(4)]
    assert kinds == ["task.created", "task.updated", "dispatcher.stopped", "task.deleted"]
    # The same entries the core wrote, ids included.
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        assert len(client.xrange(Keys(settings.key_prefix).events())) >= 4
    finally:
        client.close()


# --------------------------------------------------------------------------- auth


def test_events_with_token_refuse_missing_or_wrong_token(secured_url: str) -> None:
    """With a token set, no token or a wrong one is 401."""
    assert httpx.get(f"{secured_url}/api/v1/events").status_code == 401
    wrong = httpx.get(f"{secured_url}/api/v1/events", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"].startswith("未授权: ")


def test_events_with_token_accept_the_bearer_header(secured_url: str) -> None:
    """The stream takes the usual bearer header (browsers read it with fetch)."""
    auth = {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    with stream(secured_url, **auth) as events_stream:
        assert events_stream.response.headers["content-type"].startswith("text/event-stream")
        task_id = create(secured_url, "account_1", **auth)
        assert created(events_stream.next_event()) == task_id


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/tasks/"])
def test_query_token_is_refused_everywhere(secured_url: str, path: str) -> None:
    """No route reads `?token=`: a token in a URL ends up in access and proxy logs."""
    response = httpx.get(f"{secured_url}{path}", params={"token": TOKEN})
    assert response.status_code == 401
