"""Specification of /api/v1/notifications: CRUD, the secret never shown, errors naming the
field, the test message through the app's own sender, and the delivery metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskdispatch.engine.notify_formats import signature
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store.notifications import NOTIFICATIONS_MAX
from tests.support.probes import await_until, wait_until
from tests.support.receiver import Receiver

SECRET = "s3cret-value-never-shown"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def body(url: str = "http://127.0.0.1:9/hook", **fields: Any) -> dict[str, Any]:
    return {"url": url, "events": ["task.error", "task.recovered"], **fields}


async def test_put_creates_and_get_shows_it_without_its_secret(client: httpx.AsyncClient) -> None:
    """PUT answers the saved notification; GET one and the list show has_secret, never it."""
    response = await client.put(
        "/api/v1/notifications/ops",
        json=body(secret=SECRET, match={"tags": ["team:a"]}, group_window_s=5),
    )
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "通知已保存"
    shown = await client.get("/api/v1/notifications/ops")
    listed = await client.get("/api/v1/notifications/")
    for answer in (response, shown, listed):
        assert SECRET not in answer.text and '"secret"' not in answer.text
    info = shown.json()
    assert {k: info[k] for k in ("name", "events", "format", "has_secret", "match")} == {
        "name": "ops",
        "events": ["task.error", "task.recovered"],
        "format": "json",
        "has_secret": True,
        "match": {"tags": ["team:a"], "queue": None},
    }
    assert (info["group_window_s"], info["overdue_after_s"]) == (5, 300)
    assert info["recent_deliveries"] == []
    assert [n["name"] for n in listed.json()["notifications"]] == ["ops"]


async def test_put_again_replaces_it_keeping_the_secret_unless_null(
    client: httpx.AsyncClient,
) -> None:
    """A second PUT replaces every field; without `secret` the secret stays, null removes it."""
    await client.put("/api/v1/notifications/ops", json=body(secret=SECRET))
    first = (await client.get("/api/v1/notifications/ops")).json()
    await client.put("/api/v1/notifications/ops", json=body(events=["beat.down"]))
    kept = (await client.get("/api/v1/notifications/ops")).json()
    assert (kept["events"], kept["has_secret"]) == (["beat.down"], True)
    assert kept["created_at"] == first["created_at"]
    await client.put("/api/v1/notifications/ops", json=body(secret=None))
    assert (await client.get("/api/v1/notifications/ops")).json()["has_secret"] is False


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"url": "ftp://example.com/"}, "url", id="scheme"),
        pytest.param({"events": ["task.error", "nope"]}, "events[1]", id="event"),
        pytest.param({"events": "task.error"}, "events", id="events-type"),
        pytest.param({"format": "teams"}, "format", id="format"),
        pytest.param({"group_window_s": 3601}, "group_window_s", id="window"),
        pytest.param({"overdue_after_s": "300"}, "overdue_after_s", id="overdue-type"),
        pytest.param({"match": {"queue": "a b"}}, "match.queue", id="match-queue"),
        pytest.param({"matches": {}}, "matches", id="unknown-field"),
    ],
)
async def test_put_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    """The error starts with the field and details name it; nothing is stored."""
    response = await client.put("/api/v1/notifications/ops", json=body(**fields))
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["success"] is False and answer["error"].startswith(field)
    assert answer["details"][0]["field"] == field
    assert (await client.get("/api/v1/notifications/ops")).status_code == 404


async def test_put_beyond_notifications_max_is_422_but_replacing_still_works(
    client: httpx.AsyncClient,
) -> None:
    """With NOTIFICATIONS_MAX notifications a new name answers 422 naming `name`; an existing
    one saves."""
    for n in range(NOTIFICATIONS_MAX):
        response = await client.put(f"/api/v1/notifications/n-{n:03d}", json=body())
        assert response.status_code == 200, response.text
    response = await client.put("/api/v1/notifications/one-more", json=body())
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "name"
    replaced = await client.put("/api/v1/notifications/n-000", json=body(events=["task.error"]))
    assert replaced.status_code == 200, replaced.text
    listed = (await client.get("/api/v1/notifications")).json()["notifications"]
    assert len(listed) == NOTIFICATIONS_MAX


async def test_put_bad_name_is_422(client: httpx.AsyncClient) -> None:
    """A name that could not be part of a key or URL is refused as a notification name."""
    response = await client.put("/api/v1/notifications/-bad", json=body())
    assert response.status_code == 422
    assert response.json()["error"].startswith("name: 通知名称")


async def test_unknown_notification_is_404_for_get_delete_and_test(
    client: httpx.AsyncClient,
) -> None:
    """GET, DELETE and POST /test of a name never defined: 404 naming it."""
    for method, path in (
        ("GET", "/api/v1/notifications/ghost"),
        ("DELETE", "/api/v1/notifications/ghost"),
        ("POST", "/api/v1/notifications/ghost/test"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 404
        assert response.json()["error"] == "通知不存在: ghost"


async def test_delete_removes_it_with_its_groups_and_history(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """After DELETE it is gone from GET and the list, with its open conditions and recents."""
    keys = dispatcher.keys
    await client.put("/api/v1/notifications/ops", json=body())
    await dispatcher.redis.sadd(keys.notify_open("ops"), "task.error|t1")
    await dispatcher.redis.lpush(keys.notify_recent("ops"), "{}")
    response = await client.delete("/api/v1/notifications/ops")
    assert (response.status_code, response.json()["message"]) == (200, "通知已删除")
    assert (await client.get("/api/v1/notifications/ops")).status_code == 404
    assert (await client.get("/api/v1/notifications/")).json() == {"notifications": []}
    assert await dispatcher.redis.exists(keys.notify_open("ops"), keys.notify_recent("ops")) == 0


async def test_test_message_is_delivered_signed_and_shows_in_recent_deliveries(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """POST /test answers a delivery id; the app's own sender delivers event `test` with that
    id and a valid signature, and GET lists the attempt as delivered."""
    await client.put("/api/v1/notifications/ops", json=body(receiver.url, secret=SECRET))
    response = await client.post("/api/v1/notifications/ops/test")
    assert response.status_code == 200, response.text
    delivery_id = response.json()["delivery_id"]
    [got] = wait_until(receiver.received, timeout_s=10, message="the test message")
    assert (got.event, got.delivery_id) == ("test", delivery_id)
    assert got.headers["x-taskdispatch-signature"] == signature(SECRET, got.body)
    assert got.json()["text"] == "这是 taskdispatch 发给通知 ops 的测试消息"

    # The attempt is recorded right after the receiver answered.
    async def recorded() -> list[dict[str, Any]]:
        response = await client.get("/api/v1/notifications/ops")
        deliveries: list[dict[str, Any]] = response.json()["recent_deliveries"]
        return deliveries

    attempts = await await_until(recorded, 10, message="the attempt's record")
    assert [(a["delivery_id"], a["outcome"], a["status_code"]) for a in attempts] == [
        (delivery_id, "delivered", 200)
    ]


async def test_metrics_count_deliveries_per_notification(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """delivered_total and given_up_total per notification; pending counts waiting messages."""
    keys = dispatcher.keys
    await dispatcher.redis.hset(
        keys.notify_stats(), mapping={"delivered|ops": 3, "given_up|ops": 1}
    )
    # Due in an hour: the app's own sender drops a due id that has no delivery hash.
    later_ms = int(time.time() * 1000) + 3_600_000
    await dispatcher.redis.zadd(keys.notify_due(), {"d1": later_ms, "d2": later_ms + 1})
    text = (await client.get("/metrics")).text
    found = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert found[("taskdispatch_notifications_delivered_total", ("ops",))] == 3
    assert found[("taskdispatch_notifications_given_up_total", ("ops",))] == 1
    assert found[("taskdispatch_notifications_pending", ())] == 2
