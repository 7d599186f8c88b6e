"""Specification of taskdispatch.domain.validation: what each field may hold, and its parsed value.

Pure: no Redis, no clock. Every refusal is an InvalidTaskError naming the field; the tables
give the input, the message key and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.domain import validation
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.validation import LIMITS

SHANGHAI = ZoneInfo("Asia/Shanghai")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, *, month: int = 1, tz: ZoneInfo = SHANGHAI) -> int:
    """Epoch ms of 2026-<month>-<day> <hour>:<minute> local time in `tz`."""
    return (datetime(2026, month, day, hour, minute, tzinfo=tz) - EPOCH) // timedelta(
        milliseconds=1
    )


NOW = at(8, 10)


def nested(depth: int) -> Any:
    """A scalar wrapped in `depth` lists: check_json sees the scalar at that depth."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("value", "key"),
    [
        pytest.param("", "id_length", id="empty"),
        pytest.param("x" * (LIMITS["id_chars"] + 1), "id_length", id="too-long"),
        pytest.param("a b", "id_whitespace", id="space"),
        pytest.param("a\tb", "id_whitespace", id="tab"),
        pytest.param("a\nb", "id_whitespace", id="newline"),
        pytest.param("a\u3000b", "id_whitespace", id="ideographic-space"),
        pytest.param("a\x00b", "id_whitespace", id="nul"),
        pytest.param("a\x7fb", "id_whitespace", id="del"),
        pytest.param("a\u200bb", "id_whitespace", id="zero-width-space"),
        *(pytest.param(f"a{ch}b", "id_reserved", id=f"reserved-{ch}") for ch in "/?#%\\"),
    ],
)
def test_check_identifier_unsafe_value_is_refused(value: str, key: str) -> None:
    """An id that is empty, too long, has whitespace/control chars or URL-reserved ones fails."""
    with pytest.raises(InvalidTaskError) as info:
        validation.check_identifier(value, field="xhs_account_id")
    assert (info.value.key, info.value.field) == (key, "xhs_account_id")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("账号1", id="cjk"),
        pytest.param("😀", id="emoji"),
        pytest.param("team:acct", id="colon"),
        pytest.param("acct*", id="star"),
        pytest.param("x" * LIMITS["id_chars"], id="longest"),
    ],
)
def test_check_identifier_printable_value_is_returned(value: str) -> None:
    """Any printable text within the length limit, CJK and emoji included, is accepted."""
    assert validation.check_identifier(value, field="xhs_account_id") == value


# --------------------------------------------------------------------------- text and JSON


@pytest.mark.parametrize(
    ("value", "key"),
    [
        pytest.param("x" * (LIMITS["text_chars"] + 1), "text_length", id="too-long"),
        pytest.param("a\x00b", "text_control", id="nul"),
        pytest.param("a\rb", "text_control", id="carriage-return"),
        pytest.param("a\ud800b", "text_control", id="lone-surrogate"),
    ],
)
def test_check_text_overlong_or_control_text_is_refused(value: str, key: str) -> None:
    """Free text is bounded and holds no control characters other than tab and newline."""
    with pytest.raises(InvalidTaskError) as info:
        validation.check_text(value, field="user_query")
    assert (info.value.key, info.value.field) == (key, "user_query")


def test_check_text_tabs_newlines_and_longest_text_are_accepted() -> None:
    """Tab and newline are allowed, and a text of exactly the limit passes."""
    assert validation.check_text("第一行\n\t第二行", field="user_query") == "第一行\n\t第二行"
    longest = "字" * LIMITS["text_chars"]
    assert validation.check_text(longest, field="user_query") == longest


@pytest.mark.parametrize(
    ("value", "key"),
    [
        pytest.param(nested(LIMITS["kwargs_depth"] + 1), "json_depth", id="too-deep"),
        pytest.param({"x": float("nan")}, "json_not_finite", id="nan"),
        pytest.param([float("inf")], "json_not_finite", id="infinity"),
        pytest.param({"x": "a\udc00"}, "json_surrogate", id="lone-surrogate"),
        pytest.param({"a\x00": 1}, "text_control", id="control-char-in-key"),
    ],
)
def test_check_json_unstorable_value_is_refused(value: Any, key: str) -> None:
    """JSON too deep, with NaN/Infinity or lone surrogates cannot be stored and is refused."""
    with pytest.raises(InvalidTaskError) as info:
        validation.check_json(value, field="kwargs")
    assert (info.value.key, info.value.field) == (key, "kwargs")


def test_check_json_at_the_depth_limit_is_accepted() -> None:
    """A value exactly kwargs_depth levels deep is still fine."""
    validation.check_json({"ok": nested(LIMITS["kwargs_depth"] - 1)}, field="kwargs")


# --------------------------------------------------------------------------- run parameters


def test_run_params_merge_kwargs_then_user_fields_over_the_base() -> None:
    """kwargs are merged over the base, then each given user_* field overrides."""
    params = validation.run_params(
        {"depth": 1, "keep": True},
        extra={"depth": 2, "user_query": "from kwargs"},
        user={"user_query": "开始运营"},
    )
    assert params == {"depth": 2, "keep": True, "user_query": "开始运营"}


def test_run_params_user_field_given_as_none_is_removed() -> None:
    """An explicit null for a user_* field removes it; fields not given are kept."""
    params = validation.run_params(
        {"user_topic": "旅行", "user_style": "活泼"}, extra=None, user={"user_topic": None}
    )
    assert params == {"user_style": "活泼"}


def test_run_params_over_the_size_limit_is_refused() -> None:
    """Parameters whose JSON exceeds kwargs_bytes are refused naming kwargs."""
    big = {"blob": "x" * LIMITS["kwargs_bytes"]}
    with pytest.raises(InvalidTaskError) as info:
        validation.run_params({}, extra=big, user={})
    assert (info.value.key, info.value.field) == ("kwargs_size", "kwargs")


# --------------------------------------------------------------------------- instants


def test_end_ms_date_means_the_end_of_that_local_day() -> None:
    """A date is the last millisecond of that day in the task's zone."""
    end = validation.end_value("2026-02-08")
    assert validation.end_ms(end, SHANGHAI, now_ms=NOW, text="2026-02-08") == at(9, 0, month=2) - 1


def test_instant_naive_datetime_is_read_in_the_given_zone() -> None:
    """A datetime without offset is local time of the zone given; one with offset is not."""
    assert validation.instant("2026-01-09T09:15:00", SHANGHAI, field="until") == at(9, 9, 15)
    assert validation.instant("2026-01-09T09:15:00Z", SHANGHAI, field="until") == at(9, 17, 15)


# --------------------------------------------------------------------------- every refusal


REFUSALS: list[Any] = [
    pytest.param(
        lambda: validation.end_ms("2026-01-07", SHANGHAI, now_ms=NOW, text="2026-01-07"),
        "end_in_past",
        "task_end_time",
        id="end-past-date",
    ),
    pytest.param(
        lambda: validation.end_ms(
            "2026-01-08T09:59:59", SHANGHAI, now_ms=NOW, text="2026-01-08T09:59:59"
        ),
        "end_in_past",
        "task_end_time",
        id="end-past-datetime",
    ),
    pytest.param(
        lambda: validation.end_value("next week"),
        "end_format",
        "task_end_time",
        id="end-unparsable",
    ),
    pytest.param(
        lambda: validation.end_ms("3001-01-01", SHANGHAI, now_ms=NOW, text="3001-01-01"),
        "horizon",
        "task_end_time",
        id="end-beyond-horizon",
    ),
    pytest.param(
        lambda: validation.instant_value("tomorrow", field="start_at"),
        "instant_format",
        "start_at",
        id="instant-unparsable",
    ),
    pytest.param(
        lambda: validation.instant("3001-01-01T00:00:00", SHANGHAI, field="until"),
        "horizon",
        "until",
        id="instant-beyond-horizon",
    ),
    pytest.param(
        lambda: validation.timezone("Mars/Olympus"),
        "timezone_unknown",
        "timezone",
        id="timezone-unknown",
    ),
    pytest.param(
        lambda: validation.window([8, 8]),
        "window_format",
        "valid_time_range",
        id="window-empty",
    ),
    pytest.param(
        lambda: validation.check_interval(0), "interval_range", "interval", id="interval-zero"
    ),
]


@pytest.mark.parametrize(("call", "key", "field"), REFUSALS)
def test_refusal_is_invalid_task_error_naming_its_field(
    call: Callable[[], Any], key: str, field: str
) -> None:
    """Each refusal is an InvalidTaskError with its message key and the field it is about."""
    with pytest.raises(InvalidTaskError) as info:
        call()
    assert (info.value.key, info.value.field) == (key, field)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("dev-a", id="device"),
        pytest.param("celery", id="default"),
        pytest.param("mac_intel.eu:1@lab", id="every-punctuation"),
        pytest.param("q" * 64, id="longest"),
        pytest.param(None, id="none-means-the-rule"),
    ],
)
def test_check_queue_celery_queue_name_is_returned(value: str | None) -> None:
    """A plain Celery queue name (or None: no queue of its own) is accepted as it is."""
    assert validation.check_queue(value) == value


@pytest.mark.parametrize(
    ("value", "key"),
    [
        pytest.param("", "queue_format", id="empty"),
        pytest.param("q" * 65, "queue_format", id="too-long"),
        pytest.param("dev a", "queue_format", id="space"),
        pytest.param("dev-a,dev-b", "queue_format", id="comma-splits-a-Q-list"),
        pytest.param("-dev", "queue_format", id="leading-dash"),
        pytest.param("队列", "queue_format", id="non-ascii"),
        pytest.param(3, "queue_format", id="not-text"),
        pytest.param("w1@host.dq2", "queue_reserved", id="worker-direct-queue"),
        pytest.param("celery@host.celery.pidbox", "queue_reserved", id="broadcast"),
        pytest.param("celeryev.abc", "queue_reserved", id="events"),
    ],
)
def test_check_queue_bad_name_is_refused_naming_queue(value: object, key: str) -> None:
    """A name a worker's -Q could not take, or one of Celery's own queues, fails on `queue`."""
    with pytest.raises(InvalidTaskError) as info:
        validation.check_queue(value)
    assert (info.value.key, info.value.field) == (key, "queue")


def test_task_query_bad_queue_filter_is_refused_naming_queue() -> None:
    """The `queue` filter of a listing takes the same names as the field."""
    with pytest.raises(InvalidTaskError) as info:
        validation.task_query(queue="a b")
    assert (info.value.key, info.value.field) == ("queue_format", "queue")
