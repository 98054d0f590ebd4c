"""`rotate --remote`: RotateSecret, then follow the rotation the service runs.

moto holds the function but cannot invoke it (no Docker), and the command says so at once.
For the rest a stand-in plays the service's part (tests/cli/conftest.py: StandInService):
it notices the new AWSPENDING version, runs the function's steps and writes the function's
logs to moto's CloudWatch Logs."""

from __future__ import annotations

import shlex
import time
from typing import Any

from rotation_cli import remote
from tests.cli.conftest import (
    MakeFunction,
    PgSecret,
    current,
    moto_lambda_config,
    rotate_bin,
    run_bin,
    run_cli,
    stuck,
    wrong_password_secret,
)
from tests.engines import PostgresHarness
from tests.support import rotations

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
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[doc["token"]]
    assert doc["logs_readable"] is True
    steps_logged = {line["step"] for line in doc["logs"] if line["level"] == "INFO"}
    assert set(rotations.STEPS) <= steps_logged, "the function's log events were followed"
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
    token = rotations.start_rotation(sm, pg_secret.arn)  # as if an earlier rotation had stopped
    stand_in(pg_secret.arn, function)
    result = run_cli("rotate", pg_secret.arn, "--remote", *FAST, "--json")
    assert result.code == 0, result
    assert result.doc is not None and result.doc["token"] == token
    assert "unfinished" in result.doc["started"]
    assert pg.works(current(sm, pg_secret.arn))


def test_remote_needs_a_configured_function(pg_secret: PgSecret) -> None:
    result = run_cli("rotate", pg_secret.arn, "--remote", *FAST)
    assert result.code == 1 and "attach" in result.err


def _state(sm: Any, arn: str) -> tuple[Any, ...]:
    """AWSCURRENT's version and value: what a rotation nobody runs must leave as it was."""
    version = next(v for v, s in rotations.stages(sm, arn).items() if "AWSCURRENT" in s)
    return version, current(sm, arn)


def test_remote_against_moto_without_docker_says_so_at_once(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, make_function: MakeFunction
) -> None:
    """moto holds the function but invokes it only through Docker: without it, it logs
    "error running docker" and runs nothing. The command says so at once (default timeout
    300 s; here 60 s, so that a missing protection fails the test rather than hang it)."""
    _attach(pg_secret.arn, make_function())
    before = _state(sm, pg_secret.arn)
    began = time.monotonic()
    done = run_bin([rotate_bin(), "rotate", pg_secret.arn, "--remote", "--engine", "postgres", "--timeout", "60"])
    took = time.monotonic() - began
    assert done.code == 1, done
    assert took < 15, f"followed for {took:.1f} s"
    assert "rotation not followed: the emulator cannot invoke the function (moto needs Docker" in done.out
    assert "error running docker" in done.out and "Traceback" not in done.err
    assert _state(sm, pg_secret.arn) == before, "AWSCURRENT and its value unchanged"
    (token,) = stuck(sm, pg_secret.arn)
    assert f"AWSPENDING stays on version {token}, with no value" in done.out
    # the printed way forward runs as printed: the rotation, here, resuming that version
    local = next(line for line in done.out.splitlines() if "run the rotation here instead" in line)
    resumed = run_bin(shlex.split(local.split(": ", 1)[1]))
    assert resumed.code == 0, resumed
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[token] and pg.works(current(sm, pg_secret.arn))


def test_remote_against_an_emulator_that_runs_nothing_stops_after_the_grace(
    pg_secret: PgSecret, sm: Any, make_function: MakeFunction, moto_endpoint: str
) -> None:
    """An emulator that accepts the invocation and runs nothing (moto's Docker-free stub):
    no step starts within the grace period (or the timeout, if shorter), and it says so."""
    moto_lambda_config(moto_endpoint, use_docker=False)
    try:
        _attach(pg_secret.arn, make_function())
        before = _state(sm, pg_secret.arn)
        began = time.monotonic()
        result = run_cli("rotate", pg_secret.arn, "--remote", "--poll", "0.05", "--timeout", "30", "--json")
        took = time.monotonic() - began
        short = run_cli("rotate", pg_secret.arn, "--remote", "--poll", "0.05", "--timeout", "0.5", "--json")
    finally:
        moto_lambda_config(moto_endpoint, use_docker=True)
    assert result.code == 1 and result.doc is not None, result
    assert "has not run the function: no step started in" in result.doc["emulator_cannot_run"]
    assert not result.doc["timed_out"] and not result.doc["finished"]
    assert remote.EMULATOR_GRACE <= took < remote.EMULATOR_GRACE + 10
    assert short.code == 1 and short.doc is not None and short.doc["emulator_cannot_run"], short
    assert short.doc["token"] == result.doc["token"], "the unfinished rotation is followed, not a new one"
    assert _state(sm, pg_secret.arn) == before
