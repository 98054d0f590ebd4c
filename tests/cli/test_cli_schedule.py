"""The rotation schedule rules, checked before anything is changed (rotation_cli.schedule)."""

from __future__ import annotations

import pytest

from rotation_cli.schedule import ScheduleError, validate


@pytest.mark.parametrize(
    ("expression", "duration", "starts", "window"),
    [
        ("rate(30 days)", None, (0,), 24),
        ("rate(1 day)", "3h", (0,), 3),
        ("rate(4 hours)", None, (0, 4, 8, 12, 16, 20), 1),
        ("rate(4 hours)", "4h", (0, 4, 8, 12, 16, 20), 4),
        ("rate(12 hours)", "2h", (0, 12), 2),
        ("rate(999 days)", None, (0,), 24),
        ("cron(0 4/12 * * ? *)", None, (4, 16), 1),
        ("cron(0 8 ? * MON *)", "4h", (8,), 4),
        ("cron(0 0 ? * SUN#1 *)", None, (0,), 24),
        ("cron(0 16 L * ? *)", "8h", (16,), 8),
        ("cron(0 2/10 * * ? *)", None, (2, 12, 22), 1),
        ("cron(0 0,6,12,18 * * ? *)", "6h", (0, 6, 12, 18), 6),
        ("cron(0 20 1-15 JAN-JUN ? *)", None, (20,), 4),
        ("cron(0 1,23 ? * MON *)", None, (1, 23), 1),  # Monday 23:00 to Tuesday 01:00 is not a rotation
    ],
)
def test_valid_schedules(expression: str, duration: str | None, starts: tuple[int, ...], window: int) -> None:
    schedule = validate(expression, duration)
    assert schedule.start_hours == starts
    assert schedule.window_hours == window
    rules = schedule.rotation_rules()
    assert rules["ScheduleExpression"] == expression
    assert rules.get("Duration") == duration


@pytest.mark.parametrize(
    ("expression", "duration", "why"),
    [
        ("rate(1 hour)", None, "every four hours"),
        ("rate(3 hours)", None, "every four hours"),
        ("rate(24 hours)", None, "use days"),
        ("rate(0 days)", None, "positive"),
        ("rate(1000 days)", None, "999 days"),
        ("rate(2 weeks)", None, "rate(Value Unit)"),
        ("rate(4 hours)", "5h", "next one"),
        ("rate(1 day)", "25h", "1h to 24h"),
        ("rate(1 day)", "0h", "1h to 24h"),
        ("rate(1 day)", "2 hours", "1h to 24h"),
        ("cron(15 0 * * ? *)", None, "Minutes field must be 0"),
        ("cron(0 0 * * ? 2030)", None, "Year field must be *"),
        ("cron(0 */2 * * ? *)", None, "2 hours apart"),
        ("cron(0 0,3 * * ? *)", None, "3 hours apart"),
        ("cron(0 0,22 * * ? *)", None, "2 hours apart"),  # 22:00, then 00:00 the next day
        ("cron(0 0 * * * *)", None, "must be ?"),
        ("cron(0 0 ? * ? *)", None, "must be ?"),
        ("cron(0 24 * * ? *)", None, "outside 0-23"),
        ("cron(0 0 32 * ? *)", None, "outside 1-31"),
        ("cron(0 0 ? * FUNDAY *)", None, "not a value"),
        ("cron(0 0 * *)", None, "six fields"),
        ("cron(0 22 * * ? *)", "3h", "next UTC day"),
        ("cron(0 4/6 * * ? *)", "7h", "next one"),
        ("every day", None, "rate(Value Unit)"),
    ],
)
def test_invalid_schedules(expression: str, duration: str | None, why: str) -> None:
    with pytest.raises(ScheduleError, match=why.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        validate(expression, duration)
