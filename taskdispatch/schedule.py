"""Pure scheduling maths for recurring per-account tasks.

No I/O and no clock reads: every function takes the relevant instants as arguments. Instants are
integer epoch milliseconds (UTC). Slot arithmetic and comparisons happen in epoch ms; local time is
only consulted to test the hour window and to locate window starts, because arithmetic on aware
datetimes inside one ZoneInfo adds wall-clock time and comparisons ignore ``fold``.

A run may start when ``start <= local_hour < end`` for a window ``(start, end)``; ``start > end``
wraps midnight, ``(0, 24)`` is always open, and ``end_ms`` is inclusive.
"""

from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskdispatch.messages import text

__all__ = [
    "ScheduleError",
    "Window",
    "first_run_ms",
    "in_window",
    "next_run_ms",
    "next_window_start",
    "parse_end",
    "parse_instant",
    "parse_timezone",
    "parse_window",
    "reorder_ms",
    "to_datetime",
    "to_local_iso",
    "upcoming_ms",
]

Window: TypeAlias = tuple[int, int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """Invalid schedule input: `key` names the message (taskdispatch/messages.py), `params`
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


def parse_timezone(name: str) -> ZoneInfo:
    """Return the ZoneInfo for an IANA name, or raise ScheduleError naming ``timezone``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # OSError: directory names such as 'Europe'; ValueError: '../etc', ''; TypeError: non-str.
        raise ScheduleError("timezone_unknown", value=repr(name)) from None


def parse_end(value: str | date | datetime | None, tz: ZoneInfo) -> int | None:
    """Return the inclusive end instant in ms for a ``task_end_time`` value (None = no end)."""
    if value is None:
        return None
    parsed: object = value
    if isinstance(value, str):
        for parse in (date.fromisoformat, datetime.fromisoformat):
            with suppress(ValueError):
                parsed = parse(value.strip())
                break
    if isinstance(parsed, datetime):  # before date: datetime is a date subclass
        return _datetime_ms(parsed, tz)
    if isinstance(parsed, date) and parsed < date.max:  # date.max has no next midnight
        return _wall_ms(parsed + timedelta(days=1), 0, tz, fold=0) - 1
    raise ScheduleError("end_format", value=repr(value))


def parse_instant(value: str | datetime, tz: ZoneInfo, *, field: str) -> int:
    """Return epoch ms for an ISO 8601 datetime; naive values are read in ``tz``."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime):
        return _datetime_ms(value, tz)
    raise ScheduleError("instant_format", field=field, value=repr(value))


def in_window(t_ms: int, window: Window, tz: ZoneInfo) -> bool:
    """Whether a run may start at ``t_ms`` (wall-clock hour in ``tz`` inside the window)."""
    start, end = window
    hour = to_datetime(t_ms, tz).hour
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def next_window_start(t_ms: int, window: Window, tz: ZoneInfo) -> int:
    """Earliest instant >= ``t_ms`` inside the window (``t_ms`` itself when already inside)."""
    if in_window(t_ms, window, tz):
        return t_ms
    day = to_datetime(t_ms, tz).date()
    # Both folds: after a fall-back the second occurrence of the start hour may be the next
    # opening. A start lost in a spring-forward gap resolves to the gap's end, which is only
    # usable if that hour is still inside the window (e.g. not for (2, 3) in Europe/Berlin).
    candidates = [
        ms
        for offset in range(-1, 8)
        for fold in (0, 1)
        if (ms := _wall_ms(day + timedelta(days=offset), window[0], tz, fold=fold)) >= t_ms
        and in_window(ms, window, tz)
    ]
    if not candidates:
        raise RuntimeError(f"window {window} never opens in {tz.key} after {t_ms}")
    return min(candidates)


def first_run_ms(
    *,
    created_ms: int,
    interval_s: int,
    window: Window,
    tz: ZoneInfo,
    end_ms: int | None,
    start_at_ms: int | None = None,
) -> int | None:
    """First run: ``start_at_ms`` or one interval after creation, moved into the window."""
    _check_interval(interval_s)
    base = start_at_ms if start_at_ms is not None else created_ms + interval_s * 1000
    return _settle(base, window, tz, end_ms)


def next_run_ms(
    *,
    slot_ms: int,
    now_ms: int,
    interval_s: int,
    window: Window,
    tz: ZoneInfo,
    end_ms: int | None,
) -> int | None:
    """Next run after the round for ``slot_ms``; missed slots collapse into one run at now."""
    _check_interval(interval_s)
    candidate = max(slot_ms + interval_s * 1000, now_ms)
    return _settle(candidate, window, tz, end_ms)


def reorder_ms(
    *,
    next_ms: int,
    offset_s: int,
    now_ms: int,
    window: Window,
    tz: ZoneInfo,
    end_ms: int | None,
) -> int | None:
    """Shift the next run by ``offset_s`` (never before now), moved into the window."""
    return _settle(max(next_ms + offset_s * 1000, now_ms), window, tz, end_ms)


def upcoming_ms(
    *,
    next_ms: int | None,
    count: int,
    interval_s: int,
    window: Window,
    tz: ZoneInfo,
    end_ms: int | None,
) -> list[int]:
    """Up to ``count`` run times from ``next_ms``, assuming each round runs exactly on its slot."""
    runs: list[int] = []
    slot = next_ms
    # next_ms is the already-scheduled run, so it is listed as-is (only the end is enforced).
    while slot is not None and len(runs) < count and (end_ms is None or slot <= end_ms):
        runs.append(slot)
        slot = next_run_ms(
            slot_ms=slot, now_ms=slot, interval_s=interval_s, window=window, tz=tz, end_ms=end_ms
        )
    return runs


def to_local_iso(t_ms: int | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 local time with offset; milliseconds only when non-zero."""
    if t_ms is None:
        return None
    return to_datetime(t_ms, tz).isoformat(timespec="milliseconds" if t_ms % 1000 else "seconds")


def _settle(t_ms: int, window: Window, tz: ZoneInfo, end_ms: int | None) -> int | None:
    run = next_window_start(t_ms, window, tz)
    return None if end_ms is not None and run > end_ms else run


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


def _wall_ms(day: date, hour: int, tz: ZoneInfo, *, fold: int) -> int:
    """Epoch ms of local ``day hour:00`` with ``fold``; a time lost in a gap maps to its end."""
    wall = datetime(day.year, day.month, day.day, hour)
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
