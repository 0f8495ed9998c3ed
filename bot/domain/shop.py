"""A shop's clock: its time zone, its closing hour, and the days and periods reports cover.

Every "today", report day and time shown to a merchant is in the shop's time zone
(`/settings`; default the `TIMEZONE` setting, else UTC). Storage keeps UTC instants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_RANGE_DAYS = 3660  # a /report date range of at most ten years
_TZ_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")


@dataclass(frozen=True, slots=True)
class ShopSettings:
    merchant_id: int
    timezone: str | None = None  # an IANA name; None: the TIMEZONE setting
    closing_hour: int | None = None  # 0-23 local: the daily shift close is sent then
    last_closed_on: date | None = None  # the last local day whose close was sent


def zone(name: str | None) -> ZoneInfo | None:
    """The IANA time zone `name` ("Europe/Berlin", "UTC"), or None when there is none."""
    if not name or len(name) > 64 or not _TZ_RE.match(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_day(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()


def day_start(day: date, tz: tzinfo) -> datetime:
    """The UTC instant a local day begins (a DST change makes days 23 or 25 hours)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def days_bounds(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days first..last."""
    return day_start(first, tz), day_start(last + timedelta(days=1), tz)


class PeriodError(ValueError):
    """A /report period that cannot be read; `code` names the reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Period:
    name: str  # today, week, month, all, range
    start: datetime | None  # UTC; None: since ever
    end: datetime  # UTC, exclusive
    first: date | None  # the local days covered (None: since ever)
    last: date


PERIOD_WORDS = ("today", "week", "month", "all")


def parse_period(args: list[str], now: datetime, tz: tzinfo) -> Period:
    """`[]`/today, week (the last 7 local days), month (the last 30), all, or a range of
    ISO dates `2026-11-01 2026-11-30` (both included; one date: that day)."""
    today = local_day(now, tz)
    words = [a.strip().lower() for a in args if a.strip()]
    if not words or words == ["today"]:
        return _days("today", today, today, tz)
    if words == ["week"]:
        return _days("week", today - timedelta(days=6), today, tz)
    if words == ["month"]:
        return _days("month", today - timedelta(days=29), today, tz)
    if words == ["all"]:
        return Period("all", None, day_start(today + timedelta(days=1), tz), None, today)
    if len(words) > 2 or any(w in PERIOD_WORDS for w in words):
        raise PeriodError("unknown")
    days = [_iso_day(w) for w in words]
    first, last = days[0], days[-1]
    if last < first:
        raise PeriodError("reversed")
    if (last - first).days > MAX_RANGE_DAYS:
        raise PeriodError("too_long")
    return _days("range", first, last, tz)


def _iso_day(text: str) -> date:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise PeriodError("unknown")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PeriodError("bad_date") from None
    if day.year < 2000:
        raise PeriodError("bad_date")
    return day


def _days(name: str, first: date, last: date, tz: tzinfo) -> Period:
    start, end = days_bounds(first, last, tz)
    return Period(name, start, end, first, last)


def close_due(settings: ShopSettings, now: datetime, tz: tzinfo) -> date | None:
    """The local day whose shift close is due now (its closing hour has come and it was not
    sent yet), else None. Closing at 0:00 closes the day that just ended."""
    if settings.closing_hour is None:
        return None
    local = now.astimezone(tz)
    if local.hour < settings.closing_hour:
        return None
    day = local.date() - timedelta(days=1 if settings.closing_hour == 0 else 0)
    if settings.last_closed_on is not None and settings.last_closed_on >= day:
        return None
    return day


__all__ = [
    "MAX_RANGE_DAYS",
    "Period",
    "PeriodError",
    "ShopSettings",
    "close_due",
    "day_start",
    "days_bounds",
    "local_day",
    "parse_period",
    "zone",
]
