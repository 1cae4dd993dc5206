"""Calendar helpers: days are calendar days in the configured zone (TCHAP_STATS_TZ,
Europe/Paris by default), months run from one 1st to the next."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


def today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def yesterday(timezone: str) -> date:
    return today(timezone) - timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def month_bounds(day: date) -> tuple[date, date]:
    lower = day.replace(day=1)
    upper = date(lower.year + (lower.month == 12), lower.month % 12 + 1, 1)
    return lower, upper


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after `month`'s (before, if negative)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def whole_months(first: date, last: date) -> list[date]:
    """The days of every month the range touches: monthly rows are per whole month."""
    return days_between(first.replace(day=1), month_bounds(last)[1] - timedelta(days=1))


def whole_months_between(first: date, last: date) -> list[date]:
    """The first days of every month the range touches."""
    months = [first.replace(day=1)]
    while months[-1] < last.replace(day=1):
        months.append(month_bounds(months[-1])[1])
    return months
