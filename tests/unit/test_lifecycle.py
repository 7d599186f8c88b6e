"""Specification of taskdispatch.domain.lifecycle: every state transition of a task, API-side
and round-side, as pure functions of (task, event, now).

Every instant is built from an explicit aware datetime; nothing reads the wall clock. Unless a
test says otherwise it is 2026-01-08 10:00 in Asia/Shanghai and the window is [8, 22].
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.domain import lifecycle, validation
from taskdispatch.domain.bodies import TaskChange, TaskSpec
from taskdispatch.domain.exceptions import InvalidTaskError, TaskConflictError, UnknownTaskTypeError
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.domain.schedule import hour_window

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TASK_TYPES = frozenset({"xhs_type", "noop"})
DAY_S = 86_400

PENDING = TaskStatus.PENDING
RUNNING = TaskStatus.RUNNING
PAUSED = TaskStatus.PAUSED
COMPLETED = TaskStatus.COMPLETED
ERROR = TaskStatus.ERROR


def at(day: int, hour: int, minute: int = 0, *, month: int = 1, tz: ZoneInfo = SHANGHAI) -> int:
    """Epoch ms of 2026-<month>-<day> <hour>:<minute> local time in `tz`."""
    return (datetime(2026, month, day, hour, minute, tzinfo=tz) - EPOCH) // timedelta(
        milliseconds=1
    )


NOW = at(8, 10)


def create(*, now_ms: int = NOW, default_timezone: str = "Asia/Shanghai", **fields: Any) -> Task:
    """lifecycle.created with the three required fields filled in."""
    body: dict[str, Any] = {
        "sys_type": "mac_intel",
        "xhs_account_id": "account_1",
        "xhs_account_name": "账号1",
        **fields,
    }
    return lifecycle.created(
        TaskSpec.model_validate(body),
        task_id="task-1",
        now_ms=now_ms,
        default_timezone=default_timezone,
        task_types=TASK_TYPES,
    )


def stored(**overrides: Any) -> Task:
    """A stored task: last round 09:40, next 10:40, fence 5."""
    values: dict[str, Any] = {
        "task_id": "task-1",
        "account_id": "account_1",
        "account_name": "账号1",
        "task_type": "xhs_type",
        "sys_type": "mac_intel",
        "status": PENDING,
        "interval_s": 3600,
        "windows": hour_window((8, 22)),
        "timezone": "Asia/Shanghai",
        "created_ms": at(7, 9),
        "updated_ms": at(8, 9, 40),
        "last_ms": at(8, 9, 40),
        "next_ms": at(8, 10, 40),
        "round_num": 3,
        "fence": 5,
        "kwargs": {"user_query": "开始运营"},
    }
    values.update(overrides)
    return Task(**values)


def ended_yesterday(**overrides: Any) -> Task:
    """A task completed because its end (2026-01-07, inclusive) has passed."""
    return stored(
        status=COMPLETED, next_ms=None, end_text="2026-01-07", end_ms=at(8, 0) - 1, **overrides
    )


# --------------------------------------------------------------------------- new_task


def test_new_task_without_optional_fields_uses_defaults() -> None:
    """Omitted fields default to interval 3600, window [8, 22], xhs_type, the default zone."""
    task = create()
    assert (task.interval_s, task.hour_window, task.task_type, task.timezone) == (
        3600,
        (8, 22),
        "xhs_type",
        "Asia/Shanghai",
    )


def test_new_task_is_pending_with_fresh_counters() -> None:
    """A new task is pending, stamped now, with no rounds, no end and no failures."""
    task = create()
    assert task.status is PENDING
    assert (task.created_ms, task.updated_ms) == (NOW, NOW)
    assert (task.round_num, task.fence, task.failures) == (0, 0, 0)
    assert (task.last_ms, task.end_ms, task.end_text, task.last_error) == (None, None, None, None)
    assert task.kwargs == {}


def test_new_task_copies_identity_fields() -> None:
    """Account id, name, sys_type and the given task id are stored as given."""
    task = create()
    assert (task.task_id, task.account_id, task.account_name, task.sys_type) == (
        "task-1",
        "account_1",
        "账号1",
        "mac_intel",
    )


def test_new_task_default_timezone_comes_from_caller() -> None:
    """Without a timezone field the task takes the configured default zone."""
    assert create(default_timezone="Europe/Berlin").timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("now_ms", "fields", "expected"),
    [
        pytest.param(NOW, {}, at(8, 11), id="in-window"),
        pytest.param(at(8, 21, 30), {}, at(9, 8), id="past-window-end-next-morning"),
        pytest.param(at(8, 2), {}, at(8, 8), id="before-window-start-same-morning"),
        pytest.param(NOW, {"interval": DAY_S}, at(9, 10), id="daily"),
        pytest.param(NOW, {"interval": 60}, at(8, 10, 1), id="one-minute"),
        pytest.param(NOW, {"valid_time_range": [22, 6]}, at(8, 22), id="night-window"),
        pytest.param(
            at(8, 23, 30), {"valid_time_range": [22, 6]}, at(9, 0, 30), id="night-past-midnight"
        ),
        pytest.param(at(8, 23, 30), {"valid_time_range": [20, 0]}, at(9, 20), id="until-midnight"),
        pytest.param(at(8, 23, 30), {"valid_time_range": [0, 24]}, at(9, 0, 30), id="always"),
        pytest.param(
            NOW, {"timezone": "Europe/Berlin"}, at(8, 8, tz=BERLIN), id="window-in-task-zone"
        ),
    ],
)
def test_new_task_first_run_is_created_plus_interval_moved_into_window(
    now_ms: int, fields: dict[str, Any], expected: int
) -> None:
    """The first run is created + interval, moved forward to the next window opening."""
    assert create(now_ms=now_ms, **fields).next_ms == expected


@pytest.mark.parametrize(
    ("start_at", "expected"),
    [
        pytest.param("2026-01-09T09:15:00", at(9, 9, 15), id="naive-read-in-task-zone"),
        pytest.param("2026-01-09T01:00:00+00:00", at(9, 9), id="with-offset"),
        pytest.param("2026-01-09T01:00:00Z", at(9, 9), id="zulu"),
        pytest.param("2026-01-09T23:00:00", at(10, 8), id="outside-window-moved"),
        pytest.param("2026-01-01T12:00:00", NOW, id="past-means-now"),
    ],
)
def test_new_task_start_at_sets_first_run(start_at: str, expected: int) -> None:
    """start_at replaces created + interval (never before now, moved into the window)."""
    assert create(start_at=start_at).next_ms == expected


def test_new_task_start_at_unparsable_raises_naming_start_at() -> None:
    """A start_at that is not an ISO datetime is rejected naming the field."""
    with pytest.raises(InvalidTaskError) as info:
        create(start_at="tomorrow morning")
    assert info.value.field == "start_at"


@pytest.mark.parametrize(
    ("end", "expected_ms"),
    [
        pytest.param("2026-02-08", at(9, 0, month=2) - 1, id="date-through-end-of-day"),
        pytest.param("2026-01-08", at(9, 0) - 1, id="today-is-not-past"),
        pytest.param("2026-02-08T18:00:00", at(8, 18, month=2), id="naive-datetime-task-zone"),
        pytest.param(
            "2026-02-08T18:00:00+01:00", at(8, 18, month=2, tz=BERLIN), id="datetime-offset"
        ),
    ],
)
def test_new_task_end_is_stored_as_inclusive_ms_and_text(end: str, expected_ms: int) -> None:
    """task_end_time is kept as the inclusive end instant and as the text the user gave."""
    task = create(task_end_time=end)
    assert (task.end_ms, task.end_text) == (expected_ms, end)


@pytest.mark.parametrize(
    "end",
    [
        pytest.param("2026-01-07", id="past-date"),
        pytest.param("2026-01-08T09:59:59", id="past-datetime"),
        pytest.param("2026-01-08T10:30:00", id="before-first-run"),
        pytest.param("next week", id="unparsable"),
    ],
)
def test_new_task_end_unusable_raises_naming_task_end_time(end: str) -> None:
    """An end in the past, before the first run, or unparsable names task_end_time."""
    with pytest.raises(InvalidTaskError) as info:
        create(task_end_time=end)
    assert info.value.field == "task_end_time"


def test_new_task_unknown_task_type_raises_with_known_types() -> None:
    """An unregistered task_type raises UnknownTaskTypeError listing the registered ones."""
    with pytest.raises(UnknownTaskTypeError) as info:
        create(task_type="douyin_type")
    assert info.value.field == "task_type"
    assert info.value.known == ["noop", "xhs_type"]
    assert "noop, xhs_type" in str(info.value)


def test_new_task_registered_task_type_is_kept() -> None:
    """Any registered task_type is accepted."""
    assert create(task_type="noop").task_type == "noop"


def test_new_task_longest_interval_is_accepted() -> None:
    """The interval may be as long as LIMITS['interval_s_max']."""
    assert create(interval=validation.LIMITS["interval_s_max"]).interval_s == 366 * DAY_S


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"interval": 0}, "interval", id="interval-zero"),
        pytest.param({"interval": -60}, "interval", id="interval-negative"),
        pytest.param({"interval": 366 * DAY_S + 1}, "interval", id="interval-too-long"),
        pytest.param({"valid_time_range": [8, 8]}, "valid_time_range", id="window-empty"),
        pytest.param({"valid_time_range": [24, 6]}, "valid_time_range", id="window-start-24"),
        pytest.param({"valid_time_range": [8, 25]}, "valid_time_range", id="window-end-25"),
        pytest.param({"valid_time_range": [8]}, "valid_time_range", id="window-one-value"),
        pytest.param({"valid_time_range": []}, "valid_time_range", id="window-no-values"),
        pytest.param({"timezone": "Mars/Olympus"}, "timezone", id="timezone-unknown"),
        pytest.param({"xhs_account_id": "a b"}, "xhs_account_id", id="account-id-space"),
        pytest.param({"sys_type": "x" * 129}, "sys_type", id="sys-type-too-long"),
        pytest.param({"xhs_account_name": "x" * 513}, "xhs_account_name", id="name-too-long"),
        pytest.param({"xhs_account_name": "a\x00b"}, "xhs_account_name", id="name-control"),
    ],
)
def test_new_task_invalid_field_raises_naming_it(fields: dict[str, Any], field: str) -> None:
    """Each invalid create field raises InvalidTaskError whose .field names it."""
    with pytest.raises(InvalidTaskError) as info:
        create(**fields)
    assert info.value.field == field


# --------------------------------------------------------------------------- check_identifier


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 129, id="too-long"),
        pytest.param("a b", id="space"),
        pytest.param(" a", id="leading-space"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\n", id="newline"),
        pytest.param("a\u00a0b", id="no-break-space"),
        pytest.param("a\u3000b", id="ideographic-space"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\x7fb", id="del"),
        pytest.param("a\u200bb", id="zero-width-space"),
        pytest.param("a\u202eb", id="bidi-override"),
        pytest.param("a/b", id="slash"),
        pytest.param("a?b", id="question-mark"),
        pytest.param("a#b", id="hash"),
        pytest.param("a%2Fb", id="percent"),
        pytest.param("a\\b", id="backslash"),
    ],
)
def test_check_identifier_bad_value_raises_naming_field(value: str) -> None:
    """Empty, too long, whitespace, control or URL-reserved characters are rejected."""
    with pytest.raises(InvalidTaskError) as info:
        validation.check_identifier(value, field="xhs_account_id")
    assert info.value.field == "xhs_account_id"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a", id="one-char"),
        pytest.param("x" * 128, id="max-length"),
        pytest.param("acc:1", id="colon"),
        pytest.param("acc*", id="star"),
        pytest.param("账号_1", id="cjk"),
        pytest.param("niño-é.1", id="accented"),
        pytest.param("user@example.com", id="email"),
    ],
)
def test_check_identifier_printable_value_is_returned(value: str) -> None:
    """Printable ids up to 128 characters, including ':', '*' and unicode, are accepted."""
    assert validation.check_identifier(value, field="xhs_account_id") == value


# --------------------------------------------------------------------------- run parameters


def test_new_task_run_params_collect_user_fields() -> None:
    """The four user_* body fields become the task's run parameters (kwargs)."""
    fields: dict[str, Any] = {
        "user_query": "开始运营",
        "user_topic": "科技",
        "user_style": "专业",
        "user_target_audience": "技术爱好者",
    }
    assert create(**fields).kwargs == fields


def test_new_task_run_params_merge_kwargs_with_user_fields_winning() -> None:
    """Free-form kwargs are kept; a user_* field overrides the same key in kwargs."""
    task = create(kwargs={"lang": "zh", "user_topic": "旧"}, user_topic="科技")
    assert task.kwargs == {"lang": "zh", "user_topic": "科技"}


def test_new_task_run_params_skip_null_user_fields() -> None:
    """A user_* field given as null is left out of the run parameters."""
    assert create(user_query=None, user_topic="科技").kwargs == {"user_topic": "科技"}


def test_new_task_run_params_exclude_other_body_fields() -> None:
    """Fields other than user_* and kwargs (sys_type, interval...) are not run parameters."""
    assert create(interval=60, valid_time_range=[0, 24]).kwargs == {}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"user_query": "x" * 513}, "user_query", id="too-long"),
        pytest.param({"user_topic": "a\x1bb"}, "user_topic", id="control-char"),
    ],
)
def test_new_task_run_params_bad_user_field_raises_naming_it(
    fields: dict[str, Any], field: str
) -> None:
    """A user_* field over 512 characters or holding control characters is rejected."""
    with pytest.raises(InvalidTaskError) as info:
        create(**fields)
    assert info.value.field == field


def test_new_task_run_params_allow_tab_and_newline() -> None:
    """Multi-line user text (tabs, newlines) is accepted."""
    assert create(user_query="第一行\n\t第二行").kwargs == {"user_query": "第一行\n\t第二行"}


# `{"blob": ""}` is 12 bytes of JSON; the blob fills the rest up to the 64 KiB limit.
_AT_LIMIT = "x" * (validation.LIMITS["kwargs_bytes"] - 12)


@pytest.mark.parametrize(
    ("blob", "ok"),
    [
        pytest.param(_AT_LIMIT, True, id="exactly-at-limit"),
        pytest.param(_AT_LIMIT + "x", False, id="one-byte-over"),
        pytest.param("字" * 22_000, False, id="utf8-bytes-counted-not-chars"),
    ],
)
def test_new_task_run_params_size_limit_is_utf8_bytes(blob: str, ok: bool) -> None:
    """Run parameters may take up to 64 KiB of UTF-8 JSON; more names the kwargs field."""
    if ok:
        assert create(kwargs={"blob": blob}).kwargs == {"blob": blob}
    else:
        with pytest.raises(InvalidTaskError) as info:
            create(kwargs={"blob": blob})
        assert info.value.field == "kwargs"


# --------------------------------------------------------------------------- updated


def test_updated_non_timing_change_keeps_next_and_fence() -> None:
    """Renaming the account changes neither the next run nor the fence (no re-dispatch)."""
    new = lifecycle.updated(
        stored(), TaskChange.model_validate({"account_name": "新名字"}), now_ms=NOW
    )
    assert new.account_name == "新名字"
    assert (new.next_ms, new.fence, new.status) == (at(8, 10, 40), 5, PENDING)
    assert new.updated_ms == NOW


def test_updated_empty_patch_changes_only_updated_ms() -> None:
    """An empty PATCH leaves the task as it was apart from updated_ms."""
    task = stored()
    assert lifecycle.updated(task, TaskChange.model_validate({}), now_ms=NOW) == task.evolve(
        updated_ms=NOW
    )


@pytest.mark.parametrize(
    ("changes", "expected_next"),
    [
        pytest.param({"interval": 1800}, at(8, 10, 10), id="shorter-interval-from-last-run"),
        pytest.param({"interval": 600}, NOW, id="missed-slot-runs-now"),
        pytest.param({"interval": 4 * 3600}, at(8, 13, 40), id="longer-interval-from-last-run"),
        pytest.param({"interval": 14 * 3600}, at(9, 8), id="interval-lands-outside-window"),
        pytest.param({"valid_time_range": [12, 18]}, at(8, 12), id="window-moves-next-forward"),
        pytest.param({"valid_time_range": [8, 11]}, at(8, 10, 40), id="window-keeps-next-inside"),
        pytest.param({"valid_time_range": [22, 6]}, at(8, 22), id="night-window"),
        pytest.param({"timezone": "Europe/Berlin"}, at(8, 8, tz=BERLIN), id="window-in-new-zone"),
    ],
)
def test_updated_timing_change_recomputes_next_and_bumps_fence(
    changes: dict[str, Any], expected_next: int
) -> None:
    """An interval change counts from the last run; a window/zone change moves next into it."""
    new = lifecycle.updated(stored(), TaskChange.model_validate(changes), now_ms=NOW)
    assert (new.status, new.next_ms, new.fence) == (PENDING, expected_next, 6)


def test_updated_interval_change_without_rounds_counts_from_creation() -> None:
    """With no round yet, a new interval counts from created_ms."""
    task = stored(created_ms=at(8, 9, 45), last_ms=None, round_num=0)
    assert lifecycle.updated(
        task, TaskChange.model_validate({"interval": 1800}), now_ms=NOW
    ).next_ms == at(8, 10, 15)


def test_updated_running_task_keeps_next_and_fence() -> None:
    """While a round runs the new settings are stored; the worker computes next at round end."""
    task = stored(status=RUNNING)
    new = lifecycle.updated(
        task, TaskChange.model_validate({"interval": 600, "valid_time_range": [12, 18]}), now_ms=NOW
    )
    assert (new.interval_s, new.hour_window) == (600, (12, 18))
    assert (new.status, new.next_ms, new.fence) == (RUNNING, task.next_ms, task.fence)


def test_updated_paused_task_stays_paused_with_next_moved() -> None:
    """A timing change on a paused task recomputes next but does not resume it."""
    new = lifecycle.updated(
        stored(status=PAUSED), TaskChange.model_validate({"valid_time_range": [12, 18]}), now_ms=NOW
    )
    assert (new.status, new.next_ms) == (PAUSED, at(8, 12))


def test_updated_error_task_keeps_status_and_next() -> None:
    """A timing change on an error task is stored; resume schedules it."""
    task = stored(status=ERROR, failures=3)
    new = lifecycle.updated(task, TaskChange.model_validate({"interval": 600}), now_ms=NOW)
    assert new.interval_s == 600
    assert (new.status, new.next_ms, new.fence) == (ERROR, task.next_ms, task.fence)


@pytest.mark.parametrize(
    ("end", "expected_end_ms"),
    [
        pytest.param("2026-02-08", at(9, 0, month=2) - 1, id="later-end"),
        pytest.param(None, None, id="end-removed"),
    ],
)
def test_updated_completed_task_revived_by_later_end(
    end: str | None, expected_end_ms: int | None
) -> None:
    """A completed task given a later (or no) end becomes pending with next now, in window."""
    new = lifecycle.updated(
        ended_yesterday(), TaskChange.model_validate({"task_end_time": end}), now_ms=NOW
    )
    assert (new.status, new.next_ms, new.end_ms, new.end_text) == (
        PENDING,
        NOW,
        expected_end_ms,
        end,
    )
    assert new.fence == 6


def test_updated_completed_task_window_change_stays_completed() -> None:
    """A timing change that leaves the end in the past keeps the task completed."""
    new = lifecycle.updated(
        ended_yesterday(), TaskChange.model_validate({"valid_time_range": [0, 24]}), now_ms=NOW
    )
    assert (new.status, new.next_ms, new.hour_window) == (COMPLETED, None, (0, 24))


def test_updated_end_before_next_run_completes_task() -> None:
    """Moving the end before the next run completes the task and takes it off the schedule."""
    new = lifecycle.updated(
        stored(), TaskChange.model_validate({"task_end_time": "2026-01-08T10:30:00"}), now_ms=NOW
    )
    assert (new.status, new.next_ms) == (COMPLETED, None)


def test_updated_timezone_change_rereads_date_end_in_new_zone() -> None:
    """A date end means the end of that day in the task's zone, so it follows a zone change."""
    task = stored(end_text="2026-02-08", end_ms=at(9, 0, month=2) - 1)
    new = lifecycle.updated(task, TaskChange.model_validate({"timezone": "UTC"}), now_ms=NOW)
    assert new.end_ms == at(9, 0, month=2, tz=ZoneInfo("UTC")) - 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"task_end_time": "2026-01-07"}, "task_end_time", id="end-in-past"),
        pytest.param({"interval": 0}, "interval", id="interval-zero"),
        pytest.param({"valid_time_range": [5, 5]}, "valid_time_range", id="window-empty"),
        pytest.param({"timezone": "Nowhere/City"}, "timezone", id="timezone-unknown"),
        pytest.param({"account_name": "a\x00"}, "account_name", id="name-control-char"),
        pytest.param({"user_style": "x" * 513}, "user_style", id="user-field-too-long"),
    ],
)
def test_updated_invalid_change_raises_naming_field(changes: dict[str, Any], field: str) -> None:
    """Each invalid PATCH field raises InvalidTaskError whose .field names it."""
    with pytest.raises(InvalidTaskError) as info:
        lifecycle.updated(stored(), TaskChange.model_validate(changes), now_ms=NOW)
    assert info.value.field == field


def test_updated_run_params_merge_into_existing() -> None:
    """PATCH kwargs and user_* fields merge into the stored run parameters."""
    task = stored(kwargs={"user_query": "开始运营", "extra": 1})
    new = lifecycle.updated(
        task, TaskChange.model_validate({"user_topic": "科技", "kwargs": {"extra": 2}}), now_ms=NOW
    )
    assert new.kwargs == {"user_query": "开始运营", "extra": 2, "user_topic": "科技"}


def test_updated_null_user_field_removes_it() -> None:
    """A user_* field set to null in a PATCH is removed from the run parameters."""
    assert (
        lifecycle.updated(
            stored(), TaskChange.model_validate({"user_query": None}), now_ms=NOW
        ).kwargs
        == {}
    )


# --------------------------------------------------------------------------- paused


@pytest.mark.parametrize("status", [PENDING, RUNNING], ids=str)
def test_paused_active_task_becomes_paused_with_fence_bumped(status: TaskStatus) -> None:
    """Pending and running tasks pause; the fence bump makes an in-flight message stale."""
    new = lifecycle.paused(stored(status=status), now_ms=NOW)
    assert (new.status, new.fence, new.updated_ms) == (PAUSED, 6, NOW)


def test_paused_task_keeps_next_run() -> None:
    """Pause keeps next_ms so that a resume before it can keep the slot."""
    assert lifecycle.paused(stored(), now_ms=NOW).next_ms == at(8, 10, 40)


@pytest.mark.parametrize("status", [PAUSED, COMPLETED, ERROR], ids=str)
def test_paused_inactive_task_raises_conflict(status: TaskStatus) -> None:
    """Pausing a paused, completed or error task is a 409 naming the current status."""
    with pytest.raises(TaskConflictError, match=f"任务状态为 {status.value}"):
        lifecycle.paused(stored(status=status), now_ms=NOW)


def test_paused_without_until_has_no_auto_resume() -> None:
    """A plain pause lasts until resumed by hand."""
    new = lifecycle.paused(stored(), now_ms=NOW)
    assert (new.paused_until_ms, new.pause_note) == (None, None)


def test_paused_with_until_and_note_stores_them() -> None:
    """Pause may carry a future instant to resume by itself and a note."""
    new = lifecycle.paused(stored(), now_ms=NOW, until_ms=at(9, 9), note="账号冷却")
    assert (new.status, new.paused_until_ms, new.pause_note) == (PAUSED, at(9, 9), "账号冷却")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"until_ms": NOW}, "until", id="until-now"),
        pytest.param({"until_ms": NOW - 1}, "until", id="until-past"),
        pytest.param({"note": "a\x00b"}, "note", id="note-control-char"),
        pytest.param({"note": "x" * 513}, "note", id="note-too-long"),
    ],
)
def test_paused_bad_until_or_note_raises_naming_field(kwargs: dict[str, Any], field: str) -> None:
    """An until not in the future, or a note that is not clean text, names the field."""
    with pytest.raises(InvalidTaskError) as info:
        lifecycle.paused(stored(), now_ms=NOW, **kwargs)
    assert info.value.field == field


# --------------------------------------------------------------------------- resumed


@pytest.mark.parametrize(
    ("next_ms", "now_ms", "expected"),
    [
        pytest.param(at(8, 10, 40), NOW, at(8, 10, 40), id="future-next-kept"),
        pytest.param(at(8, 9), NOW, NOW, id="past-next-runs-now"),
        pytest.param(at(8, 21), at(8, 23), at(9, 8), id="past-next-outside-window"),
        pytest.param(None, NOW, NOW, id="no-next-runs-now"),
    ],
)
def test_resumed_paused_task_schedules_next(
    next_ms: int | None, now_ms: int, expected: int
) -> None:
    """Resume keeps a future next run, otherwise schedules now (moved into the window)."""
    new = lifecycle.resumed(stored(status=PAUSED, next_ms=next_ms), now_ms=now_ms)
    assert (new.status, new.next_ms, new.fence, new.updated_ms) == (PENDING, expected, 6, now_ms)


def test_resumed_error_task_resets_failures() -> None:
    """Resuming an error task makes it pending again with the failure count reset."""
    task = stored(status=ERROR, failures=3, last_error="boom", next_ms=at(8, 9))
    new = lifecycle.resumed(task, now_ms=NOW)
    assert (new.status, new.failures, new.next_ms) == (PENDING, 0, NOW)


def test_resumed_clears_auto_resume_and_note() -> None:
    """Resume (by hand or by its until) clears paused_until_ms and the pause note."""
    task = stored(status=PAUSED, paused_until_ms=at(9, 9), pause_note="账号冷却")
    new = lifecycle.resumed(task, now_ms=NOW)
    assert (new.paused_until_ms, new.pause_note) == (None, None)


@pytest.mark.parametrize("status", [PAUSED, ERROR], ids=str)
def test_resumed_task_past_its_end_becomes_completed(status: TaskStatus) -> None:
    """Resuming a task whose end has passed completes it instead of scheduling it."""
    task = stored(status=status, end_text="2026-01-08T09:00:00", end_ms=at(8, 9))
    new = lifecycle.resumed(task, now_ms=NOW)
    assert (new.status, new.next_ms) == (COMPLETED, None)


@pytest.mark.parametrize("status", [PENDING, RUNNING, COMPLETED], ids=str)
def test_resumed_active_or_completed_task_raises_conflict(status: TaskStatus) -> None:
    """Only paused and error tasks can be resumed; others are a 409 naming the status."""
    with pytest.raises(TaskConflictError, match=f"任务状态为 {status.value}"):
        lifecycle.resumed(stored(status=status), now_ms=NOW)


# --------------------------------------------------------------------------- reordered


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [
        pytest.param(-1800, at(8, 10, 10), id="earlier"),
        pytest.param(3600, at(8, 11, 40), id="later"),
        pytest.param(0, at(8, 10, 40), id="zero"),
        pytest.param(-DAY_S, NOW, id="clamped-to-now"),
        pytest.param(11 * 3600 + 1800, at(9, 8), id="past-window-end-next-morning"),
    ],
)
def test_reordered_pending_task_shifts_next(offset_s: int, expected: int) -> None:
    """new next = next + offset, never before now, moved into the window; the fence bumps."""
    new = lifecycle.reordered(stored(), offset_s, now_ms=NOW)
    assert (new.status, new.next_ms, new.fence, new.updated_ms) == (PENDING, expected, 6, NOW)


def test_reordered_paused_task_stays_paused() -> None:
    """A paused task can be reordered; it stays paused with the new next run."""
    new = lifecycle.reordered(stored(status=PAUSED), -1800, now_ms=NOW)
    assert (new.status, new.next_ms) == (PAUSED, at(8, 10, 10))


def test_reordered_running_task_raises_conflict() -> None:
    """Reordering while a round runs is a 409."""
    with pytest.raises(TaskConflictError, match="任务正在运行"):
        lifecycle.reordered(stored(status=RUNNING), -1800, now_ms=NOW)


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(ended_yesterday(), id="completed"),
        pytest.param(stored(status=ERROR, next_ms=None), id="error"),
    ],
)
def test_reordered_task_without_schedule_raises_conflict(task: Task) -> None:
    """Completed and error tasks have no next run to move: 409."""
    with pytest.raises(TaskConflictError, match="没有可调整的下次执行时间"):
        lifecycle.reordered(task, -1800, now_ms=NOW)


def test_reordered_past_end_raises_conflict() -> None:
    """A reorder that would move the next run after the end is a 409."""
    task = stored(end_text="2026-01-08T11:00:00", end_ms=at(8, 11))
    with pytest.raises(TaskConflictError, match="task_end_time"):
        lifecycle.reordered(task, 3600, now_ms=NOW)


@pytest.mark.parametrize(
    ("offset_s", "ok"),
    [
        pytest.param(366 * DAY_S, True, id="max-later"),
        pytest.param(-366 * DAY_S, True, id="max-earlier"),
        pytest.param(366 * DAY_S + 1, False, id="too-late"),
        pytest.param(-366 * DAY_S - 1, False, id="too-early"),
    ],
)
def test_reordered_offset_bounded_by_limit(offset_s: int, ok: bool) -> None:
    """priority_offset is limited to ±366 days; beyond it names the field."""
    if ok:
        lifecycle.reordered(stored(), offset_s, now_ms=NOW)
    else:
        with pytest.raises(InvalidTaskError) as info:
            lifecycle.reordered(stored(), offset_s, now_ms=NOW)
        assert info.value.field == "priority_offset"


# --------------------------------------------------------------------------- run_now


@pytest.mark.parametrize(
    ("now_ms", "expected"),
    [
        pytest.param(NOW, NOW, id="in-window-now"),
        pytest.param(at(8, 23), at(9, 8), id="outside-window-next-start"),
    ],
)
def test_run_now_pending_task_is_due_now_in_window(now_ms: int, expected: int) -> None:
    """run_now moves the next run to now (or the next window start) and bumps the fence."""
    new = lifecycle.run_now(stored(), now_ms=now_ms)
    assert (new.status, new.next_ms, new.fence, new.updated_ms) == (PENDING, expected, 6, now_ms)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        pytest.param(stored(status=RUNNING), "任务正在运行", id="running"),
        pytest.param(stored(status=PAUSED), "只有 pending 的任务可以立即执行", id="paused"),
        pytest.param(ended_yesterday(), "只有 pending 的任务可以立即执行", id="completed"),
        pytest.param(stored(status=ERROR), "只有 pending 的任务可以立即执行", id="error"),
        pytest.param(
            stored(end_text="2026-01-08T09:00:00", end_ms=at(8, 9)),
            "已超过结束时间",
            id="pending-past-end",
        ),
    ],
)
def test_run_now_not_runnable_task_raises_conflict(task: Task, message: str) -> None:
    """run_now is a 409 unless the task is pending and before its end."""
    with pytest.raises(TaskConflictError, match=message):
        lifecycle.run_now(task, now_ms=NOW)


def test_new_task_start_at_after_end_raises_naming_start_at() -> None:
    """A start_at beyond task_end_time is blamed on start_at, the field to change."""
    with pytest.raises(InvalidTaskError) as info:
        create(start_at="2026-01-10T10:00:00", task_end_time="2026-01-09")
    assert info.value.field == "start_at"


def test_resumed_error_task_clears_last_error() -> None:
    """Resume revives an error task and forgets the error it was stopped by."""
    task = stored(status=ERROR, failures=3, last_error="RuntimeError: boom")
    assert lifecycle.resumed(task, now_ms=NOW).last_error is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"start_at": "9999-12-31T23:00:00"}, "start_at", id="start-at-year-9999"),
        pytest.param({"task_end_time": "3001-01-01"}, "task_end_time", id="end-past-horizon"),
    ],
)
def test_new_task_instant_past_the_horizon_raises_naming_field(
    fields: dict[str, Any], field: str
) -> None:
    """Instants that would overflow date arithmetic are refused, naming their field."""
    with pytest.raises(InvalidTaskError) as info:
        create(**fields)
    assert info.value.field == field


# --------------------------------------------------------------------------- queue moves
# A slot due at 09:50, claimed by the beat with fence 5: its message waits on the old queue.
CLAIMED_SLOT = at(8, 9, 50)


def claimed(**overrides: Any) -> Task:
    return stored(next_ms=CLAIMED_SLOT, **overrides)


def stands(task: Task, fence: int) -> bool:
    return lifecycle.stands_for(task, fence=fence, slot_ms=CLAIMED_SLOT, now_ms=NOW)


def test_new_task_keeps_its_own_queue() -> None:
    """A create body's queue is the task's own; without one the task has none."""
    assert create(queue="dev-a").queue == "dev-a"
    assert create().queue is None


def test_new_task_bad_queue_raises_naming_queue() -> None:
    """A queue name a worker could not consume is refused on `queue`."""
    with pytest.raises(InvalidTaskError) as info:
        create(queue="dev a")
    assert (info.value.key, info.value.field) == ("queue_format", "queue")


def test_updated_queue_of_pending_task_refences_the_same_slot() -> None:
    """A move keeps the slot but re-fences it (the beat claims it again at once, for the new
    queue) and marks every earlier claim as one of the old queue."""
    new = lifecycle.updated(claimed(), TaskChange.model_validate({"queue": "dev-b"}), now_ms=NOW)
    assert (new.queue, new.status, new.next_ms) == ("dev-b", PENDING, CLAIMED_SLOT)
    assert (new.fence, new.queue_fence) == (6, 6)


def test_stands_for_message_claimed_before_a_queue_move_is_stale() -> None:
    """The message left on the old queue never starts the slot, though it is due and an
    older claim of the same slot otherwise would."""
    moved = lifecycle.updated(claimed(), TaskChange.model_validate({"queue": "dev-b"}), now_ms=NOW)
    assert stands(claimed().evolve(fence=6), 5), "without a move an older claim stands"
    assert not stands(moved, 5)


def test_stands_for_claims_after_a_queue_move_stand_as_before() -> None:
    """Claims under the new queue behave as any claims: the latest stands, and so does an
    earlier one of the same slot once due (a long queue re-claimed meanwhile)."""
    moved = lifecycle.updated(claimed(), TaskChange.model_validate({"queue": "dev-b"}), now_ms=NOW)
    reclaimed = moved.evolve(fence=moved.fence + 2)
    assert stands(reclaimed, moved.fence + 2)
    assert stands(reclaimed, moved.fence + 1)
    assert not stands(reclaimed, 5)


def test_updated_queue_of_running_task_leaves_the_round_alone() -> None:
    """A round in progress runs on where it is: no re-fence; the slot after it is claimed
    afresh, so it goes to the new queue."""
    task = claimed(status=RUNNING, run_id="r1")
    new = lifecycle.updated(task, TaskChange.model_validate({"queue": "dev-b"}), now_ms=NOW)
    assert (new.queue, new.status, new.fence, new.queue_fence) == ("dev-b", RUNNING, 5, 0)


def test_updated_queue_null_moves_back_to_the_rule() -> None:
    """`queue: null` drops the task's own queue; it is a move like any other."""
    new = lifecycle.updated(
        claimed(queue="dev-a"), TaskChange.model_validate({"queue": None}), now_ms=NOW
    )
    assert (new.queue, new.fence, new.queue_fence) == (None, 6, 6)


def test_updated_same_queue_is_no_move() -> None:
    """Sending the queue the task already has changes neither the fence nor the floor."""
    task = claimed(queue="dev-a")
    new = lifecycle.updated(task, TaskChange.model_validate({"queue": "dev-a"}), now_ms=NOW)
    assert (new.fence, new.queue_fence) == (5, 0)


def test_updated_queue_with_timing_change_refences_once() -> None:
    """A move made with a reschedule uses the reschedule's new fence as the floor."""
    new = lifecycle.updated(
        claimed(), TaskChange.model_validate({"queue": "dev-b", "interval": 600}), now_ms=NOW
    )
    assert (new.fence, new.queue_fence) == (6, 6)


def test_updated_queue_of_paused_task_refences_it() -> None:
    """A paused task moved: no earlier claim may start its slot after a resume either."""
    new = lifecycle.updated(
        claimed(status=PAUSED), TaskChange.model_validate({"queue": "dev-b"}), now_ms=NOW
    )
    assert (new.status, new.fence, new.queue_fence) == (PAUSED, 6, 6)


def test_updated_bad_queue_raises_naming_queue() -> None:
    """A PATCH's queue is checked like a create's."""
    with pytest.raises(InvalidTaskError) as info:
        lifecycle.updated(
            claimed(), TaskChange.model_validate({"queue": "w1@host.dq2"}), now_ms=NOW
        )
    assert (info.value.key, info.value.field) == ("queue_reserved", "queue")
