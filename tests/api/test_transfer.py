"""POST /api/v1/tasks/import and GET /api/v1/tasks/export: definitions in and out."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from tests.support.api import CreateTask, create_body

IMPORT = "/api/v1/tasks/import"
EXPORT = "/api/v1/tasks/export"
JSONL = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


async def _export(client: httpx.AsyncClient, fmt: str = "jsonl", **params: str) -> str:
    response = await client.get(EXPORT, params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    return response.text


async def test_import_jsonl_of_1000_lines_with_10_bad_creates_990_and_reports_each_line(
    client: httpx.AsyncClient,
) -> None:
    """Every valid row is created; each invalid one is reported with its line (from 1)."""
    rows: list[Any] = [create_body(f"acct-{i:04d}") for i in range(1000)]
    bad_lines = [7, 100, 101, 250, 333, 500, 640, 777, 901, 1000]
    breakers = [
        {"interval": 0},
        {"valid_time_range": [25, 3]},
        {"intervall": 60},
        {"sys_type": ""},
        {"task_end_time": "2001-01-01"},
        {"weekdays": []},
        {"jitter_s": 999999},
        {"tags": ["x"] * 21},
        {"task_type": "nope"},
        {"interval": "60"},
    ]
    for line, breaker in zip(bad_lines, breakers, strict=True):
        rows[line - 1] = {**rows[line - 1], **breaker}
    response = await client.post(IMPORT, content=_jsonl(rows), headers=JSONL)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["updated"]) == (990, 0)
    assert [e["line"] for e in body["errors"]] == bad_lines
    assert all(e["error"] for e in body["errors"])
    assert (await client.get("/api/v1/tasks/", params={"limit": 1})).json()["total"] == 990


async def test_import_counts_lines_from_one_and_skips_blank_lines(
    client: httpx.AsyncClient,
) -> None:
    """Blank lines are not rows, but they count: the error names the file's own line."""
    text = "\n" + json.dumps(create_body("a")) + "\n\n{not json\n"
    body = (await client.post(IMPORT, content=text, headers=JSONL)).json()
    assert body["created"] == 1
    assert [e["line"] for e in body["errors"]] == [4]
    assert body["errors"][0]["error"].startswith("不是有效的 JSON")


async def test_export_then_import_on_an_empty_store_round_trips_identically(
    client: httpx.AsyncClient, create_task: CreateTask, redis_url: str
) -> None:
    """Every definition field, calendars, tags, run parameters and pause state included."""
    await create_task("plain")
    await create_task(
        "rich",
        windows=["09:00-11:30", "14:00-22:00"],
        valid_time_range=None,
        weekdays=[1, 2, 3, 4, 5],
        blackout_dates=["2099-02-10..2099-02-17", "2099-05-01"],
        jitter_s=120,
        max_runs=10,
        misfire_policy="skip",
        misfire_grace_s=30,
        tags=["device:mac-01", "team:a"],
        kwargs={"depth": 3, "nested": {"k": [1, 2]}},
        user_query="开始运营",
        task_end_time="2099-12-31",
        timezone="Europe/Berlin",
    )
    paused = await create_task("paused")
    await client.post(
        f"/api/v1/tasks/{paused['task_id']}/pause",
        json={"until": "2099-01-01T08:00:00", "note": "账号申诉中"},
    )
    for fmt in ("jsonl", "csv"):
        exported = await _export(client, fmt)
        for task in (await client.get("/api/v1/tasks/")).json()["tasks"]:
            await client.delete(f"/api/v1/tasks/{task['task_id']}")
        headers = JSONL if fmt == "jsonl" else CSV
        result = (await client.post(IMPORT, content=exported, headers=headers)).json()
        assert (result["created"], result["errors"]) == (3, []), fmt
        assert await _export(client, fmt) == exported, fmt
    listed = (await client.get("/api/v1/tasks/", params={"status": "paused"})).json()["tasks"]
    assert [(t["account_id"], t["pause_note"]) for t in listed] == [("paused", "账号申诉中")]


async def test_export_csv_has_one_header_and_a_row_per_task(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """The CSV names every column once; each task is one row readable by any CSV reader."""
    await create_task("a", tags=["x", "y"])
    await create_task("b")
    rows = list(csv.DictReader(io.StringIO(await _export(client, "csv"))))
    assert [r["xhs_account_id"] for r in rows] == ["a", "b"]
    assert json.loads(rows[0]["tags"]) == ["x", "y"]
    assert rows[1]["tags"] == ""


async def test_export_filters_like_the_list(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Filters apply: only tasks carrying the tag are exported."""
    await create_task("a", tags=["keep"])
    await create_task("b")
    lines = (await _export(client, tag="keep")).splitlines()
    assert [json.loads(x)["xhs_account_id"] for x in lines] == ["a"]


async def test_export_with_a_bad_filter_is_422_before_any_row(client: httpx.AsyncClient) -> None:
    """A filter the list would refuse is refused here too, as a whole answer."""
    response = await client.get(EXPORT, params={"status": "sleepy"})
    assert response.status_code == 422


async def test_import_csv_reads_text_cells_as_is_and_others_as_json(
    client: httpx.AsyncClient,
) -> None:
    """interval 3600, a JSON list of tags and a plain-text name make one valid task."""
    text = (
        "sys_type,xhs_account_id,xhs_account_name,interval,valid_time_range,tags\n"
        'mac_intel,csv-1,"名字, 带逗号",3600,"[0, 24]","[""t1""]"\n'
    )
    body = (await client.post(IMPORT, content=text, headers=CSV)).json()
    assert (body["created"], body["errors"]) == (1, [])
    task = (await client.get("/api/v1/accounts/csv-1/tasks")).json()["tasks"][0]
    assert (task["account_name"], task["tags"]) == ("名字, 带逗号", ["t1"])


async def test_import_csv_with_an_unknown_column_is_422_naming_it(
    client: httpx.AsyncClient,
) -> None:
    """A header column that is no field would fail every row: the whole file is refused."""
    text = "sys_type,xhs_account_id,xhs_account_name,colour\nmac_intel,a,n,red\n"
    response = await client.post(IMPORT, content=text, headers=CSV)
    assert response.status_code == 422
    assert "colour" in response.json()["error"]


async def test_import_existing_account_is_an_error_by_default(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """One task per account: a row for an account that has one is reported, not applied."""
    await create_task("taken", interval=3600)
    row = create_body("taken", interval=7200)
    body = (await client.post(IMPORT, content=_jsonl([row]), headers=JSONL)).json()
    assert body["created"] == 0
    assert "已存在任务" in body["errors"][0]["error"]


async def test_import_existing_account_with_on_conflict_update_patches_its_task(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """on_conflict=update: the row's fields are applied to the existing task."""
    info = await create_task("taken", interval=3600)
    row = create_body("taken", interval=7200, tags=["new"])
    response = await client.post(
        IMPORT, content=_jsonl([row]), headers=JSONL, params={"on_conflict": "update"}
    )
    assert (response.json()["created"], response.json()["updated"]) == (0, 1)
    task = (await client.get(f"/api/v1/tasks/{info['task_id']}")).json()
    assert (task["interval"], task["tags"]) == (7200, ["new"])


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
async def test_import_other_content_types_are_415(
    client: httpx.AsyncClient, content_type: str
) -> None:
    """Only JSON Lines and CSV: anything else says which two are accepted."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(IMPORT, content="x", headers=headers)
    assert response.status_code == 415
    assert "application/x-ndjson" in response.json()["error"]


async def test_import_records_each_created_task_in_the_audit_as_import(
    client: httpx.AsyncClient,
) -> None:
    """Imported tasks are audited with action import."""
    body = (await client.post(IMPORT, content=_jsonl([create_body("a")]), headers=JSONL)).json()
    assert body["created"] == 1
    trail = (await client.get("/api/v1/audit")).json()["entries"]
    assert [(e["action"], e["account_id"]) for e in trail] == [("import", "a")]
