"""Hostile input: clear 4xx, nothing stored half-way, no Redis key reachable through an id."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis.asyncio

from taskdispatch.store.indexes import SEARCH_SEPARATOR
from tests.support.api import create_body, error_body_ok
from tests.support.store import PREFIX, consistent, store_state

# Appended to by every accepted write (live events, round metrics, the audit trail); not
# task state.
VOLATILE = {f"{PREFIX}events", f"{PREFIX}stats", f"{PREFIX}audit"}


def without_volatile(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in VOLATILE}


async def assert_refused(
    client: httpx.AsyncClient,
    raw: redis.asyncio.Redis,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """The request gets a 4xx in the standard error body and changes nothing in Redis."""
    before = await store_state(raw)
    response = await client.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, (method, url, response.status_code, response.text)
    assert error_body_ok(response.json()), response.text
    assert "Traceback" not in response.text
    assert await store_state(raw) == before, f"{method} {url} changed the store"
    return response


BAD_CREATE_FIELDS = {
    "kwargs-100KB": {"kwargs": {"blob": "x" * 100_000}},
    "kwargs-too-deep": {"kwargs": json.loads('{"a":' * 40 + "1" + "}" * 40)},
    "account-nul": {"xhs_account_id": "a\x00b"},
    "account-newline": {"xhs_account_id": "a\nb"},
    "account-space": {"xhs_account_id": "a b"},
    "account-zero-width": {"xhs_account_id": "a\u200bb"},
    "account-bidi-override": {"xhs_account_id": "\u202eabc"},
    "account-slash": {"xhs_account_id": "a/b"},
    "account-percent": {"xhs_account_id": "a%2Fb"},
    "account-empty": {"xhs_account_id": ""},
    "account-129-chars": {"xhs_account_id": "x" * 129},
    "sys-type-space": {"sys_type": "mac intel"},
    "name-control": {"xhs_account_name": "bell\x07"},
    "interval-zero": {"interval": 0},
    "interval-negative": {"interval": -1},
    "interval-huge": {"interval": 10**30},
    "interval-float": {"interval": 1.5},
    "interval-string": {"interval": "60"},
    "interval-bool": {"interval": True},
    "window-25": {"valid_time_range": [25, 3]},
    "window-negative": {"valid_time_range": [-1, 5]},
    "window-empty": {"valid_time_range": [5, 5]},
    "window-one": {"valid_time_range": [1]},
    "window-three": {"valid_time_range": [1, 2, 3]},
    "window-huge": {"valid_time_range": [10**30, 1]},
    "end-year-9999": {"task_end_time": "9999-12-31T23:59:59"},
    "end-garbage": {"task_end_time": "not a date"},
    "end-past": {"task_end_time": "2000-01-01"},
    "timezone-unknown": {"timezone": "Mars/Olympus"},
    "timezone-path": {"timezone": "../../etc/passwd"},
    "start-at-year-10000": {"start_at": "10000-01-01T00:00:00"},
    "unknown-field": {"intervall": 60},
    "task-type-unknown": {"task_type": "rm -rf /"},
}


@pytest.mark.parametrize("fields", BAD_CREATE_FIELDS.values(), ids=BAD_CREATE_FIELDS.keys())
async def test_create_with_hostile_field_is_4xx_and_stores_nothing(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis, fields: dict[str, Any]
) -> None:
    """Each bad field is refused with a message; no task, account or index entry appears."""
    await assert_refused(client, raw, "POST", "/api/v1/tasks/", json=create_body(**fields))
    assert (await client.get("/api/v1/tasks/")).json()["total"] == 0


RAW_BODIES = {
    "array-nested-100k": b"[" * 100_000 + b"]" * 100_000,
    "object-nested-100k": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "invalid-utf8": b'{"sys_type": "\xff\xfe"}',
    "nan": b'{"interval": NaN}',
    "truncated": b'{"sys_type": "mac',
    "top-level-array": b"[1, 2, 3]",
    "top-level-string": b'"hello"',
    "2-MiB": b'{"kwargs": {"x": "' + b"y" * (2 * 1024 * 1024) + b'"}}',
}


@pytest.mark.parametrize("body", RAW_BODIES.values(), ids=RAW_BODIES.keys())
async def test_create_with_hostile_raw_body_is_4xx_and_stores_nothing(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis, body: bytes
) -> None:
    """Deep, malformed, non-UTF-8 or oversized JSON: a 4xx, never a 500, nothing stored."""
    await assert_refused(
        client,
        raw,
        "POST",
        "/api/v1/tasks/",
        content=body,
        headers={"Content-Type": "application/json"},
    )


async def _create(client: httpx.AsyncClient, account: str, **fields: Any) -> str:
    response = await client.post("/api/v1/tasks/", json=create_body(account, **fields))
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


UNICODE_IDS = ["账号-🙂", "ünïcödé", "a:b", "x*", "[x]", "a|b", "';--", "{x}"]


async def test_unicode_and_punctuation_account_ids_round_trip_exactly(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis
) -> None:
    """Ids with CJK, emoji, `:`, `*`, brackets, braces or quotes are stored and read back."""
    for account in UNICODE_IDS:
        task_id = await _create(client, account)
        detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert detail["account_id"] == account
        listed = (await client.get(f"/api/v1/accounts/{quote(account, safe='')}/tasks")).json()
        assert [t["task_id"] for t in listed["tasks"]] == [task_id]
        filtered = (await client.get("/api/v1/tasks/", params={"account_id": account})).json()
        assert [t["task_id"] for t in filtered["tasks"]] == [task_id]
    assert await consistent(raw) == []


async def test_glob_and_colon_account_ids_neither_match_nor_touch_other_keys(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis
) -> None:
    """`x*`, `x**`, `[x]` and `a:b` address only their own keys: look-ups and deletes included."""
    accounts = ["a", "a:b", "b", "x", "xy", "x*", "[x]", "x**"]
    ids = {acct: await _create(client, acct) for acct in accounts}
    for pattern in ["*", "x*", "?", "x?", "[x]", "a:*", "*:b"]:
        listed = (await client.get(f"/api/v1/accounts/{quote(pattern, safe='')}/tasks")).json()
        expected = [ids[pattern]] if pattern in ids else []
        assert [t["task_id"] for t in listed["tasks"]] == expected, pattern

    for victim in ["x*", "a:b", "[x]", "x**"]:
        before = without_volatile(await store_state(raw))
        response = await client.delete(f"/api/v1/tasks/{ids[victim]}")
        assert response.status_code == 200
        after = without_volatile(await store_state(raw))
        own = {f"{PREFIX}task:{ids[victim]}", f"{PREFIX}account:{victim}"}
        per_task = {f"{PREFIX}runs:{ids[victim]}", f"{PREFIX}audit:{ids[victim]}"}
        assert set(before) - set(after) <= own | per_task
        assert set(after) <= set(before)
        for key in after:
            if key in own:
                continue
            if isinstance(before[key], list) and key.startswith(PREFIX):
                # Index sorted sets lose exactly the deleted task's members (the search
                # index's members end with "\0<task_id>").
                kept = [
                    m
                    for m in before[key]
                    if not (
                        isinstance(m, tuple) and m[0].rpartition(SEARCH_SEPARATOR)[2] == ids[victim]
                    )
                ]
                assert after[key] == kept, key
            else:
                assert after[key] == before[key], key
    remaining = (await client.get("/api/v1/tasks/")).json()
    assert sorted(t["account_id"] for t in remaining["tasks"]) == ["a", "b", "x", "xy"]
    assert await consistent(raw) == []


OUT_OF_RANGE = {
    "reorder-huge": ("POST", "/reorder", {"json": {"priority_offset": 10**30}}),
    "reorder-huge-negative": ("POST", "/reorder", {"json": {"priority_offset": -(10**30)}}),
    "reorder-over-a-year": ("POST", "/reorder", {"json": {"priority_offset": 366 * 86400 + 1}}),
    "reorder-float": ("POST", "/reorder", {"json": {"priority_offset": 1.5}}),
    "reorder-missing": ("POST", "/reorder", {"json": {}}),
    "patch-interval-negative": ("PATCH", "", {"json": {"interval": -5}}),
    "patch-interval-huge": ("PATCH", "", {"json": {"interval": 10**30}}),
    "patch-window-bad": ("PATCH", "", {"json": {"interval": 60, "valid_time_range": [9, 99]}}),
    "patch-kwargs-too-big": ("PATCH", "", {"json": {"kwargs": {"x": "y" * 70_000}}}),
    "runs-limit-zero": ("GET", "/runs", {"params": {"limit": 0}}),
    "runs-limit-huge": ("GET", "/runs", {"params": {"limit": 10**30}}),
    "upcoming-count-zero": ("GET", "/upcoming", {"params": {"count": 0}}),
    "upcoming-count-huge": ("GET", "/upcoming", {"params": {"count": 10**30}}),
}


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"), OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys()
)
async def test_out_of_range_numbers_on_a_task_are_422_and_change_nothing(
    client: httpx.AsyncClient,
    raw: redis.asyncio.Redis,
    method: str,
    suffix: str,
    kwargs: dict[str, Any],
) -> None:
    """Negative, huge or fractional numbers are refused naming the field; the task is as it was."""
    task_id = await _create(client, "acct-numbers", interval=3600)
    response = await assert_refused(
        client, raw, method, f"/api/v1/tasks/{task_id}{suffix}", **kwargs
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": 1001},
        {"limit": 10**30},
        {"offset": -1},
        {"offset": 10**30},
        {"limit": "abc"},
        {"status": "*"},
    ],
    ids=str,
)
async def test_list_with_out_of_range_paging_is_422(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis, params: dict[str, Any]
) -> None:
    """limit outside 1..1000, offset outside 0..1e9 or an unknown status: 422 naming it."""
    await _create(client, "acct-paging")
    response = await assert_refused(client, raw, "GET", "/api/v1/tasks/", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in response.json()["error"]


HOSTILE_PATH_IDS = ["%00", "x*", "*", "a:b", "..", "%2e%2e", "y" * 10_000, "账号", "%F0%9F%99%82"]


@pytest.mark.parametrize("task_id", HOSTILE_PATH_IDS, ids=lambda x: x[:12])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/pause"), ("GET", "/runs")],
)
async def test_hostile_task_id_in_path_is_404_and_changes_nothing(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis, task_id: str, method: str, suffix: str
) -> None:
    """NUL, globs, colons, dot-dot, 10k chars, unicode as task_id: 404 (or 422), never more."""
    await _create(client, "acct-path")
    body = {"json": {"interval": 60}} if method == "PATCH" else {}
    response = await assert_refused(client, raw, method, f"/api/v1/tasks/{task_id}{suffix}", **body)
    assert response.status_code in (404, 422), response.text
