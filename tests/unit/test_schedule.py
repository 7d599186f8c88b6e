"""Specification tests for domain.schedule (pure scheduling maths, epoch milliseconds)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.domain.schedule import (
    Calendar,
    ScheduleError,
    Window,
    first_run_ms,
    hour_window,
    in_window,
    next_run_ms,
    next_window_start,
    parse_end,
    parse_instant,
    parse_timezone,
    parse_window,
    reorder_ms,
    to_local_iso,
    upcoming_ms,
)


def cal(window: tuple[int, int], tz: ZoneInfo) -> Calendar:
    """The calendar of a whole-hour valid_time_range in `tz` (every day, no blackout)."""
    return Calendar(windows=hour_window(window), tz=tz)


UTC = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
SANTIAGO = ZoneInfo("America/Santiago")
APIA = ZoneInfo("Pacific/Apia")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_S = 3600
DAY_S = 86400


def ms(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
    *,
    tz: ZoneInfo = UTC,
) -> int:
    """Epoch ms of an explicit aware datetime (UTC unless tz is given)."""
    aware = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)
    return (aware - EPOCH) // timedelta(milliseconds=1)


# --- parse_window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([8, 20], (8, 20), id="day"),
        pytest.param([22, 6], (22, 6), id="night-wraps-midnight"),
        pytest.param([22, 0], (22, 0), id="until-midnight"),
        pytest.param([0, 24], (0, 24), id="always-open"),
        pytest.param([23, 24], (23, 24), id="last-hour"),
        pytest.param([0, 1], (0, 1), id="first-hour"),
        pytest.param((9, 17), (9, 17), id="tuple"),
    ],
)
def test_parse_window_valid_value_returns_tuple(value: Any, expected: Window) -> None:
    """A list of two whole hours is returned as a (start, end) tuple."""
    assert parse_window(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param([8, 8], "start and end must differ", id="start-equals-end"),
        pytest.param([0, 0], "start and end must differ", id="zero-zero"),
        pytest.param([24, 6], "start must be in 0..23", id="start-24"),
        pytest.param([-1, 6], "start must be in 0..23", id="start-negative"),
        pytest.param([8, 25], "end must be in 0..24", id="end-25"),
        pytest.param([8, -1], "end must be in 0..24", id="end-negative"),
        pytest.param([], "exactly two", id="empty"),
        pytest.param([8], "exactly two", id="one-item"),
        pytest.param([8, 20, 22], "exactly two", id="three-items"),
        pytest.param("8,20", "exactly two", id="string"),
        pytest.param("82", "exactly two", id="two-char-string"),
        pytest.param(None, "exactly two", id="null"),
        pytest.param({"start": 8, "end": 20}, "exactly two", id="object"),
        pytest.param([True, 6], "integers", id="bool-start"),
        pytest.param([8, False], "integers", id="bool-end"),
        pytest.param([8.0, 20], "integers", id="float-start"),
        pytest.param([8, 20.5], "integers", id="float-end"),
        pytest.param(["8", "20"], "integers", id="string-items"),
        pytest.param([None, 20], "integers", id="null-item"),
    ],
)
def test_parse_window_invalid_value_raises_naming_field(value: Any, reason: str) -> None:
    """Invalid ranges raise ScheduleError naming valid_time_range, the format and the reason."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_window(value)
    assert str(excinfo.value).startswith("valid_time_range 必须是两个整点小时 [start, end]")
    assert reason in (excinfo.value.detail or "")


def test_parse_window_equal_hours_message_is_exact() -> None:
    """The start == end message shows the format, the value received and the fix."""
    with pytest.raises(ScheduleError, match=r"^valid_time_range .*$") as excinfo:
        parse_window([8, 8])
    assert str(excinfo.value) == (
        "valid_time_range 必须是两个整点小时 [start, end]，start 取 0..23，end 取 0..24，"
        "且不相等；收到 [8, 8]"
    )
    assert excinfo.value.detail == "start and end must differ"


def test_schedule_error_is_value_error() -> None:
    """ScheduleError is a ValueError so generic validation handlers catch it."""
    assert issubclass(ScheduleError, ValueError)


# --- parse_timezone -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Asia/Shanghai", "Europe/Berlin", "UTC", "America/New_York"])
def test_parse_timezone_known_name_returns_zoneinfo(name: str) -> None:
    """Known IANA names resolve to the matching ZoneInfo."""
    assert parse_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Mars/Base", id="unknown"),
        pytest.param("../etc", id="path-traversal"),
        pytest.param("/etc/passwd", id="absolute-path"),
        pytest.param("", id="empty"),
        pytest.param("Europe", id="directory"),
        pytest.param("Asia/Shanghai ", id="trailing-space"),
        pytest.param("a\x00b", id="nul-byte"),
        pytest.param(None, id="null"),
        pytest.param(8, id="number"),
    ],
)
def test_parse_timezone_invalid_name_raises_naming_field(name: Any) -> None:
    """Unknown or malformed names raise ScheduleError naming timezone with an example."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_timezone(name)
    assert str(excinfo.value) == f"timezone {name!r} 不是已知的 IANA 时区名（如 'Asia/Shanghai'）"


# --- parse_end / parse_instant ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        pytest.param("2026-02-08", SHANGHAI, ms(2026, 2, 8, 16) - 1, id="date-shanghai"),
        pytest.param("2026-02-08", BERLIN, ms(2026, 2, 8, 23) - 1, id="date-berlin-winter"),
        pytest.param("2026-07-08", BERLIN, ms(2026, 7, 8, 22) - 1, id="date-berlin-summer"),
        pytest.param("2026-03-29", BERLIN, ms(2026, 3, 29, 22) - 1, id="date-berlin-23h-day"),
        pytest.param(" 2026-02-08 ", UTC, ms(2026, 2, 9) - 1, id="date-whitespace"),
        pytest.param(date(2026, 2, 8), SHANGHAI, ms(2026, 2, 8, 16) - 1, id="date-object"),
        # Chile springs forward at local midnight: the next day starts at 01:00 -03 (04:00 UTC).
        pytest.param("2026-09-05", SANTIAGO, ms(2026, 9, 6, 4) - 1, id="date-midnight-gap"),
        # Chile falls back at midnight: 23:xx repeats, the day ends after the second one.
        pytest.param("2026-04-04", SANTIAGO, ms(2026, 4, 5, 4) - 1, id="date-midnight-repeat"),
    ],
)
def test_parse_end_date_returns_last_ms_of_local_day(
    value: Any, tz: ZoneInfo, expected: int
) -> None:
    """A date end runs through the end of that day in the task's zone (next midnight - 1 ms)."""
    assert parse_end(value, tz) == expected


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        pytest.param("2026-02-08T18:00:00", SHANGHAI, ms(2026, 2, 8, 10), id="naive-in-zone"),
        pytest.param("2026-02-08 18:00", BERLIN, ms(2026, 2, 8, 17), id="naive-space-separator"),
        pytest.param("2026-02-08T18:00:00+01:00", SHANGHAI, ms(2026, 2, 8, 17), id="offset"),
        pytest.param("2026-02-08T18:00:00Z", SHANGHAI, ms(2026, 2, 8, 18), id="zulu"),
        pytest.param("2026-02-08T18:00:00.250Z", UTC, ms(2026, 2, 8, 18) + 250, id="millis"),
        pytest.param(datetime(2026, 2, 8, 18), SHANGHAI, ms(2026, 2, 8, 10), id="naive-object"),
        pytest.param(
            datetime(2026, 2, 8, 18, tzinfo=timezone(timedelta(hours=1))),
            SHANGHAI,
            ms(2026, 2, 8, 17),
            id="aware-object",
        ),
    ],
)
def test_parse_end_datetime_returns_exact_instant(value: Any, tz: ZoneInfo, expected: int) -> None:
    """A datetime end is exact; naive values are read in the task's zone, aware ones converted."""
    assert parse_end(value, tz) == expected


def test_parse_end_none_returns_none() -> None:
    """No end time means the task never completes by time."""
    assert parse_end(None, SHANGHAI) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("2026-13-01", id="month-13"),
        pytest.param("08/02/2026", id="slashes"),
        pytest.param("tomorrow", id="word"),
        pytest.param("2026-02-08T25:00:00", id="hour-25"),
        pytest.param("9999-12-31", id="no-next-midnight"),
        pytest.param(20260208, id="number"),
    ],
)
def test_parse_end_unparsable_raises_naming_field(value: Any) -> None:
    """Unparsable ends raise ScheduleError naming task_end_time and the accepted formats."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_end(value, SHANGHAI)
    message = str(excinfo.value)
    assert message.startswith("task_end_time 必须是 ISO 8601 日期（如 '2026-02-08'")
    assert "'2026-02-08T18:00:00'" in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-02-08T18:00:00", ms(2026, 2, 8, 10), id="naive-in-zone"),
        pytest.param("2026-02-08T18:00:00+00:00", ms(2026, 2, 8, 18), id="offset"),
        pytest.param("2026-02-08T18:00:00Z", ms(2026, 2, 8, 18), id="zulu"),
        pytest.param(datetime(2026, 2, 8, 18), ms(2026, 2, 8, 10), id="naive-object"),
    ],
)
def test_parse_instant_iso_datetime_returns_epoch_ms(value: Any, expected: int) -> None:
    """ISO datetimes become epoch ms; naive values are read in the task's zone."""
    assert parse_instant(value, SHANGHAI, field="start_time") == expected


@pytest.mark.parametrize("value", ["soon", "", "2026-02-30T10:00:00", 1770000000])
def test_parse_instant_unparsable_raises_naming_given_field(value: Any) -> None:
    """Unparsable instants raise ScheduleError naming the caller's field."""
    with pytest.raises(ScheduleError, match=r"^start_time 必须是 ISO 8601 时间"):
        parse_instant(value, SHANGHAI, field="start_time")


# --- in_window ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "t", "expected"),
    [
        pytest.param((8, 20), ms(2026, 1, 8, 8), True, id="day-at-start"),
        pytest.param((8, 20), ms(2026, 1, 8, 8) - 1, False, id="day-just-before"),
        pytest.param((8, 20), ms(2026, 1, 8, 19, 59, 59), True, id="day-last-second"),
        pytest.param((8, 20), ms(2026, 1, 8, 20), False, id="day-at-end"),
        pytest.param((22, 6), ms(2026, 1, 8, 22), True, id="night-at-start"),
        pytest.param((22, 6), ms(2026, 1, 8, 23, 30), True, id="night-before-midnight"),
        pytest.param((22, 6), ms(2026, 1, 8, 0), True, id="night-midnight"),
        pytest.param((22, 6), ms(2026, 1, 8, 5, 59), True, id="night-last-minute"),
        pytest.param((22, 6), ms(2026, 1, 8, 6), False, id="night-at-end"),
        pytest.param((22, 6), ms(2026, 1, 8, 12), False, id="night-noon"),
        pytest.param((22, 6), ms(2026, 1, 8, 21, 59), False, id="night-just-before"),
        pytest.param((22, 0), ms(2026, 1, 8, 22), True, id="to-midnight-at-start"),
        pytest.param((22, 0), ms(2026, 1, 8, 23, 59), True, id="to-midnight-last-minute"),
        pytest.param((22, 0), ms(2026, 1, 8, 0), False, id="to-midnight-at-midnight"),
        pytest.param((22, 0), ms(2026, 1, 8, 21), False, id="to-midnight-before"),
        pytest.param((0, 24), ms(2026, 1, 8, 0), True, id="always-midnight"),
        pytest.param((0, 24), ms(2026, 1, 8, 12), True, id="always-noon"),
        pytest.param((0, 24), ms(2026, 1, 8, 23, 59), True, id="always-late"),
    ],
)
def test_in_window_utc_hour_table_matches(window: Window, t: int, expected: bool) -> None:
    """The start hour is included, the end hour excluded, and start > end wraps midnight."""
    assert in_window(t, cal(window, UTC)) is expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        pytest.param(ms(2026, 1, 8, 0), True, id="08:00-CST"),
        pytest.param(ms(2026, 1, 7, 23, 59), False, id="07:59-CST"),
        pytest.param(ms(2026, 1, 8, 11, 59), True, id="19:59-CST"),
        pytest.param(ms(2026, 1, 8, 12), False, id="20:00-CST"),
    ],
)
def test_in_window_shanghai_uses_local_hour(t: int, expected: bool) -> None:
    """The window is tested against the wall-clock hour in the task's zone, not UTC."""
    assert in_window(t, cal((8, 20), SHANGHAI)) is expected


# --- next_window_start --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "t", "expected"),
    [
        pytest.param((8, 20), ms(2026, 1, 8, 10, 15, 30, 123000), None, id="inside-exact-ms"),
        pytest.param((8, 20), ms(2026, 1, 8, 6, 30), ms(2026, 1, 8, 8), id="before-same-day"),
        pytest.param((8, 20), ms(2026, 1, 8, 20), ms(2026, 1, 9, 8), id="at-end-next-day"),
        pytest.param((8, 20), ms(2026, 1, 8, 23), ms(2026, 1, 9, 8), id="after-next-day"),
        pytest.param((8, 20), ms(2026, 12, 31, 21), ms(2027, 1, 1, 8), id="across-year"),
        pytest.param((22, 6), ms(2026, 1, 8, 12), ms(2026, 1, 8, 22), id="night-from-noon"),
        pytest.param((22, 6), ms(2026, 1, 8, 6), ms(2026, 1, 8, 22), id="night-at-end"),
        pytest.param((22, 6), ms(2026, 1, 8, 23), None, id="night-inside-late"),
        pytest.param((22, 6), ms(2026, 1, 8, 3), None, id="night-inside-early"),
        pytest.param((22, 0), ms(2026, 1, 8, 0, 30), ms(2026, 1, 8, 22), id="to-midnight"),
        pytest.param((1, 5), ms(2026, 1, 8, 23), ms(2026, 1, 9, 1), id="across-midnight"),
        pytest.param((0, 24), ms(2026, 1, 8, 13, 1), None, id="always-open"),
    ],
)
def test_next_window_start_utc_table_returns_earliest_open_instant(
    window: Window, t: int, expected: int | None
) -> None:
    """Inside returns t itself (expected None); otherwise the next local window start."""
    assert next_window_start(t, cal(window, UTC)) == (t if expected is None else expected)


def test_next_window_start_shanghai_after_window_returns_next_local_morning() -> None:
    """21:00 CST is past (8, 20), so the next start is 08:00 CST = 00:00 UTC next day."""
    assert next_window_start(ms(2026, 1, 8, 13), cal((8, 20), SHANGHAI)) == ms(2026, 1, 9, 0)


@pytest.mark.parametrize(
    "window", [(2, 6), (2, 3), (3, 4), (1, 3), (22, 2), (23, 0), (0, 24), (8, 20), (2, 4)]
)
@pytest.mark.parametrize(
    "day", [pytest.param((2026, 3, 28), id="spring"), pytest.param((2026, 10, 24), id="autumn")]
)
def test_next_window_start_berlin_dst_matches_minute_scan(
    window: Window, day: tuple[int, int, int]
) -> None:
    """Across Berlin DST days the result is in the window and no earlier minute is."""
    start = ms(*day)
    for t in range(start, start + 3 * DAY_S * 1000, 37 * 60 * 1000 + 17):
        result = next_window_start(t, cal(window, BERLIN))
        assert result >= t and in_window(result, cal(window, BERLIN))
        first_minute = -(-t // 60000) * 60000
        assert not any(
            in_window(m, cal(window, BERLIN)) for m in range(first_minute, result, 60000)
        )


# --- DST in Europe/Berlin -----------------------------------------------------------------------


def test_next_window_start_spring_gap_start_returns_end_of_gap() -> None:
    """Window start 02:00 on 2026-03-29 does not exist: it opens at 03:00 CEST = 01:00 UTC."""
    result = next_window_start(ms(2026, 3, 28, 23), cal((2, 6), BERLIN))
    assert result == ms(2026, 3, 29, 1)
    assert to_local_iso(result, BERLIN) == "2026-03-29T03:00:00+02:00"


def test_next_window_start_window_lost_in_gap_skips_to_next_day() -> None:
    """(2, 3) has no instant at all on 2026-03-29, so it next opens 2026-03-30 02:00 CEST."""
    assert next_window_start(ms(2026, 3, 28, 23), cal((2, 3), BERLIN)) == ms(2026, 3, 30, 0)


def test_next_window_start_autumn_repeated_start_returns_first_occurrence() -> None:
    """Window start 02:00 on 2026-10-25 occurs twice; the first (02:00 CEST) is used."""
    assert next_window_start(ms(2026, 10, 24, 23, 30), cal((2, 4), BERLIN)) == ms(2026, 10, 25, 0)


@pytest.mark.parametrize(
    ("t", "iso"),
    [
        pytest.param(ms(2026, 10, 25, 0, 30), "2026-10-25T02:30:00+02:00", id="first-02:30"),
        pytest.param(ms(2026, 10, 25, 1, 30), "2026-10-25T02:30:00+01:00", id="second-02:30"),
    ],
)
def test_in_window_autumn_repeated_hour_both_occurrences_inside(t: int, iso: str) -> None:
    """Both occurrences of local 02:xx on 2026-10-25 are inside (2, 3) by wall-clock hour."""
    assert to_local_iso(t, BERLIN) == iso
    assert in_window(t, cal((2, 3), BERLIN))


def test_next_run_ms_autumn_hourly_slot_keeps_absolute_interval() -> None:
    """An hourly slot at 02:30 CEST is followed by 02:30 CET (one real hour), still in (2, 3)."""
    slot = ms(2026, 10, 25, 0, 30)
    result = next_run_ms(
        slot_ms=slot, now_ms=slot, interval_s=HOUR_S, calendar=cal((2, 3), BERLIN), end_ms=None
    )
    assert result == ms(2026, 10, 25, 1, 30)


def test_upcoming_ms_autumn_repeated_hour_yields_two_local_0215_slots() -> None:
    """Hourly slots in (2, 3) run twice at local 02:15 on the autumn day, then daily at 02:00."""
    runs = upcoming_ms(
        next_ms=ms(2026, 10, 25, 0, 15),
        count=4,
        interval_s=HOUR_S,
        calendar=cal((2, 3), BERLIN),
        end_ms=None,
    )
    assert [to_local_iso(t, BERLIN) for t in runs] == [
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:15:00+01:00",
        "2026-10-26T02:00:00+01:00",
        "2026-10-27T02:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("slot", "expected_local"),
    [
        pytest.param(ms(2026, 3, 28, 8), "2026-03-29T10:00:00+02:00", id="spring-forward"),
        pytest.param(ms(2026, 10, 24, 7), "2026-10-25T08:00:00+01:00", id="fall-back"),
    ],
)
def test_next_run_ms_daily_across_dst_keeps_absolute_interval(
    slot: int, expected_local: str
) -> None:
    """A 24 h interval is 86400 real seconds, so the local time shifts by the DST change."""
    result = next_run_ms(
        slot_ms=slot, now_ms=slot, interval_s=DAY_S, calendar=cal((0, 24), BERLIN), end_ms=None
    )
    assert result == slot + DAY_S * 1000
    assert to_local_iso(result, BERLIN) == expected_local


def test_next_window_start_skipped_calendar_day_uses_next_existing_day() -> None:
    """Samoa skipped 2011-12-30 entirely, so (8, 10) next opens 2011-12-31 08:00 +14."""
    result = next_window_start(ms(2011, 12, 29, 22, tz=APIA), cal((8, 10), APIA))
    assert to_local_iso(result, APIA) == "2011-12-31T08:00:00+14:00"


# --- first_run_ms -------------------------------------------------------------------------------

DAY_WINDOW: Window = (8, 20)


@pytest.mark.parametrize(
    ("created", "start_at", "end", "expected"),
    [
        pytest.param(ms(2026, 1, 8, 10), None, None, ms(2026, 1, 8, 11), id="one-interval-later"),
        pytest.param(
            ms(2026, 1, 8, 10), ms(2026, 1, 8, 15, 30), None, ms(2026, 1, 8, 15, 30), id="start-at"
        ),
        pytest.param(ms(2026, 1, 8, 19, 30), None, None, ms(2026, 1, 9, 8), id="outside-window"),
        pytest.param(
            ms(2026, 1, 8, 1), ms(2026, 1, 8, 2), None, ms(2026, 1, 8, 8), id="start-at-outside"
        ),
        pytest.param(
            ms(2026, 1, 8, 10), None, ms(2026, 1, 8, 11), ms(2026, 1, 8, 11), id="end-equal"
        ),
        pytest.param(ms(2026, 1, 8, 10), None, ms(2026, 1, 8, 11) - 1, None, id="after-end"),
        pytest.param(ms(2026, 1, 8, 19, 30), None, ms(2026, 1, 8, 23), None, id="window-after-end"),
    ],
)
def test_first_run_ms_table_returns_first_slot_or_none(
    created: int, start_at: int | None, end: int | None, expected: int | None
) -> None:
    """First run is start_at or created + interval, moved into the window; None past the end."""
    result = first_run_ms(
        created_ms=created,
        interval_s=HOUR_S,
        calendar=cal(DAY_WINDOW, UTC),
        end_ms=end,
        start_at_ms=start_at,
    )
    assert result == expected


@pytest.mark.parametrize("interval_s", [0, -60])
def test_first_run_ms_non_positive_interval_raises(interval_s: int) -> None:
    """A zero or negative interval is rejected instead of producing a stuck schedule."""
    with pytest.raises(ScheduleError, match="interval"):
        first_run_ms(created_ms=0, interval_s=interval_s, calendar=cal((0, 24), UTC), end_ms=None)


# --- next_run_ms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "now", "end", "expected"),
    [
        pytest.param(
            ms(2026, 1, 8, 10), ms(2026, 1, 8, 10, 0, 1), None, ms(2026, 1, 8, 10, 10), id="on-time"
        ),
        pytest.param(
            ms(2026, 1, 8, 10),
            ms(2026, 1, 8, 10, 12),
            None,
            ms(2026, 1, 8, 10, 12),
            id="late-round",
        ),
        pytest.param(
            ms(2026, 1, 8, 10),
            ms(2026, 1, 8, 14, 37, 12, 500000),
            None,
            ms(2026, 1, 8, 14, 37, 12, 500000),
            id="many-missed",
        ),
        pytest.param(
            ms(2026, 1, 8, 10),
            ms(2026, 1, 8, 10, 10),
            None,
            ms(2026, 1, 8, 10, 10),
            id="candidate-equals-now",
        ),
        pytest.param(
            ms(2026, 1, 8, 19, 55),
            ms(2026, 1, 8, 19, 56),
            None,
            ms(2026, 1, 9, 8),
            id="moved-into-window",
        ),
        pytest.param(
            ms(2026, 1, 8, 19),
            ms(2026, 1, 8, 21),
            None,
            ms(2026, 1, 9, 8),
            id="late-outside-window",
        ),
        pytest.param(
            ms(2026, 1, 8, 10),
            ms(2026, 1, 8, 10),
            ms(2026, 1, 8, 10, 10),
            ms(2026, 1, 8, 10, 10),
            id="end-equal",
        ),
        pytest.param(
            ms(2026, 1, 8, 10), ms(2026, 1, 8, 10), ms(2026, 1, 8, 10, 9), None, id="after-end"
        ),
        pytest.param(
            ms(2026, 1, 8, 19, 55),
            ms(2026, 1, 8, 19, 55),
            ms(2026, 1, 8, 23, 59),
            None,
            id="window-after-end",
        ),
    ],
)
def test_next_run_ms_table_returns_fixed_rate_slot_or_none(
    slot: int, now: int, end: int | None, expected: int | None
) -> None:
    """Fixed rate from the slot; a past candidate becomes now (one run, no burst); None past end."""
    result = next_run_ms(
        slot_ms=slot, now_ms=now, interval_s=600, calendar=cal(DAY_WINDOW, UTC), end_ms=end
    )
    assert result == expected


def test_next_run_ms_many_missed_slots_never_returns_past() -> None:
    """However late the round, the next run is never before now."""
    now = ms(2026, 1, 8, 15, 3, 7)
    for slot in range(ms(2026, 1, 8, 8), now, 600_000):
        result = next_run_ms(
            slot_ms=slot, now_ms=now, interval_s=600, calendar=cal(DAY_WINDOW, UTC), end_ms=None
        )
        assert result is not None and result >= now


# --- reorder_ms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_s", "end", "expected"),
    [
        pytest.param(-7200, None, ms(2026, 1, 8, 11), id="negative-clamped-to-now"),
        pytest.param(-1800, None, ms(2026, 1, 8, 11, 30), id="negative-after-now"),
        pytest.param(0, None, ms(2026, 1, 8, 12), id="zero"),
        pytest.param(3600, None, ms(2026, 1, 8, 13), id="positive-inside"),
        pytest.param(9 * 3600, None, ms(2026, 1, 9, 8), id="positive-moved-into-window"),
        pytest.param(3600, ms(2026, 1, 8, 13), ms(2026, 1, 8, 13), id="end-equal"),
        pytest.param(9 * 3600, ms(2026, 1, 8, 23), None, id="after-end"),
    ],
)
def test_reorder_ms_table_shifts_clamps_and_windows(
    offset_s: int, end: int | None, expected: int | None
) -> None:
    """Next run moves by the offset, never before now, into the window; None past the end."""
    result = reorder_ms(
        next_ms=ms(2026, 1, 8, 12),
        offset_s=offset_s,
        now_ms=ms(2026, 1, 8, 11),
        calendar=cal(DAY_WINDOW, UTC),
        end_ms=end,
    )
    assert result == expected


# --- upcoming_ms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_ms", "count", "end", "expected_hours"),
    [
        pytest.param(ms(2026, 1, 8, 10), 3, None, [(8, 10), (8, 11), (8, 12)], id="count"),
        pytest.param(ms(2026, 1, 8, 10), 0, None, [], id="count-zero"),
        pytest.param(None, 3, None, [], id="no-next"),
        pytest.param(
            ms(2026, 1, 8, 10), 5, ms(2026, 1, 8, 11, 30), [(8, 10), (8, 11)], id="stops-at-end"
        ),
        pytest.param(
            ms(2026, 1, 8, 10),
            5,
            ms(2026, 1, 8, 12),
            [(8, 10), (8, 11), (8, 12)],
            id="end-inclusive",
        ),
        pytest.param(ms(2026, 1, 8, 10), 3, ms(2026, 1, 8, 9), [], id="next-after-end"),
        pytest.param(
            ms(2026, 1, 8, 18),
            4,
            None,
            [(8, 18), (8, 19), (9, 8), (9, 9)],
            id="skips-outside-window",
        ),
    ],
)
def test_upcoming_ms_table_lists_following_slots(
    next_ms: int | None, count: int, end: int | None, expected_hours: list[tuple[int, int]]
) -> None:
    """Up to count runs from next_ms, each as if the previous ran on time, within window and end."""
    runs = upcoming_ms(
        next_ms=next_ms, count=count, interval_s=HOUR_S, calendar=cal(DAY_WINDOW, UTC), end_ms=end
    )
    assert runs == [ms(2026, 1, day, hour) for day, hour in expected_hours]


# --- to_local_iso -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "tz", "expected"),
    [
        pytest.param(ms(2026, 1, 8, 3, 30), SHANGHAI, "2026-01-08T11:30:00+08:00", id="seconds"),
        pytest.param(
            ms(2026, 1, 8, 3, 30) + 250, SHANGHAI, "2026-01-08T11:30:00.250+08:00", id="millis"
        ),
        pytest.param(ms(2026, 1, 8, 3, 30), UTC, "2026-01-08T03:30:00+00:00", id="utc"),
        pytest.param(ms(2026, 7, 8, 3, 30), BERLIN, "2026-07-08T05:30:00+02:00", id="summer-time"),
        pytest.param(
            ms(1969, 12, 31, 23, 59, 59, 999000),
            UTC,
            "1969-12-31T23:59:59.999+00:00",
            id="pre-epoch",
        ),
        pytest.param(None, SHANGHAI, None, id="none"),
    ],
)
def test_to_local_iso_formats_with_offset(
    t: int | None, tz: ZoneInfo, expected: str | None
) -> None:
    """Local ISO 8601 with offset; milliseconds only when non-zero; None stays None."""
    assert to_local_iso(t, tz) == expected
