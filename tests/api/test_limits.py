"""Specification of /api/v1/limits, of task tags and of the limit waiting reasons.

Real app, real Redis (the session's private server). The use of a limit (places, starts,
parked rounds) is arranged the way a worker's round writes it: with `limits.admit` on a
synchronous client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from taskdispatch.domain.models import Task
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.limits import LIMITS_MAX, Admission, LimitBook, admit
from tests.support.api import CreateTask

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKER = "celery@test-host"
TTL_MS = 30_000

LIMIT_INFO_FIELDS = {
    "name",
    "match",
    "max_concurrent",
    "max_starts",
    "per_s",
    "in_use",
    "waiting",
    "starts_in_window",
    "next_start",
    "created_at",
    "updated_at",
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(t_ms: int) -> str:
    """An instant as the API shows it (server zone Asia/Shanghai)."""
    return datetime.fromtimestamp(t_ms / 1000, SHANGHAI).isoformat(
        timespec="milliseconds" if t_ms % 1000 else "seconds"
    )


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield c
    c.close()


def admit_round(
    sync_redis: redis.Redis, dispatcher: TaskDispatcher, task_id: str, *, at_ms: int
) -> Admission:
    """What a worker's round does first: admit the task's current slot (or park it)."""
    keys = dispatcher.keys
    task = Task.from_hash(sync_redis.hgetall(keys.task(task_id)), task_id=task_id)
    return admit(
        sync_redis,
        keys,
        LimitBook(sync_redis, keys),
        task,
        lease_token=uuid.uuid4().hex,
        lease_ttl_ms=TTL_MS,
        start_token=uuid.uuid4().hex,
        now_ms=at_ms,
        park_until_ms=at_ms + 60_000,
    )


async def worker_heartbeat(dispatcher: TaskDispatcher) -> None:
    """A live worker consuming the default queue (else the reason is no_worker_for_queue)."""
    await dispatcher.redis.zadd(dispatcher.keys.workers(), {WORKER: now_ms()})
    await dispatcher.redis.hset(dispatcher.keys.worker_queues(), WORKER, "celery")


async def put(client: httpx.AsyncClient, name: str, **body: Any) -> httpx.Response:
    return await client.put(f"/api/v1/limits/{name}", json=body)


async def put_ok(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    response = await put(client, name, **body)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()["limit"]
    return info


# --------------------------------------------------------------------------- PUT


async def test_put_new_limit_answers_saved_with_its_limit_info(
    client: httpx.AsyncClient,
) -> None:
    """PUT /limits/{name} creates it: 200, 限流规则已保存, and the whole LimitInfo."""
    response = await put(client, "dev", match={"tag": "device:mac-01"}, max_concurrent=2)
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["message"]) == (True, "限流规则已保存")
    info = body["limit"]
    assert set(info) == LIMIT_INFO_FIELDS
    assert {k: v for k, v in info.items() if k not in ("created_at", "updated_at")} == {
        "name": "dev",
        "match": {"tag": "device:mac-01", "sys_type": None, "task_type": None},
        "max_concurrent": 2,
        "max_starts": None,
        "per_s": None,
        "in_use": 0,
        "waiting": 0,
        "starts_in_window": None,
        "next_start": None,
    }
    assert info["created_at"] == info["updated_at"]


async def test_put_rate_limit_counts_starts_in_its_window(client: httpx.AsyncClient) -> None:
    """A rate limit with no match covers all tasks; it shows 0 starts in its window."""
    info = await put_ok(client, "all-starts", max_starts=30, per_s=3600)
    assert info["match"] == {"tag": None, "sys_type": None, "task_type": None}
    assert (info["max_concurrent"], info["max_starts"], info["per_s"]) == (None, 30, 3600)
    assert (info["starts_in_window"], info["next_start"]) == (0, None)


async def test_put_existing_limit_replaces_it_keeping_created_at(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """A second PUT replaces the definition; created_at stays, updated_at is the new save."""
    first_ms, second_ms = 1_800_000_000_000, 1_800_000_060_000
    dispatcher.clock = lambda: first_ms
    await put_ok(client, "dev", match={"tag": "a"}, max_concurrent=2)
    dispatcher.clock = lambda: second_ms
    info = await put_ok(client, "dev", match={"sys_type": "mac_intel"}, max_starts=5, per_s=60)
    assert info["match"] == {"tag": None, "sys_type": "mac_intel", "task_type": None}
    assert (info["max_concurrent"], info["max_starts"], info["per_s"]) == (None, 5, 60)
    assert (info["created_at"], info["updated_at"]) == (iso(first_ms), iso(second_ms))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"max_concurrent": 1, "maxstarts": 2}, "maxstarts", id="unknown-field"),
        pytest.param(
            {"match": {"colour": "red"}, "max_concurrent": 1}, "match.colour", id="unknown-match"
        ),
        pytest.param({"max_concurrent": 0}, "max_concurrent", id="max-concurrent-0"),
        pytest.param({"max_concurrent": 100_001}, "max_concurrent", id="max-concurrent-big"),
        pytest.param({"max_concurrent": "2"}, "max_concurrent", id="max-concurrent-text"),
        pytest.param({"max_starts": 5}, "per_s", id="max-starts-without-per-s"),
        pytest.param({"max_concurrent": 1, "per_s": 60}, "per_s", id="per-s-without-max-starts"),
        pytest.param({"max_starts": 5, "per_s": 0}, "per_s", id="per-s-0"),
        pytest.param({}, "max_concurrent", id="no-cap"),
        pytest.param({"match": {"tag": ""}, "max_concurrent": 1}, "match.tag", id="empty-tag"),
    ],
)
async def test_put_invalid_body_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """A bad definition answers 422 whose error and details name the field; no limit exists."""
    response = await client.put("/api/v1/limits/dev", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["success"] is False
    assert answer["error"].startswith(field)
    assert answer["details"][0]["field"] == field
    assert (await client.get("/api/v1/limits")).json() == {"limits": []}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bad name", id="space"),
        pytest.param("-dev", id="leading-dash"),
        pytest.param("x" * 65, id="65-chars"),
        pytest.param("标签", id="non-ascii"),
    ],
)
async def test_put_bad_name_in_path_is_422_naming_name(
    client: httpx.AsyncClient, name: str
) -> None:
    """The name becomes part of Redis keys: a bad one answers 422 naming `name`."""
    response = await put(client, name, max_concurrent=1)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "name"
    assert response.json()["error"].startswith("name")


async def test_put_beyond_limits_max_is_422_but_replacing_still_works(
    client: httpx.AsyncClient,
) -> None:
    """With LIMITS_MAX limits a new name answers 422 naming `name`; an existing one saves."""
    for n in range(LIMITS_MAX):
        await put_ok(client, f"lim-{n:03d}", max_concurrent=1)
    response = await put(client, "one-more", max_concurrent=1)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "name"
    assert (await put_ok(client, "lim-000", max_concurrent=5))["max_concurrent"] == 5
    assert len((await client.get("/api/v1/limits")).json()["limits"]) == LIMITS_MAX


# --------------------------------------------------------------------------- GET, DELETE


async def test_get_limit_answers_its_limit_info(client: httpx.AsyncClient) -> None:
    """GET /limits/{name} is the LimitInfo the PUT answered."""
    saved = await put_ok(client, "dev", match={"task_type": "xhs_type"}, max_concurrent=3)
    response = await client.get("/api/v1/limits/dev")
    assert response.status_code == 200
    assert response.json() == saved


async def test_get_unknown_limit_is_404_naming_it(client: httpx.AsyncClient) -> None:
    """A limit that does not exist answers 404 限流规则不存在: <name>."""
    response = await client.get("/api/v1/limits/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "限流规则不存在: nope"


async def test_get_bad_name_is_422(client: httpx.AsyncClient) -> None:
    """A name that cannot exist answers 422, not 404."""
    response = await client.get("/api/v1/limits/-dev")
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "name"


async def test_list_limits_is_in_name_order(client: httpx.AsyncClient) -> None:
    """GET /limits (and /limits/) lists every limit by name."""
    for name in ("b", "c", "a"):
        await put_ok(client, name, max_concurrent=1)
    for path in ("/api/v1/limits", "/api/v1/limits/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert [x["name"] for x in response.json()["limits"]] == ["a", "b", "c"]


async def test_list_limits_shows_places_in_use_waiting_rounds_and_starts(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """One round running and one parked under cap 1; the rate limit counts the one start."""
    await put_ok(client, "cap", match={"tag": "x"}, max_concurrent=1)
    await put_ok(client, "rate", match={"tag": "x"}, max_starts=5, per_s=3600)
    running = (await create_task("a1", tags=["x"]))["task_id"]
    parked = (await create_task("a2", tags=["x"]))["task_id"]
    at = now_ms()
    assert admit_round(sync_redis, dispatcher, running, at_ms=at).admitted
    assert admit_round(sync_redis, dispatcher, parked, at_ms=at + 1).code == "limit_full"
    cap, rate = (await client.get("/api/v1/limits")).json()["limits"]
    assert (cap["name"], cap["in_use"], cap["waiting"], cap["starts_in_window"]) == (
        "cap",
        1,
        1,
        None,
    )
    assert (rate["name"], rate["in_use"], rate["waiting"], rate["starts_in_window"]) == (
        "rate",
        0,
        0,
        1,
    )


async def test_get_full_rate_limit_shows_when_the_next_start_is_free(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """Its window used up, a rate limit shows next_start = oldest start + per_s."""
    await put_ok(client, "rate", max_starts=1, per_s=3600)
    task_id = (await create_task("a1"))["task_id"]
    at = now_ms() // 1000 * 1000
    assert admit_round(sync_redis, dispatcher, task_id, at_ms=at).admitted
    info = (await client.get("/api/v1/limits/rate")).json()
    assert (info["starts_in_window"], info["next_start"]) == (1, iso(at + 3_600_000))


async def test_delete_limit_answers_deleted_then_get_is_404(client: httpx.AsyncClient) -> None:
    """DELETE answers 限流规则已删除; the limit is gone from reads and from the list."""
    await put_ok(client, "dev", max_concurrent=1)
    response = await client.delete("/api/v1/limits/dev")
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "限流规则已删除"}
    gone = await client.get("/api/v1/limits/dev")
    assert (gone.status_code, gone.json()["error"]) == (404, "限流规则不存在: dev")
    assert (await client.get("/api/v1/limits")).json() == {"limits": []}


async def test_delete_unknown_limit_is_404(client: httpx.AsyncClient) -> None:
    """Deleting a limit that does not exist answers 404 naming it."""
    response = await client.delete("/api/v1/limits/nope")
    assert (response.status_code, response.json()["error"]) == (404, "限流规则不存在: nope")


# --------------------------------------------------------------------------- tags


async def test_create_with_tags_shows_them_in_reads(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Tags given at creation are in task_info and in GET, duplicates dropped, order kept."""
    info = await create_task(tags=["device:mac-01", "team:a", "device:mac-01"])
    assert info["tags"] == ["device:mac-01", "team:a"]
    detail = (await client.get(f"/api/v1/tasks/{info['task_id']}")).json()
    assert detail["tags"] == ["device:mac-01", "team:a"]


async def test_create_without_tags_has_an_empty_list(create_task: CreateTask) -> None:
    """No tags given: tags is []."""
    assert (await create_task())["tags"] == []


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param([f"t{n}" for n in range(21)], id="21-tags"),
        pytest.param(["has space"], id="space"),
        pytest.param(["a,b"], id="comma"),
        pytest.param([""], id="empty"),
        pytest.param(["x" * 65], id="65-chars"),
        pytest.param(["tab\there"], id="control"),
        pytest.param("device:mac-01", id="not-a-list"),
    ],
)
async def test_create_with_invalid_tags_is_422_naming_tags(
    client: httpx.AsyncClient, tags: Any
) -> None:
    """Bad tags answer 422 naming `tags`, and no task is created."""
    body = {
        "sys_type": "mac_intel",
        "xhs_account_id": "a1",
        "xhs_account_name": "n",
        "valid_time_range": [0, 24],
        "tags": tags,
    }
    response = await client.post("/api/v1/tasks/", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("tags")
    assert (await client.get("/api/v1/tasks/")).json()["total"] == 0


async def test_create_with_twenty_tags_is_accepted(create_task: CreateTask) -> None:
    """Twenty tags is the most a task may carry."""
    tags = [f"t{n}" for n in range(20)]
    assert (await create_task(tags=tags))["tags"] == tags


async def test_patch_tags_replaces_them(client: httpx.AsyncClient, create_task: CreateTask) -> None:
    """PATCH tags sets the new list in the answer and in later reads."""
    task_id = (await create_task(tags=["a"]))["task_id"]
    response = await client.patch(f"/api/v1/tasks/{task_id}", json={"tags": ["b", "c"]})
    assert response.status_code == 200, response.text
    assert response.json()["task_info"]["tags"] == ["b", "c"]
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["tags"] == ["b", "c"]


async def test_patch_tags_null_removes_them(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """PATCH tags: null leaves the task without tags (and out of the tag's list)."""
    task_id = (await create_task(tags=["a"]))["task_id"]
    response = await client.patch(f"/api/v1/tasks/{task_id}", json={"tags": None})
    assert response.status_code == 200, response.text
    assert response.json()["task_info"]["tags"] == []
    assert (await client.get("/api/v1/tasks/", params={"tag": "a"})).json()["total"] == 0


async def test_patch_without_tags_keeps_them(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A PATCH that does not mention tags leaves them as they were."""
    task_id = (await create_task(tags=["a"]))["task_id"]
    await client.patch(f"/api/v1/tasks/{task_id}", json={"account_name": "renamed"})
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["tags"] == ["a"]


async def test_patch_invalid_tags_is_422_and_keeps_them(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A bad tag in a PATCH answers 422 naming `tags`; the stored tags are unchanged."""
    task_id = (await create_task(tags=["a"]))["task_id"]
    response = await client.patch(f"/api/v1/tasks/{task_id}", json={"tags": ["a b"]})
    assert response.status_code == 422
    assert response.json()["error"].startswith("tags")
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["tags"] == ["a"]


async def test_list_by_tag_lists_exactly_the_tasks_with_it(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """?tag=x lists the tasks carrying x, in creation order, and counts them all."""
    tagged = [(await create_task(f"a{n}", tags=["x", "y"]))["task_id"] for n in range(3)]
    await create_task("other", tags=["y"])
    await create_task("plain")
    body = (await client.get("/api/v1/tasks/", params={"tag": "x"})).json()
    assert body["total"] == 3
    assert [t["task_id"] for t in body["tasks"]] == tagged


async def test_list_by_tag_pages_and_counts_every_match(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """limit/offset page the tag's tasks; total is all of them."""
    tagged = [(await create_task(f"a{n}", tags=["x"]))["task_id"] for n in range(4)]
    params: dict[str, str | int] = {"tag": "x", "limit": 2, "offset": 1}
    body = (await client.get("/api/v1/tasks/", params=params)).json()
    assert body["total"] == 4
    assert [t["task_id"] for t in body["tasks"]] == tagged[1:3]


async def test_list_by_tag_and_status_lists_the_tagged_tasks_in_that_status(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """?tag=x&status=paused lists only the paused tasks with x, with their total."""
    ids = [(await create_task(f"a{n}", tags=["x"]))["task_id"] for n in range(3)]
    paused_untagged = (await create_task("untagged"))["task_id"]
    for task_id in (ids[0], ids[2], paused_untagged):
        assert (await client.post(f"/api/v1/tasks/{task_id}/pause")).status_code == 200
    body = (await client.get("/api/v1/tasks/", params={"tag": "x", "status": "paused"})).json()
    assert body["total"] == 2
    assert [t["task_id"] for t in body["tasks"]] == [ids[0], ids[2]]
    pending = (await client.get("/api/v1/tasks/", params={"tag": "x", "status": "pending"})).json()
    assert (pending["total"], [t["task_id"] for t in pending["tasks"]]) == (1, [ids[1]])


async def test_list_by_tag_follows_patches_and_deletes(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A task whose tag was removed, or that was deleted, is no longer listed under it."""
    kept, untagged, deleted = [
        (await create_task(f"a{n}", tags=["x"]))["task_id"] for n in range(3)
    ]
    await client.patch(f"/api/v1/tasks/{untagged}", json={"tags": ["y"]})
    await client.delete(f"/api/v1/tasks/{deleted}")
    body = (await client.get("/api/v1/tasks/", params={"tag": "x"})).json()
    assert (body["total"], [t["task_id"] for t in body["tasks"]]) == (1, [kept])
    assert (await client.get("/api/v1/tasks/", params={"tag": "y"})).json()["total"] == 1


async def test_list_by_unknown_tag_is_empty(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A tag no task carries lists nothing."""
    await create_task(tags=["x"])
    assert (await client.get("/api/v1/tasks/", params={"tag": "z"})).json() == {
        "total": 0,
        "tasks": [],
    }


async def test_list_by_invalid_tag_is_422(client: httpx.AsyncClient) -> None:
    """A tag query that no task could carry answers 422."""
    response = await client.get("/api/v1/tasks/", params={"tag": "a b"})
    assert response.status_code == 422


async def test_list_by_invalid_tag_names_the_tag_parameter(client: httpx.AsyncClient) -> None:
    """The 422 for a bad tag query names the query parameter `tag`, like status and limit."""
    response = await client.get("/api/v1/tasks/", params={"tag": "a b"})
    assert response.json()["details"][0]["field"] == "tag"


# --------------------------------------------------------------------------- waiting reasons


async def test_reason_of_a_round_parked_on_a_full_limit_is_limit_full(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """The parked task reads limit_full with the limit, its places in use and its capacity."""
    await worker_heartbeat(dispatcher)
    await put_ok(client, "dev", match={"tag": "dev"}, max_concurrent=1)
    holder = (await create_task("a1", tags=["dev"]))["task_id"]
    waiter = (await create_task("a2", tags=["dev"]))["task_id"]
    at = now_ms()
    admit_round(sync_redis, dispatcher, holder, at_ms=at)
    assert admit_round(sync_redis, dispatcher, waiter, at_ms=at + 1).code == "limit_full"
    info = (await client.get(f"/api/v1/tasks/{waiter}")).json()
    assert info["waiting_reason"] == {
        "code": "limit_full",
        "limit": "dev",
        "in_use": 1,
        "capacity": 1,
    }


async def test_reason_of_a_round_parked_on_a_rate_limit_is_rate_limited_with_next_start(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """The parked task reads rate_limited with the limit and next_start in its own zone."""
    await worker_heartbeat(dispatcher)
    await put_ok(client, "burst", max_starts=1, per_s=600)
    first = (await create_task("a1"))["task_id"]
    second = (await create_task("a2", timezone="Europe/Paris"))["task_id"]
    at = now_ms() // 1000 * 1000
    admit_round(sync_redis, dispatcher, first, at_ms=at)
    assert admit_round(sync_redis, dispatcher, second, at_ms=at + 1000).code == "rate_limited"
    reason = (await client.get(f"/api/v1/tasks/{second}")).json()["waiting_reason"]
    assert reason == {
        "code": "rate_limited",
        "limit": "burst",
        "next_start": datetime.fromtimestamp(
            (at + 600_000) / 1000, ZoneInfo("Europe/Paris")
        ).isoformat(timespec="seconds"),
    }


async def test_reason_in_the_task_list_is_limit_full_for_the_parked_task_only(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """A list page shows limit_full on the parked task and nothing on a task no limit covers."""
    await worker_heartbeat(dispatcher)
    await put_ok(client, "dev", match={"tag": "dev"}, max_concurrent=1)
    holder = (await create_task("a1", tags=["dev"]))["task_id"]
    waiter = (await create_task("a2", tags=["dev"]))["task_id"]
    free = (await create_task("a3"))["task_id"]
    at = now_ms()
    admit_round(sync_redis, dispatcher, holder, at_ms=at)
    admit_round(sync_redis, dispatcher, waiter, at_ms=at + 1)
    body = (await client.get("/api/v1/tasks/")).json()
    by_id = {t["task_id"]: t["waiting_reason"] for t in body["tasks"]}
    assert by_id[waiter] == {"code": "limit_full", "limit": "dev", "in_use": 1, "capacity": 1}
    assert by_id[free] is None


async def test_reason_after_the_limit_is_deleted_is_no_longer_a_limit(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """A waiter whose limit was deleted no longer reads limit_full."""
    await worker_heartbeat(dispatcher)
    await put_ok(client, "dev", match={"tag": "dev"}, max_concurrent=1)
    holder = (await create_task("a1", tags=["dev"]))["task_id"]
    waiter = (await create_task("a2", tags=["dev"]))["task_id"]
    at = now_ms()
    admit_round(sync_redis, dispatcher, holder, at_ms=at)
    admit_round(sync_redis, dispatcher, waiter, at_ms=at + 1)
    await client.delete("/api/v1/limits/dev")
    reason = (await client.get(f"/api/v1/tasks/{waiter}")).json()["waiting_reason"]
    assert reason is None or reason["code"] not in ("limit_full", "rate_limited")


# --------------------------------------------------------------------------- dispatcher status


async def test_dispatcher_status_lists_the_limits_with_their_use(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    sync_redis: redis.Redis,
) -> None:
    """GET /dispatcher/status has `limits`: every LimitInfo by name, with places in use."""
    await put_ok(client, "zz-rate", max_starts=10, per_s=60)
    await put_ok(client, "dev", match={"tag": "dev"}, max_concurrent=2)
    holder = (await create_task("a1", tags=["dev"]))["task_id"]
    admit_round(sync_redis, dispatcher, holder, at_ms=now_ms())
    limits = (await client.get("/api/v1/dispatcher/status")).json()["limits"]
    assert [x["name"] for x in limits] == ["dev", "zz-rate"]
    assert all(set(x) == LIMIT_INFO_FIELDS for x in limits)
    assert (limits[0]["in_use"], limits[0]["max_concurrent"]) == (1, 2)
    assert (limits[1]["in_use"], limits[1]["starts_in_window"]) == (0, 1)
