"""`rotate --remote`: RotateSecret, then follow the rotation the service runs.

moto holds the function but cannot invoke it (no Docker); a stand-in plays the service's
part (tests/cli/conftest.py: StandInService): it notices the new AWSPENDING version, runs
the function's steps and writes the function's logs to moto's CloudWatch Logs."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import MakeFunction, PgSecret, current, run_cli, stuck, wrong_password_secret
from tests.engines import PostgresHarness
from tests.support import driver

FAST = ("--poll", "0.05", "--timeout", "30")


def _attach(arn: str, function: str) -> None:
    result = run_cli("attach", arn, "--function", function, "--schedule", "rate(30 days)", "--no-rotate-now")
    assert result.code == 0, result


def test_remote_rotation_succeeds(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, make_function: MakeFunction, stand_in: Any
) -> None:
    function = make_function()
    _attach(pg_secret.arn, function)
    stand_in(pg_secret.arn, function)
    result = run_cli("rotate", pg_secret.arn, "--remote", "--engine", "postgres", *FAST, "--json")
    assert result.code == 0, result
    doc = result.doc
    assert doc is not None and doc["finished"] and doc["ok"]
    assert "AWSCURRENT" in driver.stages(sm, pg_secret.arn)[doc["token"]]
    assert doc["logs_readable"] is True
    steps_logged = {line["step"] for line in doc["logs"] if line["level"] == "INFO"}
    assert set(driver.STEPS) <= steps_logged, "the function's log events were followed"
    assert all(check["ok"] for check in doc["checks"])
    assert any("works" in check["check"] for check in doc["checks"]), "verified with the local testSecret logic"
    after = current(sm, pg_secret.arn)
    assert after != pg_secret.doc and pg.works(after) and not pg.works(pg_secret.doc)
    human = run_cli("rotate", pg_secret.arn, "--remote", *FAST)
    assert human.code == 0 and "rotation succeeded" in human.out
    assert "finishSecret" in human.out


def test_remote_rotation_reports_the_failing_step_and_why(
    pg: PostgresHarness, sm: Any, make_function: MakeFunction, stand_in: Any
) -> None:
    arn = wrong_password_secret(pg, sm)
    function = make_function()
    _attach(arn, function)
    stand_in(arn, function)
    result = run_cli("rotate", arn, "--remote", *FAST, "--json")
    assert result.code == 1, result
    doc = result.doc
    assert doc is not None and not doc["finished"] and doc["gave_up"]
    assert doc["failed_step"] == "setSecret"
    assert "could not log in" in doc["failure"] or "AuthenticationError" in str(doc["logs"])
    assert stuck(sm, arn) == [doc["token"]], "the failed rotation is left for recover"
    human = run_cli("recover", arn, "--engine", "postgres")
    assert human.code == 0 and "nothing was changed" in human.out


def test_remote_follows_an_unfinished_rotation_instead_of_starting_one(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, make_function: MakeFunction, stand_in: Any
) -> None:
    function = make_function()
    _attach(pg_secret.arn, function)
    token = driver.start_rotation(sm, pg_secret.arn)  # as if an earlier rotation had stopped
    stand_in(pg_secret.arn, function)
    result = run_cli("rotate", pg_secret.arn, "--remote", *FAST, "--json")
    assert result.code == 0, result
    assert result.doc is not None and result.doc["token"] == token
    assert "unfinished" in result.doc["started"]
    assert pg.works(current(sm, pg_secret.arn))


def test_remote_needs_a_configured_function(pg_secret: PgSecret) -> None:
    result = run_cli("rotate", pg_secret.arn, "--remote", *FAST)
    assert result.code == 1 and "attach" in result.err


def test_remote_times_out_when_nothing_runs_the_function(
    pg_secret: PgSecret, sm: Any, make_function: MakeFunction
) -> None:
    _attach(pg_secret.arn, make_function())
    result = run_cli("rotate", pg_secret.arn, "--remote", "--poll", "0.05", "--timeout", "0.5", "--json")
    assert result.code == 1
    assert result.doc is not None and result.doc["timed_out"] and not result.doc["finished"]
