"""How often a secret's rotation rules rotate it, from RotationRules as the API returns them.

AutomaticallyAfterDays, or ScheduleExpression: rate(N days|hours), or cron(0 H DOM MON DOW *)
in UTC with AWS's cron dialect (Secrets Manager User Guide, "Rotation schedules"): the
longest gap between two rotations the expression allows is its interval. The window
(Duration, e.g. "3h") is how late within it a rotation may still run; without it the service
keeps the window open for an hour (schedules in hours) or to the end of the UTC day.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import re
from collections.abc import Mapping
from typing import Any

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_DURATION = re.compile(r"^(\d{1,2})h$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# Two leap years and more: every month/weekday combination a cron expression can name occurs.
_HORIZON_START = dt.date(2024, 1, 1)
_HORIZON_DAYS = 366 * 4 + 31


def _number(token: str, names: tuple[str, ...], low: int) -> int:
    upper = token.upper()
    if upper in names:
        return names.index(upper) + low
    return int(token)


def _expand(spec: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            left, right = base.split("-", 1)
            first, last = _number(left, names, low), _number(right, names, low)
        else:
            first = _number(base, names, low)
            last = high if step_text else first
        values.update(range(first, last + 1, max(step, 1)))
    return values


def _weekday(day: dt.date) -> int:
    """1 (Sunday) to 7 (Saturday), as AWS cron numbers them."""
    return (day.isoweekday() % 7) + 1


def _nearest_weekday(year: int, month: int, target: int) -> int:
    last = calendar.monthrange(year, month)[1]
    target = min(target, last)
    day = dt.date(year, month, target)
    if day.isoweekday() == 6:  # Saturday: Friday before, unless that leaves the month
        return target - 1 if target > 1 else target + 2
    if day.isoweekday() == 7:  # Sunday: Monday after, unless that leaves the month
        return target + 1 if target < last else target - 2
    return target


def _dom_matches(spec: str, day: dt.date) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if spec == "L":
        return day.day == last
    if spec == "LW":
        return day.day == _nearest_weekday(day.year, day.month, last)
    if spec.startswith("L-"):
        return day.day == last - int(spec[2:])
    if spec.endswith("W"):
        return day.day == _nearest_weekday(day.year, day.month, int(spec[:-1]))
    return day.day in _expand(spec, 1, 31)


def _dow_matches(spec: str, day: dt.date) -> bool:
    upper = spec.upper()
    if "#" in upper:
        weekday, nth = upper.split("#", 1)
        return _weekday(day) == _number(weekday, _DAYS, 1) and (day.day - 1) // 7 + 1 == int(nth)
    if upper.endswith("L") and upper != "L":
        last = calendar.monthrange(day.year, day.month)[1]
        return _weekday(day) == _number(upper[:-1], _DAYS, 1) and day.day + 7 > last
    if upper == "L":
        return _weekday(day) == 7
    return _weekday(day) in _expand(upper, 1, 7, _DAYS)


def _cron_interval_days(body: str) -> float | None:
    fields = body.split()
    if len(fields) != 6:
        return None
    _minutes, hours, dom, month, dow, _year = fields
    try:
        starts = sorted(_expand(hours, 0, 23))
        months = _expand(month, 1, 12, _MONTHS)
        moments: list[float] = []
        for offset in range(_HORIZON_DAYS):
            day = _HORIZON_START + dt.timedelta(days=offset)
            if day.month not in months:
                continue
            if (dom != "?" and not _dom_matches(dom, day)) or (dow != "?" and not _dow_matches(dow, day)):
                continue
            moments.extend(offset + hour / 24 for hour in starts)
    except (ValueError, IndexError):
        return None
    if len(moments) < 2:
        return None
    return max(later - earlier for earlier, later in itertools.pairwise(moments))


def interval_days(rules: Mapping[str, Any] | None) -> float | None:
    """The longest time the rules let pass between two rotations, in days (None: unknown)."""
    if not rules:
        return None
    expression = str(rules.get("ScheduleExpression") or "").strip()
    rate = _RATE.match(expression)
    if rate:
        amount = int(rate.group(1))
        return amount / 24 if rate.group(2).startswith("hour") else float(amount)
    cron = _CRON.match(expression)
    if cron:
        return _cron_interval_days(cron.group(1))
    days = rules.get("AutomaticallyAfterDays")
    if isinstance(days, int | float) and days > 0:
        return float(days)
    return None


def window_days(rules: Mapping[str, Any] | None) -> float:
    """How long after its window opens a rotation may still start, in days."""
    duration = _DURATION.match(str((rules or {}).get("Duration") or ""))
    if duration:
        return int(duration.group(1)) / 24
    interval = interval_days(rules)
    return 1 / 24 if interval is not None and interval < 1 else 1.0


def describe(rules: Mapping[str, Any] | None) -> str:
    """The schedule, as a person reads it ('every 30 days', 'rate(4 hours)')."""
    if not rules:
        return "no schedule"
    expression = rules.get("ScheduleExpression")
    if expression:
        return str(expression)
    days = rules.get("AutomaticallyAfterDays")
    return f"every {days} days" if days else "no schedule"
