"""`rotate --local`: the four steps through each function's own code, as the service runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from rotation_cli import paths
from rotation_core import UnreachableError
from tests.cli.conftest import (
    PgSecret,
    current,
    free_port,
    run_cli,
    stuck,
    version_value,
    wrong_password_secret,
)
from tests.conftest import RotationCase
from tests.engines import PostgresHarness, new_password, unique
from tests.support import rotations


def test_rotate_local_every_function_and_strategy(case: RotationCase) -> None:
    engine = case.target.name
    if engine not in paths.engines():
        pytest.skip(f"no functions/{engine}/app.py")
    before = case.current()
    result = run_cli("rotate", case.arn, "--local", "--engine", engine, "--json")
    assert result.code == 0, result
    assert result.doc is not None and result.doc["ok"]
    token = result.doc["token"]
    assert [run["step"] for run in result.doc["attempts"][0]] == list(rotations.STEPS)
    assert "AWSCURRENT" in rotations.stages(case.sm, case.arn)[token]
    after = case.current()
    assert after != before
    assert case.works(after), "the new credential really works"
    assert json.loads(rotations.value(case.sm, case.arn, "AWSPREVIOUS")) == before
    assert rotations.stuck_pending(case.sm, case.arn) == []
    case.target.check_rotated(case.strategy, before, after)


def test_rotate_prints_each_step_duration_and_result(pg_secret: PgSecret, pg: PostgresHarness, sm: Any) -> None:
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres")
    assert result.code == 0, result
    for step in rotations.STEPS:
        line = next(line for line in result.out.splitlines() if line.strip().startswith(step))
        assert " ok " in line and line.rstrip().endswith("ms"), line
    assert "the new credential works" in result.out
    assert f"(user {pg_secret.username})" in result.out
    assert pg_secret.doc["password"] not in result.out
    assert pg.works(current(sm, pg_secret.arn))
    assert not pg.works(pg_secret.doc), "single user: the old password no longer logs in"


@pytest.mark.parametrize("fail_at", rotations.STEPS[:3])
def test_fail_at_leaves_a_real_failure_then_rotate_again_completes(
    fail_at: str, pg_secret: PgSecret, pg: PostgresHarness, sm: Any
) -> None:
    first = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--fail-at", fail_at, "--json")
    assert first.code == 1, first
    assert first.doc is not None and first.doc["stopped_after"] == fail_at
    token = first.doc["token"]
    assert stuck(sm, pg_secret.arn) == [token], "AWSPENDING stays on the token's version, not AWSCURRENT"
    assert current(sm, pg_secret.arn) == pg_secret.doc, "AWSCURRENT did not move"
    pending = version_value(sm, pg_secret.arn, token)
    if fail_at == "createSecret":
        assert pg.works(pg_secret.doc) and not pg.works(pending), "the database has not learnt the new password"
    else:
        assert pg.works(pending) and not pg.works(pg_secret.doc), "setSecret changed the password"

    again = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--json")
    assert again.code == 0, again
    assert again.doc is not None and again.doc["resumed"] and again.doc["token"] == token
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[token]
    assert current(sm, pg_secret.arn) == pending, "the resumed rotation kept the pending credential"
    assert pg.works(current(sm, pg_secret.arn))
    assert stuck(sm, pg_secret.arn) == []


def test_a_failed_step_retries_the_whole_rotation(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = paths.load_function("postgres").lambda_handler.rotation.engine
    original = engine.connect
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise UnreachableError("cannot connect: injected network failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "connect", flaky)
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--retry-delay", "0", "--json")
    assert result.code == 0, result
    assert result.doc is not None
    first, second = result.doc["attempts"]
    assert [run["step"] for run in first] == ["createSecret", "setSecret"]
    assert not first[-1]["ok"] and "UnreachableError" in first[-1]["error"]
    assert [run["step"] for run in second] == list(rotations.STEPS) and all(run["ok"] for run in second)
    assert pg.works(current(sm, pg_secret.arn))


def test_a_refused_credential_is_not_retried(pg: PostgresHarness, sm: Any) -> None:
    """A retry cannot make a wrong password right; it would only add failed logins towards
    an account lockout. One attempt, and the reason why there is no second."""
    arn = wrong_password_secret(pg, sm)
    result = run_cli(
        "rotate", arn, "--local", "--engine", "postgres", "--attempts", "3", "--retry-delay", "0", "--json"
    )
    assert result.code == 1, result
    assert result.doc is not None and not result.doc["ok"] and result.doc["not_retried"]
    assert len(result.doc["attempts"]) == 1
    last = result.doc["attempts"][0][-1]
    assert last["step"] == "setSecret" and "AuthenticationError" in last["error"] and not last["retryable"]
    assert stuck(sm, arn) == [result.doc["token"]]
    human = run_cli("rotate", arn, "--local", "--engine", "postgres", "--retry-delay", "0")
    assert human.code == 1
    assert "setSecret failed: AuthenticationError" in human.out
    assert "not retried: a retry cannot fix it" in human.out


def test_an_unreachable_target_is_retried_a_bounded_number_of_times(pg: PostgresHarness, sm: Any) -> None:
    doc = pg.secret(unique("app"), new_password())
    doc["port"] = free_port()  # nothing listens there: connection refused, every time
    arn = str(sm.create_secret(Name=unique("postgres-secret"), SecretString=json.dumps(doc))["ARN"])
    result = run_cli(
        "rotate", arn, "--local", "--engine", "postgres", "--attempts", "2", "--retry-delay", "0", "--json"
    )
    assert result.code == 1, result
    assert result.doc is not None and not result.doc["not_retried"]
    assert len(result.doc["attempts"]) == 2
    for attempt in result.doc["attempts"]:
        assert attempt[-1]["step"] == "setSecret" and "UnreachableError" in attempt[-1]["error"]
    assert stuck(sm, arn) == [result.doc["token"]]


def test_real_account_mode_prepares_the_version_without_rotate_secret(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any
) -> None:
    """--no-emulator: the path taken against a real account (PutSecretValue of the function's
    own createSecret result), exercised here against moto, which implements it as AWS does."""
    refused = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--no-emulator")
    assert refused.code == 1
    assert "rotation is not enabled" in refused.err
    assert rotations.stages(sm, pg_secret.arn) == {v: ["AWSCURRENT"] for v in rotations.stages(sm, pg_secret.arn)}

    assert run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres").code == 0  # enables rotation (moto)
    before = current(sm, pg_secret.arn)
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--no-emulator", "--json")
    assert result.code == 0, result
    assert result.doc is not None and "PutSecretValue" in result.doc["prepared"]
    after = current(sm, pg_secret.arn)
    assert after != before and pg.works(after) and not pg.works(before)
    assert stuck(sm, pg_secret.arn) == []


def test_local_takes_the_engine_from_the_secret_or_needs_a_known_function(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any
) -> None:
    result = run_cli("rotate", pg_secret.arn, "--local")
    assert result.code == 0, result
    assert "function postgres (from the secret)" in result.out
    assert pg.works(current(sm, pg_secret.arn))
    unknown = pg.secret(unique("app"), new_password())
    unknown["engine"] = "oracle"
    arn = str(sm.create_secret(Name=unique("oracle-secret"), SecretString=json.dumps(unknown))["ARN"])
    before = rotations.stages(sm, arn)
    no_engine = run_cli("rotate", arn, "--local")
    assert no_engine.code == 2 and "pass --engine (one of:" in no_engine.err, no_engine
    assert rotations.stages(sm, arn) == before
    assert run_cli("rotate", pg_secret.arn, "--local", "--engine", "nosuchengine").code == 2


def test_the_entry_points_run(pg_secret: PgSecret, pg: PostgresHarness, sm: Any, moto_endpoint: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint, **pg.env()}
    env.pop("PYTHONPATH", None)
    for command in (
        [str(paths.ROOT / "bin" / "rotate"), "--help"],
        [sys.executable, "-m", "rotation_cli", "status", "--help"],
    ):
        done = subprocess.run(command, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "rotate" in done.stdout
    done = subprocess.run(
        [str(paths.ROOT / "bin" / "rotate"), "rotate", pg_secret.arn, "--local", "--engine", "postgres"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rotation succeeded" in done.stdout
    assert pg.works(current(sm, pg_secret.arn))
    assert pg_secret.doc["password"] not in done.stdout + done.stderr
