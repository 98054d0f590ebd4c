"""`attach`: validate the schedule and the function, then RotateSecret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli.conftest import MakeFunction, PgSecret, StandInService, current, run_cli, stuck
from tests.engines import PostgresHarness
from tests.support import rotations


@pytest.mark.parametrize(
    ("schedule", "duration"),
    [("rate(30 days)", None), ("rate(4 hours)", "2h"), ("cron(0 4/12 * * ? *)", None), ("cron(0 8 ? * MON *)", "3h")],
)
def test_attach_with_a_valid_schedule(
    schedule: str, duration: str | None, pg_secret: PgSecret, sm: Any, make_function: MakeFunction
) -> None:
    function = make_function()
    argv = ["attach", pg_secret.arn, "--function", function, "--schedule", schedule, "--no-rotate-now", "--json"]
    if duration:
        argv += ["--duration", duration]
    result = run_cli(*argv)
    assert result.code == 0, result
    assert result.doc is not None and result.doc["attached"]
    expected = {"ScheduleExpression": schedule, **({"Duration": duration} if duration else {})}
    assert result.doc["rotation_rules"] == expected
    described = sm.describe_secret(SecretId=pg_secret.arn)
    assert described["RotationLambdaARN"] == function
    assert described["RotationEnabled"]
    assert stuck(sm, pg_secret.arn) == [], "no test version is left labelled AWSPENDING (the service removes it)"
    assert current(sm, pg_secret.arn) == pg_secret.doc, "--no-rotate-now: the value did not change"
    if schedule == "rate(30 days)":  # attached, the secret rotates (here locally) as on its schedule
        assert run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres").code == 0


@pytest.mark.parametrize(
    ("schedule", "duration"),
    [
        ("rate(1 hour)", None),
        ("rate(2 hours)", None),
        ("rate(1000 days)", None),
        ("cron(30 0 * * ? *)", None),
        ("cron(0 0 * * ? 2030)", None),
        ("cron(0 */2 * * ? *)", None),
        ("cron(0 0 * * * *)", None),
        ("rate(4 hours)", "6h"),
        ("cron(0 23 * * ? *)", "2h"),
        ("rate(7 days)", "48h"),
        ("weekly", None),
    ],
)
def test_attach_refuses_an_invalid_schedule_and_changes_nothing(
    schedule: str, duration: str | None, pg_secret: PgSecret, sm: Any
) -> None:
    function = "arn:aws:lambda:us-east-1:123456789012:function:any"  # the schedule is refused first
    argv = ["attach", pg_secret.arn, "--function", function, "--schedule", schedule, "--no-rotate-now"]
    if duration:
        argv += ["--duration", duration]
    result = run_cli(*argv)
    assert result.code == 2, result
    assert "invalid schedule" in result.err
    described = sm.describe_secret(SecretId=pg_secret.arn)
    assert "RotationLambdaARN" not in described and not described.get("RotationEnabled")


def test_attach_refuses_a_function_that_is_missing_or_may_not_be_invoked(
    pg_secret: PgSecret, sm: Any, make_function: MakeFunction
) -> None:
    no_permission = make_function(permission=False)
    result = run_cli("attach", pg_secret.arn, "--function", no_permission, "--schedule", "rate(30 days)", "--json")
    assert result.code == 1, result
    assert result.doc is not None and not result.doc["attached"]
    assert any("add-permission" in p for p in result.doc["function_check"]["problems"])
    missing = no_permission.rsplit(":", 1)[0] + ":no-such-function"
    result = run_cli("attach", pg_secret.arn, "--function", missing, "--schedule", "rate(30 days)")
    assert result.code == 1 and "does not exist" in result.out
    bad_arn = run_cli("attach", pg_secret.arn, "--function", "my-function", "--schedule", "rate(30 days)")
    assert bad_arn.code == 2 and "Lambda function ARN" in bad_arn.err  # a bad argument
    assert "RotationLambdaARN" not in sm.describe_secret(SecretId=pg_secret.arn)


def test_attach_refuses_while_a_rotation_is_unfinished(
    pg_secret: PgSecret, sm: Any, make_function: MakeFunction
) -> None:
    run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--fail-at", "createSecret")
    result = run_cli("attach", pg_secret.arn, "--function", make_function(), "--schedule", "rate(30 days)")
    assert result.code == 1 and "unfinished" in result.err


def test_attach_and_rotate_now_follows_the_first_rotation(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, make_function: MakeFunction, stand_in: Any
) -> None:
    function = make_function()
    service: StandInService = stand_in(pg_secret.arn, function)
    result = run_cli(
        "attach", pg_secret.arn, "--function", function, "--schedule", "rate(30 days)", "--poll", "0.05",
        "--timeout", "30", "--json",
    )  # fmt: skip
    assert result.code == 0, result
    assert result.doc is not None and result.doc["token"] in service.done
    assert result.doc["first_rotation"]["finished"] and result.doc["ok"]
    token = result.doc["token"]
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[token]
    after = current(sm, pg_secret.arn)
    assert after != pg_secret.doc and pg.works(after)
    assert json.loads(rotations.value(sm, pg_secret.arn, "AWSPREVIOUS")) == pg_secret.doc
