"""Pure scheduling maths for recurring per-account tasks: calendars, slots and jitter.

No I/O and no clock reads: every function takes the relevant instants as arguments. Instants are
integer epoch milliseconds (UTC). Slot arithmetic and comparisons happen in epoch ms; local time is
only consulted to find the window occurrences of a local day, because arithmetic on aware
datetimes inside one ZoneInfo adds wall-clock time and comparisons ignore ``fold``.

A `Calendar` holds windows (local minutes of the day, ``[start, end)``; an end past 1440 wraps
into the next day, and such a window belongs to the day it starts on), the weekdays on which
they apply and blackout dates on which none begins. A run may start inside a window
occurrence of an allowed day; ``end_ms`` is inclusive. docs/semantics.md states every rule.
"""

import hashlib
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskdispatch.domain.messages import text

__all__ = [
    "ALL_WEEKDAYS",
    "HORIZON_DAYS",
    "Calendar",
    "DateRange",
    "MinuteRange",
    "ScheduleError",
    "Window",
    "end_value",
    "first_run_ms",
    "format_windows",
    "hour_window",
    "in_window",
    "instant_value",
    "jitter_ms",
    "next_run_ms",
    "next_window_start",
    "occurrence_end",
    "parse_blackout",
    "parse_end",
    "parse_instant",
    "parse_timezone",
    "parse_weekdays",
    "parse_window",
    "parse_windows",
    "reorder_ms",
    "start_ms",
    "to_datetime",
    "to_local_iso",
    "upcoming_ms",
    "window_spans",
]

Window: TypeAlias = tuple[int, int]  # valid_time_range: whole hours (start, end)
MinuteRange: TypeAlias = tuple[int, int]  # minutes of the day [start, end), end <= start + 1440
DateRange: TypeAlias = tuple[date, date]  # inclusive

ALL_WEEKDAYS = frozenset(range(1, 8))
# How far ahead a calendar is searched for its next open window (a year of blackouts fits).
HORIZON_DAYS = 800
# A window lasts at most a day, and merged overlapping ones up to two: the occurrences that
# may still be open at an instant began at most this many days before its local date.
_MAX_SPAN_DAYS = 2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
# Only the documented form: date.fromisoformat also reads "20270210" and "2027-W06-3".
_DATE_RANGE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:\.\.([0-9]{4}-[0-9]{2}-[0-9]{2}))?")


@dataclass(frozen=True)
class Calendar:
    """When a task's rounds may start, in its time zone."""

    windows: tuple[MinuteRange, ...]
    tz: ZoneInfo
    weekdays: frozenset[int] = field(default=ALL_WEEKDAYS)
    blackout: tuple[DateRange, ...] = ()

    def day_allowed(self, day: date) -> bool:
        """Whether windows may begin on local ``day`` (its weekday, not a blackout date)."""
        if day.isoweekday() not in self.weekdays:
            return False
        return not any(first <= day <= last for first, last in self.blackout)


def hour_window(window: Window) -> tuple[MinuteRange, ...]:
    """A ``valid_time_range`` as windows: ``(8, 22)`` is 08:00-22:00, ``(22, 6)`` wraps."""
    start, end = window
    end_min = end * 60 if end > start else end * 60 + 1440
    return ((start * 60, end_min),)


def format_windows(windows: Iterable[MinuteRange]) -> list[str]:
    """``[(480, 1320)]`` -> ``["08:00-22:00"]`` (the API's form)."""

    def hhmm(minute: int) -> str:
        return "24:00" if minute == 1440 else f"{minute // 60 % 24:02d}:{minute % 60:02d}"

    return [f"{hhmm(start)}-{hhmm(end if end == 1440 else end % 1440)}" for start, end in windows]


class ScheduleError(ValueError):
    """Invalid schedule input: `key` names the message (taskdispatch/domain/messages.py), `params`
    fill it in, and `detail` says in English what exactly is wrong."""

    def __init__(self, key: str, *, detail: str | None = None, **params: Any) -> None:
        super().__init__(text(key, **params))
        self.key = key
        self.detail = detail
        self.params = params


def parse_window(value: Sequence[object]) -> Window:
    """Validate a JSON ``valid_time_range`` value and return it as a ``(start, end)`` tuple."""

    def fail(reason: str) -> ScheduleError:
        return ScheduleError("window_format", detail=reason, value=repr(value))

    # A str is a Sequence too, but "8,20" is never a valid window.
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise fail("expected a list of exactly two integers")
    start, end = value
    # bool is an int subclass, and 8.0 would silently become a fractional-hour window.
    if type(start) is not int or type(end) is not int:
        raise fail("start and end must be integers (not booleans, floats or strings)")
    if not 0 <= start <= 23:
        raise fail("start must be in 0..23")
    if not 0 <= end <= 24:
        raise fail("end must be in 0..24")
    if start == end:
        raise fail("start and end must differ")
    return (start, end)


def parse_windows(value: object) -> tuple[MinuteRange, ...]:
    """Validate a JSON ``windows`` value: ``["09:00-11:30", "22:00-02:00"]``, merged."""

    def fail(reason: str) -> ScheduleError:
        return ScheduleError("windows_format", detail=reason, value=repr(value))

    if not isinstance(value, list) or not value:
        raise fail("expected a non-empty list of 'HH:MM-HH:MM' strings")
    if len(value) > 48:
        raise fail("at most 48 windows")
    ranges = []
    for item in value:
        match = _HHMM.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            raise fail(f"{item!r} is not 'HH:MM-HH:MM'")
        h1, m1, h2, m2 = (int(x) for x in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise fail(f"{item!r}: hours 00..23 (24:00 only as an end), minutes 00..59")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise fail(f"{item!r}: start and end must differ (00:00-24:00 is all day)")
        ranges.append((start, end if end > start else end + 1440))
    return _merged(ranges)


def parse_weekdays(value: object) -> frozenset[int]:
    """Validate a JSON ``weekdays`` value: ISO weekdays 1 (Monday) .. 7 (Sunday)."""
    if (
        not isinstance(value, list)
        or not value
        or any(type(day) is not int or not 1 <= day <= 7 for day in value)
    ):
        raise ScheduleError("weekdays_format", value=repr(value))
    return frozenset(value)


def parse_blackout(value: object) -> tuple[DateRange, ...]:
    """Validate a JSON ``blackout_dates`` value: ``["2027-02-10", "2027-02-10..2027-02-17"]``."""

    def fail(reason: str) -> ScheduleError:
        return ScheduleError("blackout_format", detail=reason, value=repr(value))

    if not isinstance(value, list) or len(value) > 366:
        raise fail("expected a list of at most 366 dates or date ranges")
    ranges: list[DateRange] = []
    for item in value:
        if not isinstance(item, str):
            raise fail(f"{item!r} is not a date string")
        match = _DATE_RANGE.fullmatch(item)
        try:
            if match is None:
                raise ValueError(item)
            first_text, last_text = match.groups()
            first = date.fromisoformat(first_text)
            last = date.fromisoformat(last_text) if last_text else first
        except ValueError:
            raise fail(f"{item!r} is not 'YYYY-MM-DD' or 'YYYY-MM-DD..YYYY-MM-DD'") from None
        if last < first:
            raise fail(f"{item!r} ends before it starts")
        ranges.append((first, last))
    merged: list[DateRange] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def _merged(ranges: list[MinuteRange]) -> tuple[MinuteRange, ...]:
    """Overlapping or touching windows of the same day become one."""
    out: list[MinuteRange] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


@lru_cache(maxsize=512)
def parse_timezone(name: str) -> ZoneInfo:
    """Return the ZoneInfo for an IANA name, or raise ScheduleError naming ``timezone``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # OSError: directory names such as 'Europe'; ValueError: '../etc', ''; TypeError: non-str.
        raise ScheduleError("timezone_unknown", value=repr(name)) from None


def end_value(value: str | date | datetime) -> date | datetime:
    """The date (through the end of that day) or datetime a ``task_end_time`` names; the
    zone that turns it into an instant is applied by `parse_end`."""
    parsed: object = value
    if isinstance(value, str):
        for parse in (date.fromisoformat, datetime.fromisoformat):
            with suppress(ValueError):
                parsed = parse(value.strip())
                break
    # date.max has no next midnight.
    if isinstance(parsed, datetime) or (isinstance(parsed, date) and parsed < date.max):
        return parsed
    raise ScheduleError("end_format", value=repr(value))


def parse_end(value: str | date | datetime | None, tz: ZoneInfo) -> int | None:
    """Return the inclusive end instant in ms for a ``task_end_time`` value (None = no end)."""
    if value is None:
        return None
    parsed = end_value(value)
    if isinstance(parsed, datetime):  # before date: datetime is a date subclass
        return _datetime_ms(parsed, tz)
    return _wall_ms(parsed + timedelta(days=1), 0, tz, fold=0) - 1


def instant_value(value: str | datetime, *, field: str) -> datetime:
    """The datetime an ISO 8601 text names (naive or with an offset)."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime):
        return value
    raise ScheduleError("instant_format", field=field, value=repr(value))


def parse_instant(value: str | datetime, tz: ZoneInfo, *, field: str) -> int:
    """Return epoch ms for an ISO 8601 datetime; naive values are read in ``tz``."""
    return _datetime_ms(instant_value(value, field=field), tz)


def in_window(t_ms: int, cal: Calendar) -> bool:
    """Whether a run may start at ``t_ms``: inside a window occurrence of an allowed day."""
    day = to_datetime(t_ms, cal.tz).date()
    return any(
        start <= t_ms < end
        for offset in range(-_MAX_SPAN_DAYS, 1)
        for start, end in _occurrences(day + timedelta(days=offset), cal)
    )


def next_window_start(t_ms: int, cal: Calendar) -> int | None:
    """Earliest instant >= ``t_ms`` inside a window (``t_ms`` itself when already inside), or
    None when the calendar opens no window within `HORIZON_DAYS` (a long blackout)."""
    if in_window(t_ms, cal):
        return t_ms
    day = to_datetime(t_ms, cal.tz).date()
    # Occurrences of later days start later: the first day with one after t has the answer.
    for offset in range(-_MAX_SPAN_DAYS, HORIZON_DAYS):
        starts = [a for a, _ in _occurrences(day + timedelta(days=offset), cal) if a >= t_ms]
        if starts:
            return min(starts)
    return None


def occurrence_end(t_ms: int, cal: Calendar) -> int | None:
    """The end of the window occurrence that holds ``t_ms`` (the latest, if several), or None."""
    day = to_datetime(t_ms, cal.tz).date()
    ends = [
        end
        for offset in range(-_MAX_SPAN_DAYS, 1)
        for start, end in _occurrences(day + timedelta(days=offset), cal)
        if start <= t_ms < end
    ]
    return max(ends, default=None)


def window_spans(from_ms: int, to_ms: int, cal: Calendar) -> list[tuple[int, int]]:
    """The parts of [from_ms, to_ms) inside a window, merged, earliest first."""
    first = to_datetime(from_ms, cal.tz).date()
    last = to_datetime(to_ms, cal.tz).date()
    spans: list[tuple[int, int]] = []
    for offset in range(-_MAX_SPAN_DAYS, (last - first).days + 1):
        for start, end in _occurrences(first + timedelta(days=offset), cal):
            lo, hi = max(start, from_ms), min(end, to_ms)
            if lo < hi:
                spans.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def first_run_ms(
    *,
    created_ms: int,
    interval_s: int,
    calendar: Calendar,
    end_ms: int | None,
    start_at_ms: int | None = None,
) -> int | None:
    """First run: ``start_at_ms`` or one interval after creation, moved into a window."""
    _check_interval(interval_s)
    base = start_at_ms if start_at_ms is not None else created_ms + interval_s * 1000
    return _settle(base, calendar, end_ms)


def next_run_ms(
    *,
    slot_ms: int,
    now_ms: int,
    interval_s: int,
    calendar: Calendar,
    end_ms: int | None,
) -> int | None:
    """Next run after the round for ``slot_ms``; missed slots collapse into one run at now."""
    _check_interval(interval_s)
    candidate = max(slot_ms + interval_s * 1000, now_ms)
    return _settle(candidate, calendar, end_ms)


def reorder_ms(
    *,
    next_ms: int,
    offset_s: int,
    now_ms: int,
    calendar: Calendar,
    end_ms: int | None,
) -> int | None:
    """Shift the next run by ``offset_s`` (never before now), moved into a window."""
    return _settle(max(next_ms + offset_s * 1000, now_ms), calendar, end_ms)


def upcoming_ms(
    *,
    next_ms: int | None,
    count: int,
    interval_s: int,
    calendar: Calendar,
    end_ms: int | None,
) -> list[int]:
    """Up to ``count`` run times from ``next_ms``, assuming each round runs exactly on its slot."""
    runs: list[int] = []
    slot = next_ms
    # next_ms is the already-scheduled run, so it is listed as-is (only the end is enforced).
    while slot is not None and len(runs) < count and (end_ms is None or slot <= end_ms):
        runs.append(slot)
        slot = next_run_ms(
            slot_ms=slot, now_ms=slot, interval_s=interval_s, calendar=calendar, end_ms=end_ms
        )
    return runs


def jitter_ms(seed: str, slot_ms: int, jitter_s: int) -> int:
    """A delay in [0, jitter_s] (ms resolution) drawn from (seed, slot): every process, and
    every restart, draws the same one for the same slot of the same task."""
    if jitter_s <= 0:
        return 0
    digest = hashlib.blake2b(f"{seed}|{slot_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (jitter_s * 1000 + 1)


def start_ms(
    slot_ms: int,
    *,
    seed: str,
    jitter_s: int,
    interval_s: int,
    calendar: Calendar,
    end_ms: int | None,
) -> int:
    """When the round of ``slot_ms`` starts: the slot plus its jitter, clamped so that it
    stays before the next slot, inside the window occurrence the slot was placed in, and
    not after the end. Jitter only ever delays, so a slot can never be due twice."""
    delay = jitter_ms(seed, slot_ms, jitter_s)
    if delay == 0:
        return slot_ms
    limits = [slot_ms + delay, slot_ms + interval_s * 1000 - 1]
    window_end = occurrence_end(slot_ms, calendar)
    if window_end is not None:
        limits.append(window_end - 1)
    if end_ms is not None:
        limits.append(end_ms)
    return max(slot_ms, min(limits))


def to_local_iso(t_ms: int | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 local time with offset; milliseconds only when non-zero."""
    if t_ms is None:
        return None
    return to_datetime(t_ms, tz).isoformat(timespec="milliseconds" if t_ms % 1000 else "seconds")


def _settle(t_ms: int, cal: Calendar, end_ms: int | None) -> int | None:
    run = next_window_start(t_ms, cal)
    return None if run is None or (end_ms is not None and run > end_ms) else run


@lru_cache(maxsize=8192)
def _occurrences(day: date, cal: Calendar) -> tuple[tuple[int, int], ...]:
    """[start, end) in epoch ms of the windows that begin on local ``day``, if the day is
    allowed (weekday, blackout); a window whose edges both fall in a spring gap is empty
    and left out. The start is the first instant showing the start's wall time (a time lost
    in a gap: the gap's end), the end the last instant showing the end's wall time, so a
    window over a repeated autumn hour lasts one real hour longer."""
    if not cal.day_allowed(day):
        return ()
    out = []
    for start_min, end_min in cal.windows:
        start = _wall_minute_ms(day, start_min, cal.tz, fold=0)
        end = _wall_minute_ms(day, end_min, cal.tz, fold=1)
        if end > start:
            out.append((start, end))
    return tuple(out)


def _wall_minute_ms(day: date, minute: int, tz: ZoneInfo, *, fold: int) -> int:
    """Epoch ms of local ``day`` + ``minute`` minutes (past 1440: a later day)."""
    days, minute = divmod(minute, 1440)
    return _wall_ms(day + timedelta(days=days), minute // 60, tz, fold=fold, minute=minute % 60)


def _check_interval(interval_s: int) -> None:
    # A non-positive interval would make upcoming_ms repeat one slot and rounds never advance.
    if interval_s <= 0:
        raise ScheduleError("interval_range", value=interval_s, max="∞")


def to_datetime(t_ms: int, tz: ZoneInfo) -> datetime:
    """The aware local datetime of an epoch-ms instant."""
    return (_EPOCH + timedelta(milliseconds=t_ms)).astimezone(tz)


def _datetime_ms(value: datetime, tz: ZoneInfo) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def _wall_ms(day: date, hour: int, tz: ZoneInfo, *, fold: int, minute: int = 0) -> int:
    """Epoch ms of local ``day hour:minute`` with ``fold``; a time lost in a gap maps to its end."""
    wall = datetime(day.year, day.month, day.day, hour, minute)
    ms = _datetime_ms(wall.replace(fold=fold), tz)
    if to_datetime(ms, tz).replace(tzinfo=None) == wall:
        return ms
    # Nonexistent: fold=1 resolves before the transition, fold=0 after it. Bisect (in whole
    # seconds, the resolution of tzdata) for the first instant using the post-gap offset.
    lo = _datetime_ms(wall.replace(fold=1), tz) // 1000
    hi = _datetime_ms(wall.replace(fold=0), tz) // 1000
    after = to_datetime(hi * 1000, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if to_datetime(mid * 1000, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi * 1000
