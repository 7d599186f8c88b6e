"""Specification tests for the calendar of taskdispatch.domain.schedule: windows, weekdays, blackout
dates, DST and jitter (docs/semantics.md, "Calendar" and "Jitter"), as tables and as
properties checked against a brute-force oracle written independently in this file."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskdispatch.domain.schedule import (
    Calendar,
    ScheduleError,
    hour_window,
    in_window,
    jitter_ms,
    next_run_ms,
    next_window_start,
    occurrence_end,
    parse_blackout,
    parse_weekdays,
    parse_windows,
    start_ms,
    upcoming_ms,
    window_spans,
)

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
SANTIAGO = ZoneInfo("America/Santiago")
SHANGHAI = ZoneInfo("Asia/Shanghai")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HOUR_S = 3600
SEED = "task-1"


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


def calendar(
    windows: list[str],
    tz: ZoneInfo,
    weekdays: list[int] | None = None,
    blackout: list[str] | None = None,
) -> Calendar:
    """A Calendar built through the product's parsers (all weekdays, no blackout by default)."""
    return Calendar(
        windows=parse_windows(windows),
        tz=tz,
        weekdays=parse_weekdays(weekdays if weekdays is not None else [1, 2, 3, 4, 5, 6, 7]),
        blackout=parse_blackout(blackout or []),
    )


def local_iso(t_ms: int, tz: ZoneInfo) -> str:
    """An instant as local ISO 8601 with offset (for readable assertion messages)."""
    return datetime.fromtimestamp(t_ms / 1000, tz).isoformat(timespec="milliseconds")


# --- the oracle -----------------------------------------------------------------------------------
# Independent of schedule.py: it only converts instants to local wall clocks, minute by minute,
# and reads the rule of docs/semantics.md literally. An occurrence of a window on an allowed
# local day d runs from the first instant whose wall clock shows d + start to the last instant
# whose wall clock shows the end (a wall time lost in a spring gap: the first instant after it).


@dataclass(frozen=True)
class Spec:
    """The oracle's view of a calendar: raw (unmerged) windows, weekdays, blackout ranges."""

    zone: str
    windows: tuple[tuple[int, int], ...]  # local minutes [start, end), end past 1440 wraps
    weekdays: frozenset[int]
    blackout: tuple[tuple[date, date], ...]  # inclusive


def window_minutes(item: str) -> tuple[int, int]:
    """'22:00-02:00' -> (1320, 1560): an end not after the start is on the next day."""
    start = int(item[0:2]) * 60 + int(item[3:5])
    end = int(item[6:8]) * 60 + int(item[9:11])
    return (start, end if end > start else end + 1440)


def spec_of(
    zone: str, windows: list[str], weekdays: Iterable[int], blackout: Iterable[tuple[date, date]]
) -> Spec:
    """The oracle Spec for the same inputs as a Calendar."""
    return Spec(
        zone=zone,
        windows=tuple(window_minutes(item) for item in windows),
        weekdays=frozenset(weekdays),
        blackout=tuple(blackout),
    )


def wall_of(t_ms: int, tz: ZoneInfo) -> datetime:
    """The naive local wall clock at an instant."""
    return datetime.fromtimestamp(t_ms / 1000, tz).replace(tzinfo=None)


def utc_midnight(day: date) -> int:
    """Epoch ms of 00:00 UTC on ``day``."""
    return ms(day.year, day.month, day.day)


@cache
def utc_day_scan(
    zone: str, day: date
) -> tuple[tuple[tuple[int, datetime], ...], dict[datetime, int], dict[datetime, int]]:
    """Each minute of the UTC day ``day`` with the wall clock it shows in ``zone``, and the
    first and the last of those minutes showing each wall time."""
    tz = ZoneInfo(zone)
    base = utc_midnight(day)
    rows = tuple((base + i * MIN_MS, wall_of(base + i * MIN_MS, tz)) for i in range(1440))
    first: dict[datetime, int] = {}
    last: dict[datetime, int] = {}
    for t, wall in rows:
        first.setdefault(wall, t)
        last[wall] = t
    return rows, first, last


def scanned_days(day: date) -> list[date]:
    """The UTC days scanned for wall times of local ``day`` and the next: day-1 .. day+2."""
    return [day + timedelta(days=k) for k in range(-1, 3)]


def first_after_gap(zone: str, day: date, wall: datetime) -> int:
    """The first scanned instant whose wall clock is past ``wall`` (lost in a spring gap)."""
    return next(
        t
        for utc_day in scanned_days(day)
        for t, shown in utc_day_scan(zone, utc_day)[0]
        if shown > wall
    )


def first_showing(zone: str, day: date, wall: datetime) -> int:
    """The first instant showing ``wall`` (a wall time of local ``day`` or the next), or the
    first instant after the gap that swallowed it."""
    found = [first[wall] for u in scanned_days(day) if wall in (first := utc_day_scan(zone, u)[1])]
    return min(found) if found else first_after_gap(zone, day, wall)


def last_showing(zone: str, day: date, wall: datetime) -> int:
    """The last instant showing ``wall`` (a wall time of local ``day`` or the next), or the
    first instant after the gap that swallowed it."""
    found = [last[wall] for u in scanned_days(day) if wall in (last := utc_day_scan(zone, u)[2])]
    return max(found) if found else first_after_gap(zone, day, wall)


@cache
def oracle_occurrences(spec: Spec, day: date) -> tuple[tuple[int, int], ...]:
    """The [start, end) instants of the windows that begin on local ``day`` (none if the day's
    weekday is not listed or it is a blackout date); empty occurrences are left out."""
    if day.isoweekday() not in spec.weekdays:
        return ()
    if any(first <= day <= last for first, last in spec.blackout):
        return ()
    midnight = datetime.combine(day, time())
    out = []
    for start, end in spec.windows:
        a = first_showing(spec.zone, day, midnight + timedelta(minutes=start))
        b = last_showing(spec.zone, day, midnight + timedelta(minutes=end))
        if a < b:
            out.append((a, b))
    return tuple(out)


def oracle_days(spec: Spec, t_ms: int) -> list[date]:
    """Local days whose occurrences can hold ``t_ms`` (generously: three before to one after)."""
    today = wall_of(t_ms, ZoneInfo(spec.zone)).date()
    return [today + timedelta(days=k) for k in range(-3, 2)]


def oracle_allowed(spec: Spec, t_ms: int) -> bool:
    """Whether a round may start at ``t_ms``: inside an occurrence of an allowed day."""
    return any(
        a <= t_ms < b for day in oracle_days(spec, t_ms) for a, b in oracle_occurrences(spec, day)
    )


def merged_ranges(windows: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Ranges of one day that overlap or touch are one window (docs/semantics.md)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def oracle_occurrence_end(spec: Spec, t_ms: int) -> int:
    """The latest end of the occurrences of the (merged) windows holding ``t_ms``, which must
    be allowed: the occurrence a slot was placed in, which jitter must not leave."""
    merged = replace(spec, windows=merged_ranges(spec.windows))
    return max(
        b
        for day in oracle_days(merged, t_ms)
        for a, b in oracle_occurrences(merged, day)
        if a <= t_ms < b
    )


def oracle_next(spec: Spec, t_ms: int) -> int:
    """The first allowed instant >= ``t_ms``: ``t_ms`` itself, else the earliest occurrence
    start after it (every day is searched until no later day can start earlier)."""
    if oracle_allowed(spec, t_ms):
        return t_ms
    day = oracle_days(spec, t_ms)[0]
    limit = day + timedelta(days=60)
    best: int | None = None
    # An occurrence of `day` cannot start before utc_midnight(day) - 1 day (offsets < 24 h).
    while best is None or utc_midnight(day) - DAY_MS <= best:
        for a, _ in oracle_occurrences(spec, day):
            if a >= t_ms and (best is None or a < best):
                best = a
        day += timedelta(days=1)
        assert day < limit, "the oracle found no window in 60 days"
    return best


def oracle_spans(spec: Spec, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
    """The parts of [from_ms, to_ms) inside an occurrence, merged, earliest first."""
    first_day = oracle_days(spec, from_ms)[0]
    last_day = oracle_days(spec, to_ms)[-1]
    parts = sorted(
        (max(a, from_ms), min(b, to_ms))
        for k in range((last_day - first_day).days + 1)
        for a, b in oracle_occurrences(spec, first_day + timedelta(days=k))
        if max(a, from_ms) < min(b, to_ms)
    )
    merged: list[tuple[int, int]] = []
    for lo, hi in parts:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


# --- parse_windows --------------------------------------------------------------------------------

FORTY_EIGHT = [f"{h:02d}:00-{h:02d}:15" for h in range(24)] + [
    f"{h:02d}:30-{h:02d}:45" for h in range(24)
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(["09:00-11:30"], ((540, 690),), id="one-range"),
        pytest.param(["22:00-02:00"], ((1320, 1560),), id="wraps-midnight"),
        pytest.param(["00:00-24:00"], ((0, 1440),), id="all-day"),
        pytest.param(["22:00-00:00"], ((1320, 1440),), id="until-midnight-as-00"),
        pytest.param(["23:00-24:00"], ((1380, 1440),), id="until-midnight-as-24"),
        pytest.param(["23:45-00:15"], ((1425, 1455),), id="short-wrap"),
        pytest.param(["00:00-00:01"], ((0, 1),), id="first-minute"),
        pytest.param(["23:59-24:00"], ((1439, 1440),), id="last-minute"),
        pytest.param(["14:00-17:00", "09:00-11:30"], ((540, 690), (840, 1020)), id="sorted"),
        pytest.param(["08:00-12:00", "12:00-14:00"], ((480, 840),), id="touching-merged"),
        pytest.param(["08:00-12:00", "10:00-14:00"], ((480, 840),), id="overlapping-merged"),
        pytest.param(["08:00-18:00", "09:00-10:00"], ((480, 1080),), id="contained-merged"),
        pytest.param(["09:00-10:00", "09:00-10:00"], ((540, 600),), id="duplicate-merged"),
        pytest.param(
            ["10:00-11:00", "08:00-09:00", "09:00-10:00"], ((480, 660),), id="chain-merged"
        ),
        pytest.param(["20:00-02:00", "23:00-04:00"], ((1200, 1680),), id="two-wraps-merged"),
        pytest.param(["20:00-23:00", "22:00-01:00"], ((1200, 1500),), id="wrap-extends-evening"),
        pytest.param(
            ["22:00-02:00", "01:00-03:00"], ((60, 180), (1320, 1560)), id="wrap-and-morning-kept"
        ),
        pytest.param(
            FORTY_EIGHT,
            tuple(sorted((h * 60 + m, h * 60 + m + 15) for h in range(24) for m in (0, 30))),
            id="48-ranges",
        ),
    ],
)
def test_parse_windows_valid_value_returns_merged_minute_ranges(
    value: list[str], expected: tuple[tuple[int, int], ...]
) -> None:
    """Valid 'HH:MM-HH:MM' lists become sorted minute ranges, same-day overlaps merged."""
    assert parse_windows(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["9:00-11:00"], id="one-digit-hour"),
        pytest.param(["09:00-11:0"], id="one-digit-minute"),
        pytest.param(["0900-1100"], id="no-colons"),
        pytest.param(["09:00–11:00"], id="en-dash"),
        pytest.param(["09:00 - 11:00"], id="spaces"),
        pytest.param(["09:00-11:00 "], id="trailing-space"),
        pytest.param(["09:00-11:00\n"], id="trailing-newline"),
        pytest.param(["09:00-11:00,12:00-13:00"], id="two-in-one-string"),
        pytest.param(["09:00"], id="no-end"),
        pytest.param([""], id="empty-string"),
        pytest.param(["09:60-11:00"], id="start-minute-60"),
        pytest.param(["09:00-11:60"], id="end-minute-60"),
        pytest.param(["24:00-02:00"], id="hour-24-as-start"),
        pytest.param(["25:00-02:00"], id="start-hour-25"),
        pytest.param(["10:00-24:30"], id="end-24-30"),
        pytest.param(["10:00-25:00"], id="end-hour-25"),
        pytest.param(["12:00-12:00"], id="start-equals-end"),
        pytest.param(["00:00-00:00"], id="midnight-to-midnight"),
        pytest.param([], id="empty-list"),
        pytest.param([930], id="integer-item"),
        pytest.param([None], id="null-item"),
        pytest.param([["09:00", "11:00"]], id="list-item"),
        pytest.param(["09:00-11:00", 5], id="second-item-integer"),
        pytest.param("09:00-11:00", id="string-not-list"),
        pytest.param(None, id="null"),
        pytest.param({"09:00": "11:00"}, id="object"),
        pytest.param(("09:00-11:00",), id="tuple-not-json-list"),
        pytest.param([*FORTY_EIGHT, "23:50-23:55"], id="49-ranges"),
    ],
)
def test_parse_windows_invalid_value_raises_naming_windows(value: Any) -> None:
    """Every malformed windows value raises ScheduleError with the windows message."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_windows(value)
    assert excinfo.value.key == "windows_format"
    assert str(excinfo.value).startswith("windows 必须是 'HH:MM-HH:MM'")


@pytest.mark.parametrize(
    "item",
    [
        pytest.param("０９:００-１１:００", id="fullwidth-digits"),
        pytest.param("٠٩:٠٠-١١:٠٠", id="arabic-indic-digits"),
    ],
)
def test_parse_windows_non_ascii_digits_raises(item: str) -> None:
    """'HH:MM' means ASCII digits: other Unicode digits are not a documented form."""
    with pytest.raises(ScheduleError):
        parse_windows([item])


# --- hour_window ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param((8, 22), ((480, 1320),), id="day"),
        pytest.param((22, 6), ((1320, 1800),), id="wraps"),
        pytest.param((22, 0), ((1320, 1440),), id="until-midnight"),
        pytest.param((20, 24), ((1200, 1440),), id="until-24"),
        pytest.param((0, 24), ((0, 1440),), id="all-day"),
    ],
)
def test_hour_window_valid_time_range_returns_minute_window(
    window: tuple[int, int], expected: tuple[tuple[int, int], ...]
) -> None:
    """valid_time_range [start, end] is the one window 'start:00-end:00'."""
    assert hour_window(window) == expected


# --- parse_weekdays -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([1, 2, 3, 4, 5], frozenset({1, 2, 3, 4, 5}), id="workdays"),
        pytest.param([7], frozenset({7}), id="sunday"),
        pytest.param([1, 2, 3, 4, 5, 6, 7], frozenset(range(1, 8)), id="all"),
        pytest.param([6, 1], frozenset({1, 6}), id="unsorted"),
        pytest.param([5, 5], frozenset({5}), id="duplicate"),
    ],
)
def test_parse_weekdays_valid_value_returns_iso_weekday_set(
    value: list[int], expected: frozenset[int]
) -> None:
    """A non-empty list of ISO weekdays 1..7 becomes a frozenset."""
    assert parse_weekdays(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([], id="empty"),
        pytest.param([0], id="zero"),
        pytest.param([8], id="eight"),
        pytest.param([-1], id="negative"),
        pytest.param([1, 8], id="one-bad-of-two"),
        pytest.param([True], id="bool-true"),
        pytest.param([1, False], id="bool-false"),
        pytest.param([1.0], id="float"),
        pytest.param(["1"], id="string-item"),
        pytest.param([None], id="null-item"),
        pytest.param(None, id="null"),
        pytest.param("12345", id="string"),
        pytest.param(5, id="integer"),
    ],
)
def test_parse_weekdays_invalid_value_raises_naming_weekdays(value: Any) -> None:
    """Empty lists, 0, 8, booleans and non-integers raise the weekdays message."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_weekdays(value)
    assert excinfo.value.key == "weekdays_format"
    assert str(excinfo.value).startswith("weekdays 必须是 1..7")


# --- parse_blackout -------------------------------------------------------------------------------


def d(text: str) -> date:
    """A date from 'YYYY-MM-DD'."""
    return date.fromisoformat(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([], (), id="none"),
        pytest.param(["2027-02-10"], ((d("2027-02-10"), d("2027-02-10")),), id="single-date"),
        pytest.param(["2027-02-10..2027-02-17"], ((d("2027-02-10"), d("2027-02-17")),), id="range"),
        pytest.param(
            ["2027-02-10..2027-02-10"], ((d("2027-02-10"), d("2027-02-10")),), id="one-day-range"
        ),
        pytest.param(
            ["2026-12-30..2027-01-02"], ((d("2026-12-30"), d("2027-01-02")),), id="over-new-year"
        ),
        pytest.param(
            ["2027-02-10..2027-02-15", "2027-02-12..2027-02-20"],
            ((d("2027-02-10"), d("2027-02-20")),),
            id="overlapping-merged",
        ),
        pytest.param(
            ["2027-02-10..2027-02-20", "2027-02-12..2027-02-14"],
            ((d("2027-02-10"), d("2027-02-20")),),
            id="contained-merged",
        ),
        pytest.param(
            ["2027-02-10", "2027-02-11"],
            ((d("2027-02-10"), d("2027-02-11")),),
            id="adjacent-dates-merged",
        ),
        pytest.param(
            ["2027-02-13..2027-02-15", "2027-02-10..2027-02-12"],
            ((d("2027-02-10"), d("2027-02-15")),),
            id="adjacent-ranges-merged-unsorted",
        ),
        pytest.param(
            ["2027-02-10", "2027-02-10"], ((d("2027-02-10"), d("2027-02-10")),), id="duplicate"
        ),
        pytest.param(
            ["2027-02-12", "2027-02-10"],
            ((d("2027-02-10"), d("2027-02-10")), (d("2027-02-12"), d("2027-02-12"))),
            id="one-day-apart-kept-sorted",
        ),
        pytest.param(
            [(date(2027, 1, 1) + timedelta(days=k)).isoformat() for k in range(366)],
            ((d("2027-01-01"), d("2028-01-01")),),
            id="366-dates",
        ),
    ],
)
def test_parse_blackout_valid_value_returns_merged_date_ranges(
    value: list[str], expected: tuple[tuple[date, date], ...]
) -> None:
    """Dates and inclusive ranges become sorted ranges, overlapping or adjacent ones merged."""
    assert parse_blackout(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["2027-02-17..2027-02-10"], id="reversed-range"),
        pytest.param(["2027-02-30"], id="no-such-day"),
        pytest.param(["2027-13-01"], id="month-13"),
        pytest.param(["2027-2-10"], id="one-digit-month"),
        pytest.param(["2027/02/10"], id="slashes"),
        pytest.param(["tomorrow"], id="word"),
        pytest.param([""], id="empty-string"),
        pytest.param(["..2027-02-10"], id="no-start"),
        pytest.param(["2027-02-10..2027-02-3x"], id="bad-end"),
        pytest.param(["2027-02-10..2027-02-12..2027-02-14"], id="three-parts"),
        pytest.param([" 2027-02-10"], id="leading-space"),
        pytest.param([20270210], id="integer-item"),
        pytest.param([None], id="null-item"),
        pytest.param("2027-02-10", id="string-not-list"),
        pytest.param(None, id="null"),
        pytest.param(["2027-01-01"] * 367, id="367-items"),
    ],
)
def test_parse_blackout_invalid_value_raises_naming_blackout_dates(value: Any) -> None:
    """Unparsable dates, reversed ranges and non-lists raise the blackout_dates message."""
    with pytest.raises(ScheduleError) as excinfo:
        parse_blackout(value)
    assert excinfo.value.key == "blackout_format"
    assert str(excinfo.value).startswith("blackout_dates 必须是日期 'YYYY-MM-DD'")


@pytest.mark.parametrize(
    "item",
    [
        pytest.param("2027-02-10..", id="dangling-range-separator"),
        pytest.param("20270210", id="basic-format"),
        pytest.param("2027-W06-3", id="iso-week-date"),
    ],
)
def test_parse_blackout_undocumented_date_form_raises(item: str) -> None:
    """Only 'YYYY-MM-DD' and 'YYYY-MM-DD..YYYY-MM-DD' are documented blackout forms."""
    with pytest.raises(ScheduleError):
        parse_blackout([item])


# --- in_window: several windows a day, weekdays, blackout -----------------------------------------

SH_THREE = calendar(["09:00-11:30", "14:00-17:00", "22:00-02:00"], SHANGHAI)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        pytest.param(ms(2026, 1, 7, 8, 59, 59, 999000, tz=SHANGHAI), False, id="before-first"),
        pytest.param(ms(2026, 1, 7, 9, tz=SHANGHAI), True, id="first-start"),
        pytest.param(ms(2026, 1, 7, 11, 29, 59, 999000, tz=SHANGHAI), True, id="first-last-ms"),
        pytest.param(ms(2026, 1, 7, 11, 30, tz=SHANGHAI), False, id="first-end-exclusive"),
        pytest.param(ms(2026, 1, 7, 12, 45, tz=SHANGHAI), False, id="between"),
        pytest.param(ms(2026, 1, 7, 14, tz=SHANGHAI), True, id="second-start"),
        pytest.param(ms(2026, 1, 7, 17, tz=SHANGHAI), False, id="second-end-exclusive"),
        pytest.param(ms(2026, 1, 7, 21, 59, 59, 999000, tz=SHANGHAI), False, id="before-wrap"),
        pytest.param(ms(2026, 1, 7, 22, tz=SHANGHAI), True, id="wrap-start"),
        pytest.param(ms(2026, 1, 8, 0, tz=SHANGHAI), True, id="wrap-midnight"),
        pytest.param(ms(2026, 1, 8, 1, 59, 59, 999000, tz=SHANGHAI), True, id="wrap-last-ms"),
        pytest.param(ms(2026, 1, 8, 2, tz=SHANGHAI), False, id="wrap-end-exclusive"),
    ],
)
def test_in_window_several_windows_a_day_matches_each_range(t: int, expected: bool) -> None:
    """With three windows (one wrapping) each range is open [start, end) in local time."""
    assert in_window(t, SH_THREE) is expected


# 2026-01-08 is a Thursday, 01-09 a Friday, 01-10 a Saturday.
SH_FRIDAY_NIGHT = calendar(["22:00-02:00"], SHANGHAI, weekdays=[5])
SH_WORKDAYS = calendar(["09:00-17:00"], SHANGHAI, weekdays=[1, 2, 3, 4, 5])
# 2026-03-29 (Sunday) loses 02:00-03:00 in Berlin; 2026-04-05 (Sunday) starts at 00:00 in
# Santiago after the 23:00-24:00 hour of Saturday ran twice.
BERLIN_SUNDAY = calendar(["01:00-05:00"], BERLIN, weekdays=[7])
SANTIAGO_SATURDAY_WRAP = calendar(["23:30-00:30"], SANTIAGO, weekdays=[6])
SANTIAGO_SUNDAY = calendar(["00:00-01:00"], SANTIAGO, weekdays=[7])


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(
            ms(2026, 1, 9, 1, tz=SHANGHAI), SH_FRIDAY_NIGHT, False, id="fri-0100-began-thursday"
        ),
        pytest.param(ms(2026, 1, 9, 22, tz=SHANGHAI), SH_FRIDAY_NIGHT, True, id="fri-2200"),
        pytest.param(
            ms(2026, 1, 10, 1, tz=SHANGHAI), SH_FRIDAY_NIGHT, True, id="sat-0100-began-friday"
        ),
        pytest.param(
            ms(2026, 1, 10, 1, 59, 59, 999000, tz=SHANGHAI),
            SH_FRIDAY_NIGHT,
            True,
            id="sat-0159-last-ms",
        ),
        pytest.param(ms(2026, 1, 10, 2, tz=SHANGHAI), SH_FRIDAY_NIGHT, False, id="sat-0200-end"),
        pytest.param(ms(2026, 1, 10, 22, tz=SHANGHAI), SH_FRIDAY_NIGHT, False, id="sat-2200"),
        pytest.param(ms(2026, 1, 8, 23, tz=SHANGHAI), SH_FRIDAY_NIGHT, False, id="thu-2300"),
        pytest.param(ms(2026, 1, 9, 12, tz=SHANGHAI), SH_WORKDAYS, True, id="workday-friday"),
        pytest.param(ms(2026, 1, 10, 12, tz=SHANGHAI), SH_WORKDAYS, False, id="workday-saturday"),
        pytest.param(ms(2026, 1, 11, 12, tz=SHANGHAI), SH_WORKDAYS, False, id="workday-sunday"),
        pytest.param(ms(2026, 1, 12, 9, tz=SHANGHAI), SH_WORKDAYS, True, id="workday-monday"),
        # 2026-03-29 00:00 UTC = 01:00 CET (open); 02:59 UTC = 04:59 CEST (open).
        pytest.param(ms(2026, 3, 29, 0), BERLIN_SUNDAY, True, id="berlin-sunday-0100-cet"),
        pytest.param(ms(2026, 3, 29, 2, 59), BERLIN_SUNDAY, True, id="berlin-sunday-0459-cest"),
        pytest.param(ms(2026, 3, 29, 3), BERLIN_SUNDAY, False, id="berlin-sunday-0500-end"),
        pytest.param(ms(2026, 3, 28, 0), BERLIN_SUNDAY, False, id="berlin-saturday-0100"),
        # 2026-04-05 04:15 UTC = Sunday 00:15 -04, in Saturday's window (02:30..04:30 UTC).
        pytest.param(
            ms(2026, 4, 5, 4, 15), SANTIAGO_SATURDAY_WRAP, True, id="santiago-sat-wrap-into-sun"
        ),
        # 2026-04-05 03:30 UTC = Saturday 23:30 -04 (the second pass): Saturday's window.
        pytest.param(
            ms(2026, 4, 5, 3, 30), SANTIAGO_SATURDAY_WRAP, True, id="santiago-sat-second-2330"
        ),
        pytest.param(
            ms(2026, 4, 5, 3, 30), SANTIAGO_SUNDAY, False, id="santiago-sun-not-at-sat-2330"
        ),
        pytest.param(ms(2026, 4, 5, 4), SANTIAGO_SUNDAY, True, id="santiago-sun-0000-minus-4"),
    ],
)
def test_in_window_weekdays_judged_on_start_day_matches(
    t: int, cal: Calendar, expected: bool
) -> None:
    """Windows begin only on listed weekdays; a wrapping one belongs to the day it starts on."""
    assert in_window(t, cal) is expected


SH_WRAP_BLACKOUT = calendar(["22:00-02:00"], SHANGHAI, blackout=["2027-02-10"])
SH_DAY_BLACKOUT = calendar(["09:00-17:00"], SHANGHAI, blackout=["2027-02-10..2027-02-12"])


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(ms(2027, 2, 9, 23, tz=SHANGHAI), SH_WRAP_BLACKOUT, True, id="eve-2300"),
        pytest.param(
            ms(2027, 2, 10, 1, tz=SHANGHAI), SH_WRAP_BLACKOUT, True, id="blackout-0100-from-eve"
        ),
        pytest.param(ms(2027, 2, 10, 23, tz=SHANGHAI), SH_WRAP_BLACKOUT, False, id="blackout-2300"),
        pytest.param(
            ms(2027, 2, 11, 1, tz=SHANGHAI), SH_WRAP_BLACKOUT, False, id="after-0100-began-in-it"
        ),
        pytest.param(ms(2027, 2, 11, 22, tz=SHANGHAI), SH_WRAP_BLACKOUT, True, id="after-2200"),
        pytest.param(ms(2027, 2, 9, 12, tz=SHANGHAI), SH_DAY_BLACKOUT, True, id="range-day-before"),
        pytest.param(ms(2027, 2, 10, 9, tz=SHANGHAI), SH_DAY_BLACKOUT, False, id="range-first"),
        pytest.param(ms(2027, 2, 11, 12, tz=SHANGHAI), SH_DAY_BLACKOUT, False, id="range-middle"),
        pytest.param(ms(2027, 2, 12, 16, tz=SHANGHAI), SH_DAY_BLACKOUT, False, id="range-last"),
        pytest.param(ms(2027, 2, 13, 9, tz=SHANGHAI), SH_DAY_BLACKOUT, True, id="range-day-after"),
    ],
)
def test_in_window_blackout_dates_no_window_begins_matches(
    t: int, cal: Calendar, expected: bool
) -> None:
    """No window begins on a blackout date; one begun the evening before still runs."""
    assert in_window(t, cal) is expected


# --- next_window_start: weekdays and blackout -----------------------------------------------------


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(
            ms(2026, 1, 12, 10, 0, 0, 123000, tz=SHANGHAI),
            SH_WORKDAYS,
            ms(2026, 1, 12, 10, 0, 0, 123000, tz=SHANGHAI),
            id="inside-is-itself",
        ),
        pytest.param(
            ms(2026, 1, 12, 8, 59, 59, 999000, tz=SHANGHAI),
            SH_WORKDAYS,
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            id="one-ms-before",
        ),
        pytest.param(
            ms(2026, 1, 12, 17, tz=SHANGHAI),
            SH_WORKDAYS,
            ms(2026, 1, 13, 9, tz=SHANGHAI),
            id="at-end-next-morning",
        ),
        pytest.param(
            ms(2026, 1, 9, 18, tz=SHANGHAI),
            SH_WORKDAYS,
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            id="friday-evening-to-monday",
        ),
        pytest.param(
            ms(2026, 1, 10, 10, tz=SHANGHAI),
            SH_WORKDAYS,
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            id="saturday-to-monday",
        ),
        pytest.param(
            ms(2026, 1, 9, 18, tz=SHANGHAI),
            calendar(["09:00-17:00"], SHANGHAI, weekdays=[1, 2, 3, 4, 5], blackout=["2026-01-12"]),
            ms(2026, 1, 13, 9, tz=SHANGHAI),
            id="weekend-and-blackout-monday",
        ),
        pytest.param(
            ms(2026, 1, 9, 18, tz=SHANGHAI),
            calendar(["09:00-17:00"], SHANGHAI, blackout=["2026-01-10..2026-01-20"]),
            ms(2026, 1, 21, 9, tz=SHANGHAI),
            id="blackout-range",
        ),
        pytest.param(
            ms(2026, 1, 9, 18, tz=SHANGHAI),
            calendar(
                ["09:00-17:00"], SHANGHAI, weekdays=[3], blackout=["2026-01-14", "2026-01-15"]
            ),
            ms(2026, 1, 21, 9, tz=SHANGHAI),
            id="blackout-on-only-weekday",
        ),
        pytest.param(
            ms(2026, 1, 9, 1, tz=SHANGHAI),
            SH_FRIDAY_NIGHT,
            ms(2026, 1, 9, 22, tz=SHANGHAI),
            id="friday-0100-waits-for-friday-2200",
        ),
        pytest.param(
            ms(2026, 1, 10, 3, tz=SHANGHAI),
            SH_FRIDAY_NIGHT,
            ms(2026, 1, 16, 22, tz=SHANGHAI),
            id="saturday-to-next-friday",
        ),
        pytest.param(
            ms(2026, 1, 10, 3, tz=SHANGHAI),
            calendar(["22:00-02:00"], SHANGHAI, weekdays=[5], blackout=["2026-01-16"]),
            ms(2026, 1, 23, 22, tz=SHANGHAI),
            id="blacked-out-friday-skipped",
        ),
        pytest.param(
            ms(2027, 2, 10, 3, tz=SHANGHAI),
            SH_WRAP_BLACKOUT,
            ms(2027, 2, 11, 22, tz=SHANGHAI),
            id="wrap-after-blackout-day",
        ),
        pytest.param(
            ms(2027, 2, 10, 1, tz=SHANGHAI),
            SH_WRAP_BLACKOUT,
            ms(2027, 2, 10, 1, tz=SHANGHAI),
            id="wrap-from-eve-still-open",
        ),
        pytest.param(
            ms(2026, 3, 27, 12),
            BERLIN_SUNDAY,
            ms(2026, 3, 29, 0),
            id="berlin-to-sunday-0100-cet",
        ),
    ],
)
def test_next_window_start_weekdays_and_blackout_returns_first_open_instant(
    t: int, cal: Calendar, expected: int
) -> None:
    """The next start skips weekdays off and blackout dates (t itself when already open)."""
    result = next_window_start(t, cal)
    assert result == expected, local_iso(result, cal.tz) if result is not None else None


def test_next_window_start_blackout_longer_than_horizon_returns_none() -> None:
    """A blackout covering the whole search horizon (800 days) leaves no window: None."""
    cal = calendar(["09:00-17:00"], SHANGHAI, blackout=["2026-01-01..2028-12-31"])
    assert next_window_start(ms(2026, 1, 5, tz=SHANGHAI), cal) is None


# --- DST: Europe/Berlin (spring gap 02:00-03:00 on 03-29, repeated 02:00-03:00 on 10-25) ----------

BERLIN_SPRING_0230 = calendar(["02:30-06:00"], BERLIN)
BERLIN_0210_0250 = calendar(["02:10-02:50"], BERLIN)
BERLIN_0100_0230 = calendar(["01:00-02:30"], BERLIN)
BERLIN_0200_0300 = calendar(["02:00-03:00"], BERLIN)


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        # spring, 2026-03-29: 00:59:59.999 UTC = 01:59:59.999 CET; 01:00 UTC = 03:00 CEST.
        pytest.param(
            ms(2026, 3, 29, 0, 59, 59, 999000), BERLIN_SPRING_0230, False, id="spring-0159-cet"
        ),
        pytest.param(ms(2026, 3, 29, 1), BERLIN_SPRING_0230, True, id="spring-0230-opens-0300"),
        pytest.param(
            ms(2026, 3, 29, 3, 59, 59, 999000), BERLIN_SPRING_0230, True, id="spring-0559-cest"
        ),
        pytest.param(ms(2026, 3, 29, 4), BERLIN_SPRING_0230, False, id="spring-0600-cest"),
        pytest.param(ms(2026, 3, 29, 1), BERLIN_0210_0250, False, id="spring-in-gap-0300"),
        pytest.param(ms(2026, 3, 29, 0, 30), BERLIN_0210_0250, False, id="spring-in-gap-0130"),
        pytest.param(ms(2026, 3, 30, 0, 10), BERLIN_0210_0250, True, id="spring-next-day-0210"),
        pytest.param(ms(2026, 3, 29, 0), BERLIN_0100_0230, True, id="spring-0100-cet"),
        pytest.param(
            ms(2026, 3, 29, 0, 59, 59, 999000), BERLIN_0100_0230, True, id="spring-end-in-gap"
        ),
        pytest.param(ms(2026, 3, 29, 1), BERLIN_0100_0230, False, id="spring-0300-cest-closed"),
        # autumn, 2026-10-25: 00:00-01:00 UTC = 02:xx CEST, 01:00-02:00 UTC = 02:xx CET.
        pytest.param(
            ms(2026, 10, 24, 23, 59, 59, 999000), BERLIN_0200_0300, False, id="autumn-0159-cest"
        ),
        pytest.param(ms(2026, 10, 25, 0), BERLIN_0200_0300, True, id="autumn-first-0200"),
        pytest.param(ms(2026, 10, 25, 1, 30), BERLIN_0200_0300, True, id="autumn-second-0230"),
        pytest.param(
            ms(2026, 10, 25, 1, 59, 59, 999000), BERLIN_0200_0300, True, id="autumn-second-0259"
        ),
        pytest.param(ms(2026, 10, 25, 2), BERLIN_0200_0300, False, id="autumn-0300-cet"),
        pytest.param(ms(2026, 10, 24, 23), BERLIN_0100_0230, True, id="autumn-0100-cest"),
        pytest.param(ms(2026, 10, 25, 0, 45), BERLIN_0100_0230, True, id="autumn-first-0245"),
        pytest.param(ms(2026, 10, 25, 1, 15), BERLIN_0100_0230, True, id="autumn-second-0215"),
        pytest.param(ms(2026, 10, 25, 1, 30), BERLIN_0100_0230, False, id="autumn-second-0230"),
        pytest.param(ms(2026, 10, 25, 0, 5), BERLIN_0210_0250, False, id="autumn-first-0205"),
        pytest.param(ms(2026, 10, 25, 0, 10), BERLIN_0210_0250, True, id="autumn-first-0210"),
        # From the first 02:10 to the last 02:50: the wall-clock 02:50..02:10 between is inside.
        pytest.param(ms(2026, 10, 25, 1), BERLIN_0210_0250, True, id="autumn-second-0200"),
        pytest.param(ms(2026, 10, 25, 1, 49), BERLIN_0210_0250, True, id="autumn-second-0249"),
        pytest.param(ms(2026, 10, 25, 1, 50), BERLIN_0210_0250, False, id="autumn-second-0250"),
        pytest.param(ms(2026, 10, 25, 0, 15), BERLIN_SPRING_0230, False, id="autumn-first-0215"),
        pytest.param(ms(2026, 10, 25, 0, 30), BERLIN_SPRING_0230, True, id="autumn-first-0230"),
        pytest.param(ms(2026, 10, 25, 1, 15), BERLIN_SPRING_0230, True, id="autumn-second-0215"),
    ],
)
def test_in_window_berlin_dst_minute_windows_follow_occurrence_rule(
    t: int, cal: Calendar, expected: bool
) -> None:
    """Berlin DST: gap edges mean the gap's end; occurrences span both repeated passes."""
    assert in_window(t, cal) is expected, local_iso(t, BERLIN)


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(ms(2026, 3, 29, 0), BERLIN_SPRING_0230, ms(2026, 3, 29, 1), id="spring-0300"),
        pytest.param(
            ms(2026, 3, 28, 23), BERLIN_0210_0250, ms(2026, 3, 30, 0, 10), id="spring-lost-day"
        ),
        pytest.param(
            ms(2026, 3, 29, 1), BERLIN_0100_0230, ms(2026, 3, 29, 23), id="spring-after-end"
        ),
        pytest.param(
            ms(2026, 10, 24, 23, 30), BERLIN_SPRING_0230, ms(2026, 10, 25, 0, 30), id="autumn-0230"
        ),
        pytest.param(
            ms(2026, 10, 24, 22), BERLIN_0200_0300, ms(2026, 10, 25, 0), id="autumn-first-0200"
        ),
        pytest.param(
            ms(2026, 10, 25, 2), BERLIN_0200_0300, ms(2026, 10, 26, 1), id="autumn-next-day-cet"
        ),
    ],
)
def test_next_window_start_berlin_dst_returns_occurrence_start(
    t: int, cal: Calendar, expected: int
) -> None:
    """Berlin DST: the next start is the first instant showing the start (or the gap's end)."""
    result = next_window_start(t, cal)
    assert result == expected, local_iso(result, BERLIN) if result is not None else None


# --- DST: America/Santiago (back 04-05 00:00 -> 04-04 23:00, forward 09-06 00:00 -> 01:00) --------


def test_zoneinfo_2026_dst_dates_match_table_assumptions() -> None:
    """The DST tables rely on these 2026 changes (Santiago, Berlin): zoneinfo confirms them."""
    assert local_iso(ms(2026, 4, 5, 2, 59), SANTIAGO) == "2026-04-04T23:59:00.000-03:00"
    assert local_iso(ms(2026, 4, 5, 3), SANTIAGO) == "2026-04-04T23:00:00.000-04:00"
    assert local_iso(ms(2026, 9, 6, 3, 59), SANTIAGO) == "2026-09-05T23:59:00.000-04:00"
    assert local_iso(ms(2026, 9, 6, 4), SANTIAGO) == "2026-09-06T01:00:00.000-03:00"
    assert local_iso(ms(2026, 3, 29, 1), BERLIN) == "2026-03-29T03:00:00.000+02:00"
    assert local_iso(ms(2026, 10, 25, 1), BERLIN) == "2026-10-25T02:00:00.000+01:00"


SANTIAGO_MORNING = calendar(["00:00-06:00"], SANTIAGO)
SANTIAGO_LAST_HOUR = calendar(["23:00-24:00"], SANTIAGO)
SANTIAGO_LOST = calendar(["00:00-00:30"], SANTIAGO)
SANTIAGO_WRAP = calendar(["22:00-01:30"], SANTIAGO)


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        # autumn: 02:00 UTC = 04-04 23:00 -03; 03:00..04:00 UTC = 04-04 23:xx -04 (again).
        pytest.param(ms(2026, 4, 5, 1, 59), SANTIAGO_LAST_HOUR, False, id="autumn-2259"),
        pytest.param(ms(2026, 4, 5, 2), SANTIAGO_LAST_HOUR, True, id="autumn-first-2300"),
        pytest.param(ms(2026, 4, 5, 3, 30), SANTIAGO_LAST_HOUR, True, id="autumn-second-2330"),
        pytest.param(
            ms(2026, 4, 5, 3, 59, 59, 999000), SANTIAGO_LAST_HOUR, True, id="autumn-second-2359"
        ),
        pytest.param(ms(2026, 4, 5, 4), SANTIAGO_LAST_HOUR, False, id="autumn-0000-minus-4"),
        pytest.param(
            ms(2026, 4, 5, 3, 59, 59, 999000), SANTIAGO_MORNING, False, id="autumn-before-0000"
        ),
        pytest.param(ms(2026, 4, 5, 4), SANTIAGO_MORNING, True, id="autumn-0000-opens"),
        pytest.param(ms(2026, 4, 5, 9, 59), SANTIAGO_MORNING, True, id="autumn-0559"),
        pytest.param(ms(2026, 4, 5, 10), SANTIAGO_MORNING, False, id="autumn-0600"),
        # spring: 03:00 UTC = 09-05 23:00 -04; 04:00 UTC = 09-06 01:00 -03 (00:00-01:00 lost).
        pytest.param(
            ms(2026, 9, 6, 3, 59, 59, 999000), SANTIAGO_MORNING, False, id="spring-2359-eve"
        ),
        pytest.param(ms(2026, 9, 6, 4), SANTIAGO_MORNING, True, id="spring-0000-opens-at-0100"),
        pytest.param(ms(2026, 9, 6, 8, 59), SANTIAGO_MORNING, True, id="spring-0559"),
        pytest.param(ms(2026, 9, 6, 9), SANTIAGO_MORNING, False, id="spring-0600"),
        pytest.param(ms(2026, 9, 6, 3), SANTIAGO_LAST_HOUR, True, id="spring-eve-2300"),
        pytest.param(
            ms(2026, 9, 6, 3, 59, 59, 999000), SANTIAGO_LAST_HOUR, True, id="spring-eve-2359"
        ),
        pytest.param(ms(2026, 9, 6, 4), SANTIAGO_LAST_HOUR, False, id="spring-end-at-0100"),
        pytest.param(ms(2026, 9, 6, 4), SANTIAGO_LOST, False, id="spring-window-lost"),
        pytest.param(ms(2026, 9, 7, 3), SANTIAGO_LOST, True, id="spring-next-day-0000"),
        pytest.param(ms(2026, 9, 6, 2), SANTIAGO_WRAP, True, id="spring-wrap-2200"),
        pytest.param(ms(2026, 9, 6, 4, 29), SANTIAGO_WRAP, True, id="spring-wrap-0129"),
        pytest.param(ms(2026, 9, 6, 4, 30), SANTIAGO_WRAP, False, id="spring-wrap-0130-end"),
    ],
)
def test_in_window_santiago_midnight_dst_follows_occurrence_rule(
    t: int, cal: Calendar, expected: bool
) -> None:
    """Santiago changes at midnight: edges at 00:00/24:00 move with the change."""
    assert in_window(t, cal) is expected, local_iso(t, SANTIAGO)


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(ms(2026, 4, 5, 2), SANTIAGO_MORNING, ms(2026, 4, 5, 4), id="autumn-0000"),
        pytest.param(
            ms(2026, 9, 6, 0), SANTIAGO_MORNING, ms(2026, 9, 6, 4), id="spring-0000-is-0100"
        ),
        pytest.param(
            ms(2026, 9, 6, 0),
            calendar(["00:00-06:00"], SANTIAGO, weekdays=[7]),
            ms(2026, 9, 6, 4),
            id="spring-sunday-only",
        ),
        pytest.param(ms(2026, 9, 6, 3, 30), SANTIAGO_LOST, ms(2026, 9, 7, 3), id="spring-lost"),
        pytest.param(
            ms(2026, 4, 4, 20), SANTIAGO_LAST_HOUR, ms(2026, 4, 5, 2), id="autumn-first-2300"
        ),
    ],
)
def test_next_window_start_santiago_midnight_dst_returns_occurrence_start(
    t: int, cal: Calendar, expected: int
) -> None:
    """A window starting at 00:00 on the spring-forward day opens at 01:00 local."""
    result = next_window_start(t, cal)
    assert result == expected, local_iso(result, SANTIAGO) if result is not None else None


# --- occurrence_end -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "cal", "expected"),
    [
        pytest.param(
            ms(2026, 1, 7, 10, tz=SHANGHAI),
            SH_THREE,
            ms(2026, 1, 7, 11, 30, tz=SHANGHAI),
            id="shanghai-morning",
        ),
        pytest.param(
            ms(2026, 1, 8, 1, tz=SHANGHAI),
            SH_THREE,
            ms(2026, 1, 8, 2, tz=SHANGHAI),
            id="shanghai-wrap-after-midnight",
        ),
        pytest.param(ms(2026, 1, 7, 12, tz=SHANGHAI), SH_THREE, None, id="outside"),
        pytest.param(
            ms(2026, 1, 7, 9, 20, tz=SHANGHAI),
            calendar(["22:00-10:00", "09:00-09:30"], SHANGHAI),
            ms(2026, 1, 7, 10, tz=SHANGHAI),
            id="latest-of-two-occurrences",
        ),
        pytest.param(
            ms(2026, 10, 25, 0, 20), BERLIN_0100_0230, ms(2026, 10, 25, 1, 30), id="autumn-second"
        ),
        pytest.param(
            ms(2026, 3, 29, 0, 30), BERLIN_0100_0230, ms(2026, 3, 29, 1), id="spring-gap-end"
        ),
        pytest.param(ms(2026, 4, 5, 2, 30), SANTIAGO_LAST_HOUR, ms(2026, 4, 5, 4), id="santiago"),
    ],
)
def test_occurrence_end_instant_in_window_returns_its_end(
    t: int, cal: Calendar, expected: int | None
) -> None:
    """The end of the occurrence holding t (the latest of several), None outside."""
    assert occurrence_end(t, cal) == expected


# --- window_spans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_ms", "cal", "expected"),
    [
        pytest.param(
            ms(2026, 1, 7, tz=SHANGHAI),
            calendar(["09:00-11:30", "11:30-12:00", "22:00-02:00"], SHANGHAI),
            [
                (ms(2026, 1, 7, tz=SHANGHAI), ms(2026, 1, 7, 2, tz=SHANGHAI)),
                (ms(2026, 1, 7, 9, tz=SHANGHAI), ms(2026, 1, 7, 12, tz=SHANGHAI)),
                (ms(2026, 1, 7, 22, tz=SHANGHAI), ms(2026, 1, 8, tz=SHANGHAI)),
            ],
            id="shanghai-three-clipped",
        ),
        pytest.param(
            ms(2026, 1, 7, 12, tz=SHANGHAI),
            calendar(["18:00-06:00", "06:00-08:00"], SHANGHAI),
            [(ms(2026, 1, 7, 18, tz=SHANGHAI), ms(2026, 1, 8, 8, tz=SHANGHAI))],
            id="touching-across-days-merged",
        ),
        pytest.param(
            ms(2026, 1, 7, 12, tz=SHANGHAI),
            calendar(["00:00-24:00"], SHANGHAI),
            [(ms(2026, 1, 7, 12, tz=SHANGHAI), ms(2026, 1, 8, 12, tz=SHANGHAI))],
            id="all-day-one-span",
        ),
        pytest.param(
            ms(2026, 1, 9, tz=SHANGHAI),
            SH_FRIDAY_NIGHT,
            [(ms(2026, 1, 9, 22, tz=SHANGHAI), ms(2026, 1, 10, tz=SHANGHAI))],
            id="friday-only",
        ),
        pytest.param(
            ms(2026, 10, 24, 22),
            BERLIN_0200_0300,
            [(ms(2026, 10, 25, 0), ms(2026, 10, 25, 2))],
            id="berlin-autumn-two-hours",
        ),
        pytest.param(ms(2026, 3, 28, 23), BERLIN_0210_0250, [], id="berlin-spring-lost"),
        pytest.param(
            ms(2026, 4, 4, 15),
            SANTIAGO_LAST_HOUR,
            [(ms(2026, 4, 5, 2), ms(2026, 4, 5, 4))],
            id="santiago-autumn-two-hours",
        ),
    ],
)
def test_window_spans_24h_returns_merged_open_parts(
    from_ms: int, cal: Calendar, expected: list[tuple[int, int]]
) -> None:
    """window_spans over 24 h lists the open parts, clipped to the range and merged."""
    assert window_spans(from_ms, from_ms + DAY_MS, cal) == expected


# --- next_run_ms and upcoming_ms with a calendar --------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "now", "interval_s", "cal", "end", "expected"),
    [
        pytest.param(
            ms(2026, 1, 9, 15, tz=SHANGHAI),
            ms(2026, 1, 9, 15, tz=SHANGHAI),
            HOUR_S,
            SH_WORKDAYS,
            None,
            ms(2026, 1, 9, 16, tz=SHANGHAI),
            id="inside",
        ),
        pytest.param(
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            HOUR_S,
            SH_WORKDAYS,
            None,
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            id="friday-to-monday",
        ),
        pytest.param(
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            ms(2026, 1, 12, 13, 17, tz=SHANGHAI),
            HOUR_S,
            SH_WORKDAYS,
            None,
            ms(2026, 1, 12, 13, 17, tz=SHANGHAI),
            id="missed-collapse-to-now",
        ),
        pytest.param(
            ms(2027, 2, 9, 16, tz=SHANGHAI),
            ms(2027, 2, 9, 16, tz=SHANGHAI),
            HOUR_S,
            SH_DAY_BLACKOUT,
            None,
            ms(2027, 2, 13, 9, tz=SHANGHAI),
            id="over-blackout",
        ),
        pytest.param(
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            HOUR_S,
            SH_WORKDAYS,
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            ms(2026, 1, 12, 9, tz=SHANGHAI),
            id="end-inclusive",
        ),
        pytest.param(
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            ms(2026, 1, 9, 16, 30, tz=SHANGHAI),
            HOUR_S,
            SH_WORKDAYS,
            ms(2026, 1, 12, 9, tz=SHANGHAI) - 1,
            None,
            id="after-end-none",
        ),
        pytest.param(
            ms(2026, 10, 25, 0),
            ms(2026, 10, 25, 0),
            HOUR_S,
            BERLIN_0200_0300,
            None,
            ms(2026, 10, 25, 1),
            id="berlin-second-0200",
        ),
        pytest.param(
            ms(2026, 10, 25, 1),
            ms(2026, 10, 25, 1),
            HOUR_S,
            BERLIN_0200_0300,
            None,
            ms(2026, 10, 26, 1),
            id="berlin-next-day",
        ),
    ],
)
def test_next_run_ms_calendar_returns_slot_moved_into_window(
    slot: int, now: int, interval_s: int, cal: Calendar, end: int | None, expected: int | None
) -> None:
    """The next slot is max(slot + interval, now) moved into the calendar, None past the end."""
    result = next_run_ms(slot_ms=slot, now_ms=now, interval_s=interval_s, calendar=cal, end_ms=end)
    assert result == expected


@pytest.mark.parametrize("interval_s", [0, -60])
def test_next_run_ms_non_positive_interval_raises(interval_s: int) -> None:
    """A non-positive interval is a ScheduleError (the schedule would never advance)."""
    with pytest.raises(ScheduleError):
        next_run_ms(slot_ms=0, now_ms=0, interval_s=interval_s, calendar=SH_THREE, end_ms=None)


@pytest.mark.parametrize(
    ("next_ms", "count", "interval_s", "cal", "end", "expected"),
    [
        pytest.param(
            ms(2026, 10, 25, 0),
            3,
            HOUR_S,
            BERLIN_0200_0300,
            None,
            [ms(2026, 10, 25, 0), ms(2026, 10, 25, 1), ms(2026, 10, 26, 1)],
            id="berlin-autumn-two-passes",
        ),
        pytest.param(
            ms(2026, 9, 5, 4),
            3,
            6 * HOUR_S,
            SANTIAGO_MORNING,
            None,
            [ms(2026, 9, 5, 4), ms(2026, 9, 6, 4), ms(2026, 9, 7, 3)],
            id="santiago-spring-0000-is-0100",
        ),
        pytest.param(
            ms(2026, 1, 9, 8, tz=SHANGHAI),
            4,
            12 * HOUR_S,
            calendar(["08:00-20:00"], SHANGHAI, weekdays=[1, 2, 3, 4, 5]),
            None,
            [
                ms(2026, 1, 9, 8, tz=SHANGHAI),
                ms(2026, 1, 12, 8, tz=SHANGHAI),
                ms(2026, 1, 13, 8, tz=SHANGHAI),
                ms(2026, 1, 14, 8, tz=SHANGHAI),
            ],
            id="shanghai-workdays",
        ),
        pytest.param(
            ms(2026, 1, 9, 8, tz=SHANGHAI),
            4,
            12 * HOUR_S,
            calendar(["08:00-20:00"], SHANGHAI, weekdays=[1, 2, 3, 4, 5]),
            ms(2026, 1, 12, 8, tz=SHANGHAI),
            [ms(2026, 1, 9, 8, tz=SHANGHAI), ms(2026, 1, 12, 8, tz=SHANGHAI)],
            id="stops-at-end",
        ),
        pytest.param(ms(2026, 1, 9, 8), 0, HOUR_S, SH_THREE, None, [], id="count-zero"),
        pytest.param(None, 5, HOUR_S, SH_THREE, None, [], id="no-next"),
    ],
)
def test_upcoming_ms_calendar_lists_slots_moved_into_windows(
    next_ms: int | None,
    count: int,
    interval_s: int,
    cal: Calendar,
    end: int | None,
    expected: list[int],
) -> None:
    """upcoming_ms lists next_ms and each following slot moved into the calendar."""
    runs = upcoming_ms(
        next_ms=next_ms, count=count, interval_s=interval_s, calendar=cal, end_ms=end
    )
    assert runs == expected, [local_iso(t, cal.tz) for t in runs]


# --- jitter_ms and start_ms -----------------------------------------------------------------------

JITTER_INPUTS = [
    pytest.param("task-1", ms(2026, 1, 7, 9), 60, id="one-minute"),
    pytest.param("task-1", ms(2026, 1, 7, 10), 3600, id="one-hour"),
    pytest.param("a:b*c", 1, 1, id="odd-seed-one-second"),
    pytest.param("任务", ms(2026, 10, 25, 1), 86400, id="unicode-seed-one-day"),
]


@pytest.mark.parametrize(("seed", "slot", "jitter_s"), JITTER_INPUTS)
def test_jitter_ms_same_inputs_returns_same_value_in_range(
    seed: str, slot: int, jitter_s: int
) -> None:
    """The same (seed, slot, jitter_s) always draws the same delay, within [0, jitter_s]."""
    first = jitter_ms(seed, slot, jitter_s)
    assert jitter_ms(seed, slot, jitter_s) == first
    assert 0 <= first <= jitter_s * 1000


def test_jitter_ms_other_process_returns_same_values() -> None:
    """A fresh interpreter (another hash seed) draws the same delays: restarts agree."""
    inputs = [("task-1", ms(2026, 1, 7, h), 3600) for h in range(5)]
    code = (
        "from taskdispatch.domain.schedule import jitter_ms; "
        f"print([jitter_ms(s, t, j) for s, t, j in {inputs!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == str([jitter_ms(s, t, j) for s, t, j in inputs])


@pytest.mark.parametrize("jitter_s", [1, 60, 3600])
def test_jitter_ms_many_slots_stay_in_range_and_spread(jitter_s: int) -> None:
    """Over 200 hourly slots every delay is in [0, jitter_s*1000] and almost all differ."""
    slots = [ms(2026, 1, 1) + k * HOUR_MS for k in range(200)]
    delays = [jitter_ms(SEED, slot, jitter_s) for slot in slots]
    assert all(0 <= delay <= jitter_s * 1000 for delay in delays)
    assert len(set(delays)) >= (100 if jitter_s == 1 else 190)


def test_jitter_ms_different_seeds_generally_differ() -> None:
    """Different tasks draw different delays for the same slot (almost always)."""
    slot = ms(2026, 1, 7, 9)
    delays = {jitter_ms(f"task-{k}", slot, 3600) for k in range(100)}
    assert len(delays) >= 95


@pytest.mark.parametrize("jitter_s", [0, -5])
def test_jitter_ms_non_positive_jitter_returns_zero(jitter_s: int) -> None:
    """No jitter (0, or a nonsensical negative value) is no delay."""
    assert jitter_ms(SEED, ms(2026, 1, 7, 9), jitter_s) == 0


ALL_DAY_SH = calendar(["00:00-24:00"], SHANGHAI)


@pytest.mark.parametrize(
    ("slot", "jitter_s", "interval_s", "cal", "end", "min_delay", "expected"),
    [
        pytest.param(
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            0,
            HOUR_S,
            SH_WORKDAYS,
            None,
            0,
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            id="jitter-zero-is-slot",
        ),
        pytest.param(
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            60,
            HOUR_S,
            SH_WORKDAYS,
            None,
            1,
            None,  # unclamped: slot + jitter_ms
            id="unclamped-slot-plus-delay",
        ),
        pytest.param(
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            3600,
            60,
            ALL_DAY_SH,
            None,
            60_000,
            ms(2026, 1, 12, 10, tz=SHANGHAI) + 59_999,
            id="before-next-slot",
        ),
        pytest.param(
            ms(2026, 1, 12, 16, 59, tz=SHANGHAI),
            600,
            HOUR_S,
            SH_WORKDAYS,
            None,
            60_000,
            ms(2026, 1, 12, 17, tz=SHANGHAI) - 1,
            id="inside-occurrence",
        ),
        pytest.param(
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            600,
            HOUR_S,
            SH_WORKDAYS,
            ms(2026, 1, 12, 10, 0, 1, tz=SHANGHAI),
            1000,
            ms(2026, 1, 12, 10, 0, 1, tz=SHANGHAI),
            id="not-after-end",
        ),
        pytest.param(
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            600,
            HOUR_S,
            SH_WORKDAYS,
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            1,
            ms(2026, 1, 12, 10, tz=SHANGHAI),
            id="end-at-slot-is-slot",
        ),
        pytest.param(
            ms(2026, 1, 7, 9, 24, tz=SHANGHAI),
            7200,
            3 * HOUR_S,
            calendar(["22:00-10:00", "09:00-09:30"], SHANGHAI),
            None,
            36 * MIN_MS,
            ms(2026, 1, 7, 10, tz=SHANGHAI) - 1,
            id="latest-overlapping-occurrence",
        ),
        # Berlin autumn "01:00-02:30": the occurrence ends at the second 02:30 (01:30 UTC).
        pytest.param(
            ms(2026, 10, 25, 1, 20),
            1800,
            HOUR_S,
            BERLIN_0100_0230,
            None,
            10 * MIN_MS,
            ms(2026, 10, 25, 1, 30) - 1,
            id="berlin-autumn-second-0230",
        ),
        pytest.param(
            ms(2026, 10, 25, 0, 18),
            1800,
            HOUR_S,
            BERLIN_0100_0230,
            None,
            12 * MIN_MS,
            None,  # unclamped: it may pass the first 02:30 (00:30 UTC)
            id="berlin-autumn-past-first-0230",
        ),
        # Berlin spring "01:00-02:30": the end is in the gap, so 03:00 CEST (01:00 UTC).
        pytest.param(
            ms(2026, 3, 29, 0, 50),
            1800,
            HOUR_S,
            BERLIN_0100_0230,
            None,
            10 * MIN_MS,
            ms(2026, 3, 29, 1) - 1,
            id="berlin-spring-gap-end",
        ),
        # Santiago "23:00-24:00" on 04-04 lasts until 04:00 UTC (two real hours).
        pytest.param(
            ms(2026, 4, 5, 3, 50),
            1800,
            HOUR_S,
            SANTIAGO_LAST_HOUR,
            None,
            10 * MIN_MS,
            ms(2026, 4, 5, 4) - 1,
            id="santiago-autumn-second-2350",
        ),
    ],
)
def test_start_ms_jitter_clamped_returns_start_within_limits(
    slot: int,
    jitter_s: int,
    interval_s: int,
    cal: Calendar,
    end: int | None,
    min_delay: int,
    expected: int | None,
) -> None:
    """slot + jitter, clamped before the next slot, inside the slot's occurrence, by the end."""
    delay = jitter_ms(SEED, slot, jitter_s)
    assert delay >= min_delay, "precondition: this seed draws a delay large enough to clamp"
    result = start_ms(
        slot, seed=SEED, jitter_s=jitter_s, interval_s=interval_s, calendar=cal, end_ms=end
    )
    assert result == (slot + delay if expected is None else expected)
    assert slot <= result <= slot + jitter_s * 1000


# --- the oracle against fixed DST calendars -------------------------------------------------------

SWEEPS = [
    pytest.param("Europe/Berlin", ["02:30-06:00"], date(2026, 3, 28), id="berlin-spring-0230"),
    pytest.param("Europe/Berlin", ["02:10-02:50"], date(2026, 3, 28), id="berlin-spring-0210"),
    pytest.param("Europe/Berlin", ["01:00-02:30"], date(2026, 3, 28), id="berlin-spring-0100"),
    pytest.param("Europe/Berlin", ["22:00-02:30"], date(2026, 3, 28), id="berlin-spring-wrap"),
    pytest.param(
        "Europe/Berlin",
        ["01:00-02:30", "02:10-02:50", "02:30-06:00"],
        date(2026, 3, 28),
        id="berlin-spring-three",
    ),
    pytest.param("Europe/Berlin", ["02:30-06:00"], date(2026, 10, 24), id="berlin-autumn-0230"),
    pytest.param("Europe/Berlin", ["02:10-02:50"], date(2026, 10, 24), id="berlin-autumn-0210"),
    pytest.param("Europe/Berlin", ["01:00-02:30"], date(2026, 10, 24), id="berlin-autumn-0100"),
    pytest.param("Europe/Berlin", ["22:00-02:30"], date(2026, 10, 24), id="berlin-autumn-wrap"),
    pytest.param("America/Santiago", ["00:00-06:00"], date(2026, 4, 3), id="santiago-autumn-00"),
    pytest.param("America/Santiago", ["23:30-00:30"], date(2026, 4, 3), id="santiago-autumn-wrap"),
    pytest.param("America/Santiago", ["00:00-06:00"], date(2026, 9, 5), id="santiago-spring-00"),
    pytest.param("America/Santiago", ["00:00-00:30"], date(2026, 9, 5), id="santiago-spring-lost"),
    pytest.param("America/Santiago", ["22:00-01:30"], date(2026, 9, 5), id="santiago-spring-wrap"),
    pytest.param(
        "Asia/Shanghai",
        ["09:00-11:30", "14:00-17:00", "22:00-02:00"],
        date(2026, 1, 7),
        id="shanghai-three",
    ),
]


@pytest.mark.parametrize(("zone", "windows", "first_day"), SWEEPS)
@pytest.mark.parametrize(
    "weekdays", [pytest.param((1, 2, 3, 4, 5, 6, 7), id="all"), pytest.param((6,), id="sat")]
)
def test_in_window_dst_days_every_10_minutes_matches_oracle(
    zone: str, windows: list[str], first_day: date, weekdays: tuple[int, ...]
) -> None:
    """Around a DST change, in_window equals the oracle on both sides of every 10-minute mark."""
    cal = calendar(windows, ZoneInfo(zone), weekdays=list(weekdays))
    spec = spec_of(zone, windows, weekdays, ())
    start = utc_midnight(first_day)
    wrong = [
        local_iso(t, cal.tz)
        for m in range(start, start + 3 * DAY_MS, 10 * MIN_MS)
        for t in (m - 1, m)
        if in_window(t, cal) != oracle_allowed(spec, t)
    ]
    assert wrong == []


@pytest.mark.parametrize(("zone", "windows", "first_day"), SWEEPS)
def test_next_window_start_dst_days_every_10_minutes_matches_oracle(
    zone: str, windows: list[str], first_day: date
) -> None:
    """Around a DST change, next_window_start equals the oracle at and after each 10-minute mark."""
    cal = calendar(windows, ZoneInfo(zone))
    spec = spec_of(zone, windows, range(1, 8), ())
    start = utc_midnight(first_day)
    wrong = [
        local_iso(t, cal.tz)
        for m in range(start, start + 3 * DAY_MS, 10 * MIN_MS)
        for t in (m, m + 1)
        if next_window_start(t, cal) != oracle_next(spec, t)
    ]
    assert wrong == []


# --- properties against the oracle ----------------------------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)
PERIODS = (
    (ms(2026, 3, 20), ms(2026, 4, 10, 23, 59)),
    (ms(2026, 10, 18), ms(2026, 11, 5, 23, 59)),
)
# Each zone's changes inside PERIODS, and the local minutes (a 15-minute grid) whose window
# edges they move: Berlin's 02:00-03:00, Santiago's 23:00-24:00 and 00:00 (ascending; the last
# one, 24:00 or 03:00, is used as an end only).
ZONES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "Europe/Berlin": ((ms(2026, 3, 29, 1), ms(2026, 10, 25, 1)), (60, 120, 135, 150, 165, 180)),
    "America/Santiago": ((ms(2026, 4, 5, 3),), (0, 15, 45, 1380, 1395, 1410, 1425, 1440)),
    "Asia/Shanghai": ((), (0, 1440)),
}
GRID_MS = 15 * MIN_MS  # every window edge is on this grid (the zones' offsets are whole hours)
ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]


def hhmm(minute: int) -> str:
    """Minutes of the day as 'HH:MM' (1440 is '24:00')."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def quarters(first: int, last: int) -> st.SearchStrategy[int]:
    """A minute of the day on the 15-minute grid, first..last quarter hour."""
    return st.integers(first, last).map(lambda index: index * 15)


@st.composite
def window_items(draw: st.DrawFn, edges: tuple[int, ...]) -> str:
    """A valid 'HH:MM-HH:MM' on the 15-minute grid (may wrap, may end at 24:00); about half
    of the edges are ``edges``, the minutes the zone's DST changes touch."""
    start = draw(st.one_of(st.sampled_from(edges[:-1]), quarters(0, 95)))
    end = draw(st.one_of(st.sampled_from(edges[1:]), quarters(0, 96)).filter(start.__ne__))
    return f"{hhmm(start)}-{hhmm(end)}"


def minutes_in(lo: int, hi: int) -> st.SearchStrategy[int]:
    """A whole-minute instant in [lo, hi]."""
    return st.integers(0, (hi - lo) // MIN_MS).map(lambda k: lo + k * MIN_MS)


@dataclass(frozen=True)
class Case:
    """A random calendar (as the product and the oracle see it) and an instant near it."""

    cal: Calendar
    spec: Spec
    t: int
    transitions: tuple[int, ...]  # the zone's DST changes inside PERIODS


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A zone, 1-3 windows, a non-empty weekday set, 0-2 blackout ranges within ±10 days of
    the instant t; t is a minute in PERIODS, half of the time in the 36 h before a change."""
    zone = draw(st.sampled_from(sorted(ZONES)))
    transitions, edges = ZONES[zone]
    windows = draw(st.lists(window_items(edges), min_size=1, max_size=3))
    weekdays = draw(st.one_of(st.just(ALL_DAYS), st.sets(st.integers(1, 7), min_size=1)))
    near = st.sampled_from(transitions).flatmap(lambda tr: minutes_in(tr - 36 * HOUR_MS, tr))
    uniform = st.sampled_from(PERIODS).flatmap(lambda p: minutes_in(*p))
    t = draw(st.one_of(near, uniform) if transitions else uniform)
    today = wall_of(t, ZoneInfo(zone)).date()
    ranges = []
    for _ in range(draw(st.integers(0, 2))):
        first = draw(st.integers(-10, 10))
        last = draw(st.integers(first, 10))
        ranges.append((today + timedelta(days=first), today + timedelta(days=last)))
    texts = [a.isoformat() if a == b else f"{a.isoformat()}..{b.isoformat()}" for a, b in ranges]
    cal = Calendar(
        windows=parse_windows(windows),
        tz=ZoneInfo(zone),
        weekdays=parse_weekdays(sorted(weekdays)),
        blackout=parse_blackout(texts),
    )
    spec = spec_of(zone, windows, weekdays, ranges)
    return Case(cal=cal, spec=spec, t=t, transitions=transitions)


def grid_probes(case: Case, hours: int, offsets: tuple[int, ...]) -> list[int]:
    """The drawn minute, then every 15-minute grid instant for ``hours`` from it and for the
    24 h either side of each of the zone's changes, each shifted by ``offsets`` ms. Window
    edges lie on the grid, so (-1, 0) samples every stretch where in_window is constant and
    (0, 1) every stretch where next_window_start is t itself or one fixed instant."""
    starts = [(case.t - case.t % GRID_MS, hours)] + [(tr - DAY_MS, 48) for tr in case.transitions]
    return [case.t] + [
        g + e
        for first, span in starts
        for g in range(first, first + span * HOUR_MS + 1, GRID_MS)
        for e in offsets
    ]


@PROPERTY
@given(case=cases())
def test_in_window_random_calendar_matches_oracle(case: Case) -> None:
    """in_window equals the oracle on both sides of every possible edge (48 h, DST days)."""
    wrong = [
        local_iso(t, case.cal.tz)
        for t in grid_probes(case, 48, (-1, 0))
        if in_window(t, case.cal) != oracle_allowed(case.spec, t)
    ]
    assert wrong == []


@PROPERTY
@given(case=cases(), extra_ms=st.integers(0, MIN_MS - 1))
def test_next_window_start_random_calendar_returns_oracle_first_allowed(
    case: Case, extra_ms: int
) -> None:
    """next_window_start(t) is the oracle's first allowed instant >= t (t when allowed)."""
    wrong = [
        local_iso(t, case.cal.tz)
        for t in [case.t + extra_ms, *grid_probes(case, 24, (0, 1))]
        if next_window_start(t, case.cal) != oracle_next(case.spec, t)
    ]
    assert wrong == []


@st.composite
def runs(draw: st.DrawFn) -> tuple[Case, int, int, int | None]:
    """A case with an interval (15 min .. 6 h, whole minutes), jitter 0..interval, an end."""
    case = draw(cases())
    interval_s = draw(st.integers(15, 360)) * 60
    jitter_s = draw(st.one_of(st.just(0), st.just(interval_s), st.integers(0, interval_s)))
    end = draw(st.one_of(st.none(), st.integers(0, 4 * DAY_MS).map(lambda k: case.t + k)))
    return case, interval_s, jitter_s, end


@PROPERTY
@given(run=runs())
def test_upcoming_ms_with_jitter_starts_allowed_increasing_none_skipped(
    run: tuple[Case, int, int, int | None],
) -> None:
    """Jittered upcoming starts are allowed, clamped, increasing, and no allowed slot is skipped."""
    case, interval_s, jitter_s, end = run
    first = next_window_start(case.t, case.cal)
    assert first == oracle_next(case.spec, case.t)
    count = 12
    slots = upcoming_ms(
        next_ms=first, count=count, interval_s=interval_s, calendar=case.cal, end_ms=end
    )
    starts = [
        start_ms(
            s, seed=SEED, jitter_s=jitter_s, interval_s=interval_s, calendar=case.cal, end_ms=end
        )
        for s in slots
    ]
    if end is None or first <= end:
        assert slots[:1] == [first]
    else:
        assert slots == []
    for slot, start in zip(slots, starts, strict=True):
        assert oracle_allowed(case.spec, slot), local_iso(slot, case.cal.tz)
        assert oracle_allowed(case.spec, start), local_iso(start, case.cal.tz)
        # inside the occurrence the slot was placed in, never shifted into a later window
        assert start < oracle_occurrence_end(case.spec, slot), local_iso(start, case.cal.tz)
        assert slot <= start <= slot + jitter_s * 1000
        assert start < slot + interval_s * 1000
        assert end is None or start <= end
        if jitter_s == 0:
            assert start == slot
    assert all(a < b for a, b in itertools.pairwise(starts))
    for prev, nxt in itertools.pairwise(slots):
        assert nxt == oracle_next(case.spec, prev + interval_s * 1000), local_iso(nxt, case.cal.tz)
    if slots and len(slots) < count:
        assert end is not None
        assert oracle_next(case.spec, slots[-1] + interval_s * 1000) > end


@PROPERTY
@given(run=runs())
def test_start_ms_random_allowed_slot_stays_in_its_occurrence(
    run: tuple[Case, int, int, int | None],
) -> None:
    """For any allowed slot the jittered start stays in [slot, slot + jitter] and its occurrence."""
    case, interval_s, jitter_s, end = run
    slots = [
        t
        for t in grid_probes(case, 48, (-MIN_MS, 0))
        if oracle_allowed(case.spec, t) and (end is None or t <= end)
    ]
    for slot in slots:
        start = start_ms(
            slot, seed=SEED, jitter_s=jitter_s, interval_s=interval_s, calendar=case.cal, end_ms=end
        )
        assert slot <= start <= slot + jitter_s * 1000
        assert start < slot + interval_s * 1000
        assert start < oracle_occurrence_end(case.spec, slot), local_iso(slot, case.cal.tz)
        assert end is None or start <= end


@PROPERTY
@given(case=cases())
def test_window_spans_random_calendar_matches_oracle(case: Case) -> None:
    """window_spans over 24 h from t and over the DST days equals the oracle merged occurrences."""
    for lo, hi in [
        (case.t, case.t + DAY_MS),
        *((tr - DAY_MS, tr + DAY_MS) for tr in case.transitions),
    ]:
        assert window_spans(lo, hi, case.cal) == oracle_spans(case.spec, lo, hi)
