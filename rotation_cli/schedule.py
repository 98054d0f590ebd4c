"""Rotation schedules checked as Secrets Manager checks them, before anything is changed.

The service's rules (Secrets Manager User Guide, "Rotation schedules"; API reference,
RotationRulesType):

- rate(Value Unit): Value a positive whole number, Unit hour, hours, day or days. No more
  often than every four hours; at most 999 days. The window opens at midnight UTC.
- cron(Minutes Hours Day-of-month Month Day-of-week Year), in UTC: Minutes must be 0
  (windows open on the hour), Year must be * (schedules more than a year apart are not
  supported). One of Day-of-month and Day-of-week must be ? (the AWS cron dialect). A
  schedule in hours resets each day (cron(0 4/12 * * ? *) is 04:00 and 16:00), and no
  two rotations may be less than four hours apart.
- Duration ("3h"): the rotation window, 1 to 24 hours. It must not extend into the next
  UTC day (start hour + duration <= 24) nor into the next rotation window (for a
  schedule in hours, duration <= hours between rotations). Without it the window closes
  after one hour for a schedule in hours and at the end of the day for one in days.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MIN_HOURS_BETWEEN = 4
MAX_DAYS = 999
MAX_RATE_HOURS = 23  # a longer interval is a schedule in days: rate(1 day), rate(2 days), ...

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_DURATION = re.compile(r"^(\d{1,2})h$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class ScheduleError(ValueError):
    """A schedule or duration the service would refuse; the message says why."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    duration: str | None
    in_hours: bool  # several rotations a day (else one a day at most)
    start_hours: tuple[int, ...]  # hours (UTC) the windows open, within a day
    window_hours: int  # the window's length, given or the service's default

    def rotation_rules(self) -> dict[str, str]:
        rules = {"ScheduleExpression": self.expression}
        if self.duration is not None:
            rules["Duration"] = self.duration
        return rules

    def describe(self) -> str:
        starts = ", ".join(f"{h:02d}:00" for h in self.start_hours)
        return f"{self.expression}: windows open at {starts} UTC and last {self.window_hours} h"


def _duration(text: str | None) -> int | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if not match or not 1 <= int(match.group(1)) <= 24:
        raise ScheduleError(f"duration '{text}' must be a whole number of hours from 1h to 24h, e.g. 2h")
    return int(match.group(1))


def _number(token: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    upper = token.upper()
    if names and upper in names:
        return names.index(upper) + low
    if not token.isdigit():
        raise ScheduleError(f"cron {field} field: '{token}' is not a value")
    value = int(token)
    if not low <= value <= high:
        raise ScheduleError(f"cron {field} field: {value} is outside {low}-{high}")
    return value


def _expand(spec: str, low: int, high: int, field: str, names: tuple[str, ...] = ()) -> set[int]:
    """The values a cron field with , - * / covers."""
    values: set[int] = set()
    for part in spec.split(","):
        if not part:
            raise ScheduleError(f"cron {field} field: empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"cron {field} field: the increment in '{part}' must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            left, right = base.split("-", 1)
            first, last = _number(left, low, high, names, field), _number(right, low, high, names, field)
            if first > last:
                raise ScheduleError(f"cron {field} field: range '{base}' runs backwards")
        else:
            first = _number(base, low, high, names, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


_DOM_SPECIAL = re.compile(r"^(L|LW|L-\d{1,2}|\d{1,2}W)$")
_DOW_SPECIAL = re.compile(r"^([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5])$", re.IGNORECASE)


def _check_day_fields(dom: str, month: str, dow: str) -> bool:
    """Validate the day fields; True when the schedule runs every day."""
    if (dom == "?") == (dow == "?"):
        raise ScheduleError("cron: exactly one of Day-of-month and Day-of-week must be ? (the other says which days)")
    if dom != "?" and not _DOM_SPECIAL.match(dom):
        _expand(dom, 1, 31, "Day-of-month")
    if dow != "?" and not _DOW_SPECIAL.match(dow) and dow.upper() != "L":
        _expand(dow, 1, 7, "Day-of-week", _DAYS)
    _expand(month, 1, 12, "Month", _MONTHS)
    return month == "*" and dom in ("*", "?") and dow in ("*", "?")


def _cron(body: str) -> tuple[tuple[int, ...], bool]:
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleError("cron() takes six fields: Minutes Hours Day-of-month Month Day-of-week Year")
    minutes, hours, dom, month, dow, year = fields
    if minutes != "0":
        raise ScheduleError("cron: the Minutes field must be 0 (rotation windows open on the hour)")
    if year != "*":
        raise ScheduleError("cron: the Year field must be * (schedules more than a year apart are not supported)")
    every_day = _check_day_fields(dom, month, dow)
    starts = tuple(sorted(_expand(hours, 0, 23, "Hours")))
    return starts, every_day


def _gaps(starts: tuple[int, ...], every_day: bool) -> list[int]:
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    if every_day and len(starts) > 1:
        gaps.append(24 - starts[-1] + starts[0])  # the last window of a day to the first of the next
    return gaps


def validate(expression: str, duration: str | None = None) -> Schedule:
    """The schedule, or ScheduleError saying which rule of the service it breaks."""
    text = expression.strip()
    window = _duration(duration)
    rate = _RATE.match(text)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2)
        if amount < 1:
            raise ScheduleError("rate(): the value must be a positive whole number")
        if unit.startswith("hour"):
            if amount < MIN_HOURS_BETWEEN:
                raise ScheduleError("rate(): a secret can be rotated at most every four hours (rate(4 hours))")
            if amount > MAX_RATE_HOURS:
                raise ScheduleError("rate(): for 24 hours or more, use days (rate(1 day), rate(2 days), ...)")
            size = window if window is not None else 1
            if size > amount:
                raise ScheduleError(
                    f"duration {size}h is longer than the {amount} hours between rotations: "
                    "the window must not extend into the next one"
                )
            starts = tuple(range(0, 24, amount))
            return Schedule(text, duration, True, starts, size)
        if amount > MAX_DAYS:
            raise ScheduleError(f"rate(): at most {MAX_DAYS} days between rotations")
        return Schedule(text, duration, False, (0,), window if window is not None else 24)
    cron = _CRON.match(text)
    if not cron:
        raise ScheduleError(
            "the schedule must be rate(Value Unit) or cron(Minutes Hours Day-of-month Month Day-of-week Year)"
        )
    starts, every_day = _cron(cron.group(1))
    in_hours = len(starts) > 1
    gaps = _gaps(starts, every_day)
    if gaps and min(gaps) < MIN_HOURS_BETWEEN:
        raise ScheduleError(
            f"cron: rotations {min(gaps)} hours apart; a secret can be rotated at most every four hours"
        )
    size = window if window is not None else (1 if in_hours else 24 - starts[-1])
    if gaps and size > min(gaps):
        raise ScheduleError(
            f"duration {size}h is longer than the {min(gaps)} hours between rotations: "
            "the window must not extend into the next one"
        )
    latest = starts[-1]
    if latest + size > 24:
        raise ScheduleError(
            f"duration {size}h from {latest:02d}:00 runs into the next UTC day: "
            "start hour + duration must be at most 24"
        )
    return Schedule(text, duration, in_hours, starts, size)
