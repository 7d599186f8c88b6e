"""Specification tests for domain.models: the task record and its Redis hash encoding."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

import pytest

from api.models import task_fields
from taskdispatch.domain.models import (
    PIECE_BYTES,
    PIECE_MARK,
    RETIRED_FIELDS,
    Task,
    TaskStatus,
    outside_view,
    retired_fields,
    stale_fields,
)
from taskdispatch.domain.schedule import hour_window
from taskdispatch.domain.transfer import export_row
from taskdispatch.store.audit import task_view
from tests.support.tasks import task_record

CREATED_MS = 1_767_839_400_000  # 2026-01-08T10:30:00+08:00
TASK_ID = "550e8400-e29b-41d4-a716-446655440000"


def make_task(**overrides: Any) -> Task:
    values: dict[str, Any] = {
        "task_id": TASK_ID,
        "windows": hour_window((8, 22)),
        "created_ms": CREATED_MS,
        **overrides,
    }
    return task_record(**values)


FULL = make_task(
    status=TaskStatus.ERROR,
    windows=hour_window((22, 6)),
    weekdays=frozenset({1, 2, 3, 4, 5}),
    blackout=((date(2027, 2, 10), date(2027, 2, 17)),),
    jitter_s=300,
    max_runs=10,
    runs_done=4,
    misfire_policy="skip",
    misfire_grace_s=120,
    exact_ms=CREATED_MS + 3_600_000,
    end_ms=CREATED_MS + 86_400_000,
    end_text="2026-02-08",
    next_ms=CREATED_MS + 3_600_000,
    last_ms=CREATED_MS - 3_600_000,
    round_num=5,
    kwargs={"user_query": "开始运营", "emoji": "🚀", "nested": {"n": [1, 2.5, None, True]}},
    fence=7,
    failures=3,
    last_error="RuntimeError: 登录失败",
    started_ms=CREATED_MS - 3_500_000,
    worker="celery@host-1",
    run_id="5f0c2a9e",
    paused_until_ms=CREATED_MS + 7_200_000,
    pause_note="账号冷却",
)


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(make_task(), id="defaults"),
        pytest.param(FULL, id="every-field-set"),
        pytest.param(make_task(windows=hour_window((0, 24))), id="window-always"),
        pytest.param(make_task(windows=hour_window((20, 0))), id="window-until-midnight"),
        pytest.param(make_task(windows=((540, 690), (840, 1320))), id="two-windows"),
        pytest.param(make_task(next_ms=0, round_num=0, fence=0), id="zero-ints"),
        pytest.param(make_task(queue="dev-a", fence=9, queue_fence=8), id="own-queue"),
    ],
)
def test_task_hash_round_trip_returns_equal_task(task: Task) -> None:
    """from_hash(to_hash(task)) gives back an equal task."""
    assert Task.from_hash(task.to_hash(), task_id=TASK_ID) == task


def test_task_to_hash_writes_every_set_field_as_a_string() -> None:
    """Every field that holds something other than its default is a string field (long
    ones as pieces), so one HSET sets the record."""
    raw = FULL.to_hash()
    defaults = make_task()
    changed = {f.name for f in fields(Task) if getattr(FULL, f.name) != getattr(defaults, f.name)}
    assert {name.partition(PIECE_MARK)[0] for name in raw} == changed | {
        "account_id",
        "account_name",
        "task_type",
        "sys_type",
        "interval_s",
        "timezone",
        "created_ms",
    }
    assert all(isinstance(v, str) for v in raw.values())


@pytest.mark.parametrize(
    "name",
    [
        "end_ms",
        "end_text",
        "next_ms",
        "last_ms",
        "last_error",
        "started_ms",
        "worker",
        "run_id",
        "paused_until_ms",
        "pause_note",
        "queue",
    ],
)
def test_task_to_hash_none_is_left_out_and_read_back_as_none(name: str) -> None:
    """An unset optional field is not stored at all, and an absent field reads as None."""
    raw = make_task().to_hash()
    assert name not in raw
    assert getattr(Task.from_hash(raw, task_id=TASK_ID), name) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("round_num", 0),
        ("fence", 0),
        ("jitter_s", 0),
        ("misfire_policy", "run_once"),
        ("misfire_grace_s", 60),
        ("tags", ()),
        ("queue_fence", 0),
    ],
)
def test_task_to_hash_default_is_left_out_and_read_back_as_default(name: str, value: Any) -> None:
    """A field at its default is not stored; an absent one reads as that default."""
    raw = make_task(**{name: value}).to_hash()
    assert name not in raw
    assert getattr(Task.from_hash(raw, task_id=TASK_ID), name) == value


def test_task_to_hash_long_value_is_stored_in_pieces_of_64_bytes_at_most() -> None:
    """kwargs of 300 bytes: every stored value stays within Redis's default listpack limit,
    pieces never split a character, and the record reads back equal."""
    task = make_task(kwargs={"user_query": "开始运营" * 20, "n": 1}, last_error="错" * 100)
    raw = task.to_hash()
    assert max(len(v.encode()) for v in raw.values()) <= PIECE_BYTES
    assert f"kwargs{PIECE_MARK}1" in raw and f"last_error{PIECE_MARK}2" in raw
    assert Task.from_hash(raw, task_id=TASK_ID) == task


def test_stale_fields_names_what_the_new_record_no_longer_has() -> None:
    """A cleared field and the pieces a shorter value no longer needs are to be deleted."""
    old = make_task(last_error="x" * 200, pause_note="note").to_hash()
    new = make_task(last_error="short").to_hash()
    assert sorted(stale_fields(old, new)) == sorted(
        [
            "pause_note",
            *(n for n in old if n.startswith(f"last_error{PIECE_MARK}")),
        ]
    )


def test_retired_fields_named_only_when_the_stored_hash_holds_them() -> None:
    """A hash from an earlier release loses its task_id at its next write; a new one pays
    no delete for it."""
    raw = FULL.to_hash()
    assert retired_fields(raw) == []
    assert retired_fields({**raw, "task_id": FULL.task_id}) == list(RETIRED_FIELDS)


def test_task_to_hash_leaves_out_the_id_its_key_names() -> None:
    """The hash holds no task_id: from_hash takes it from the caller, who read the key."""
    raw = FULL.to_hash()
    assert "task_id" not in raw
    assert Task.from_hash(raw, task_id="other-id").task_id == "other-id"


def test_task_to_hash_updated_ms_equal_to_created_ms_is_left_out_and_read_back() -> None:
    """A task never updated stores no updated_ms; an absent one reads as created_ms."""
    raw = make_task(updated_ms=CREATED_MS).to_hash()
    assert "updated_ms" not in raw
    assert Task.from_hash(raw, task_id=TASK_ID).updated_ms == CREATED_MS


def test_task_to_hash_updated_ms_after_an_update_is_stored() -> None:
    """Once updated, updated_ms is stored and reads back as written."""
    task = make_task(updated_ms=CREATED_MS + 1)
    assert task.to_hash()["updated_ms"] == str(CREATED_MS + 1)
    assert Task.from_hash(task.to_hash(), task_id=TASK_ID) == task


@pytest.mark.parametrize("task", [make_task(), FULL], ids=["defaults", "every-field-set"])
def test_task_from_hash_of_a_hash_written_before_reads_the_same_task(task: Task) -> None:
    """A hash of the release before (with task_id, and updated_ms equal to created_ms)
    reads as the same task."""
    raw = {**task.to_hash(), "task_id": task.task_id, "updated_ms": str(task.created_ms)}
    assert Task.from_hash(raw, task_id=task.task_id) == task


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("windows", "1320-1800", id="windows"),
        pytest.param("weekdays", "12345", id="weekdays"),
        pytest.param("blackout", "2027-02-10..2027-02-17", id="blackout"),
        pytest.param("status", "error", id="status"),
        pytest.param("interval_s", "3600", id="interval"),
        pytest.param("fence", "7", id="fence"),
        pytest.param("next_ms", str(CREATED_MS + 3_600_000), id="next-ms"),
    ],
)
def test_task_to_hash_encodes_field_as_plain_text(name: str, expected: str) -> None:
    """Windows, statuses and integers are stored in a readable text form."""
    assert FULL.to_hash()[name] == expected


def test_task_to_hash_kwargs_is_compact_json_keeping_unicode() -> None:
    """kwargs is compact JSON with non-ASCII characters kept as is (not \\u escapes)."""
    raw = make_task(kwargs={"user_topic": "科技", "n": 1}).to_hash()
    assert raw["kwargs"] == '{"user_topic":"科技","n":1}'


def test_task_from_hash_parses_int_fields_as_int() -> None:
    """Integer fields come back as int, not str."""
    task = Task.from_hash(FULL.to_hash(), task_id=TASK_ID)
    for name in (
        "interval_s",
        "created_ms",
        "next_ms",
        "round_num",
        "fence",
        "failures",
        "paused_until_ms",
    ):
        assert type(getattr(task, name)) is int, name


def test_task_from_hash_status_is_task_status() -> None:
    """The status comes back as a TaskStatus member."""
    assert Task.from_hash(FULL.to_hash(), task_id=TASK_ID).status is TaskStatus.ERROR


def test_task_from_hash_accepts_bytes() -> None:
    """A hash read by a client without decode_responses (bytes keys and values) decodes."""
    raw = {k.encode(): v.encode() for k, v in FULL.to_hash().items()}
    assert Task.from_hash(raw, task_id=TASK_ID) == FULL


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("round_num", 0, id="round-num"),
        pytest.param("fence", 0, id="fence"),
        pytest.param("failures", 0, id="failures"),
        pytest.param("next_ms", None, id="next-ms"),
        pytest.param("kwargs", {}, id="kwargs"),
        pytest.param("worker", None, id="worker"),
    ],
)
def test_task_from_hash_missing_field_gets_default(name: str, expected: object) -> None:
    """A field absent from the hash (record written by an older version) gets its default."""
    raw = {k: v for k, v in FULL.to_hash().items() if k.partition(PIECE_MARK)[0] != name}
    assert getattr(Task.from_hash(raw, task_id=TASK_ID), name) == expected


def test_task_evolve_returns_changed_copy() -> None:
    """evolve() returns a new task with the changes and leaves the original untouched."""
    task = make_task()
    changed = task.evolve(status=TaskStatus.PAUSED, fence=1)
    assert (changed.status, changed.fence) == (TaskStatus.PAUSED, 1)
    assert (task.status, task.fence) == (TaskStatus.PENDING, 0)


def test_task_from_hash_of_a_record_written_before_windows_reads_its_hours() -> None:
    """A hash with the old `window` field ("8,22") reads as the same whole-hour window."""
    raw = make_task().to_hash()
    del raw["windows"]
    raw["window"] = "8,22"
    assert Task.from_hash(raw, task_id=TASK_ID).windows == ((480, 1320),)
    assert Task.from_hash(raw, task_id=TASK_ID).hour_window == (8, 22)


def test_outside_view_is_the_one_rendering_api_export_and_audit_show() -> None:
    """The API's task, the export row and the audit's view carry outside_view's values."""
    task = make_task(
        status=TaskStatus.PAUSED,
        windows=((480, 750), (900, 1320)),
        weekdays=frozenset({5, 1, 3}),
        blackout=((date(2027, 2, 10), date(2027, 2, 17)), (date(2027, 5, 1), date(2027, 5, 1))),
        tags=("team:a", "vip"),
        next_ms=CREATED_MS + 3_600_000,
        paused_until_ms=CREATED_MS + 7_200_000,
        pause_note="维护",
        kwargs={"user_query": "开始运营", "n": 3},
    )
    view = outside_view(task)
    api = task_fields(task, detail=True)
    assert {name: api[name] for name in view} == view
    row = export_row(task)
    renamed = {"xhs_account_id": "account_id", "xhs_account_name": "account_name"}
    shown = {k: v for k, v in row.items() if k not in ("paused", "kwargs", "user_query")}
    assert shown == {k: view[renamed.get(k, k)] for k in shown}
    audited = {k: v for k, v in task_view(task).items() if k in view and k != "kwargs"}
    assert audited == {k: view[k] for k in audited}
    assert {"status", "next_execution_time", "paused_until", "windows"} <= set(audited)
