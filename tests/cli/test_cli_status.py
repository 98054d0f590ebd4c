"""`status`: versions, stages, schedule, function, dates, and the diagnosis."""

from __future__ import annotations

import contextlib
from typing import Any

from tests.cli.conftest import MakeFunction, PgSecret, run_cli
from tests.engines import PostgresHarness
from tests.support import rotations


def _levels(doc: dict[str, Any]) -> dict[str, list[str]]:
    levels: dict[str, list[str]] = {}
    for finding in doc["findings"]:
        levels.setdefault(finding["level"], []).append(finding["text"])
    return levels


def test_healthy_secret(pg_secret: PgSecret, pg: PostgresHarness, sm: Any, make_function: MakeFunction) -> None:
    function = make_function()
    attached = run_cli(
        "attach", pg_secret.arn, "--function", function, "--schedule", "rate(30 days)", "--no-rotate-now"
    )
    assert attached.code == 0, attached
    assert run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres").code == 0
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 0, result
    doc = result.doc
    assert doc is not None and doc["healthy"]
    assert doc["rotation_enabled"] and doc["function_arn"] == function
    assert doc["function"]["exists"] and doc["function"]["invoke_allowed"]
    assert doc["last_rotated"] is not None
    assert "problem" not in _levels(doc)
    versions = {tuple(v["stages"]): v for v in doc["versions"] if v["stages"]}
    current = next(v for v in doc["versions"] if "AWSCURRENT" in v["stages"])
    previous = next(v for v in doc["versions"] if "AWSPREVIOUS" in v["stages"])
    assert current["user"] == pg_secret.username and current["has_value"] and current["created"]
    assert previous["user"] == pg_secret.username
    assert rotations.stages(sm, pg_secret.arn)[current["version"]] == list(
        next(k for k in versions if "AWSCURRENT" in k)
    )
    human = run_cli("status", pg_secret.arn)
    assert human.code == 0
    assert "Secrets Manager may invoke it" in human.out
    assert pg_secret.doc["password"] not in human.out


def test_stuck_rotation(pg_secret: PgSecret, sm: Any) -> None:
    failed = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--fail-at", "setSecret", "--json")
    assert failed.doc is not None
    token = failed.doc["token"]
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 1, result
    assert result.doc is not None and not result.doc["healthy"]
    problems = _levels(result.doc)["problem"]
    assert any("unfinished rotation" in p and token in p and "--engine postgres" in p for p in problems), problems
    pending = next(v for v in result.doc["versions"] if v["version"] == token)
    assert pending["stages"] == ["AWSPENDING"] and pending["has_value"]
    human = run_cli("status", pg_secret.arn)
    assert "PROBLEM" in human.out and "recover" in human.out


def test_stuck_rotation_with_an_empty_pending_version(pg_secret: PgSecret, sm: Any) -> None:
    token = rotations.start_rotation(sm, pg_secret.arn)  # RotateSecret prepared it; the function never ran
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 1
    assert result.doc is not None
    problems = _levels(result.doc)["problem"]
    assert any(token in p and "has no value" in p for p in problems), problems


def test_never_rotated_secret(pg_secret: PgSecret) -> None:
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 0, result
    assert result.doc is not None
    warnings = _levels(result.doc)["warning"]
    assert any("never run" in w for w in warnings)
    assert any("not enabled" in w for w in warnings)
    assert result.doc["last_rotated"] is None and not result.doc["rotation_enabled"]
    assert [v["stages"] for v in result.doc["versions"]] == [["AWSCURRENT"]]


def test_function_missing_or_not_invokable(pg_secret: PgSecret, sm: Any, make_function: MakeFunction) -> None:
    no_permission = make_function(permission=False)
    sm.rotate_secret(
        SecretId=pg_secret.arn, RotationLambdaARN=no_permission, RotationRules={"AutomaticallyAfterDays": 7}
    )
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 1
    assert result.doc is not None and result.doc["function"]["invoke_allowed"] is False
    assert any("may not invoke" in p and "add-permission" in p for p in _levels(result.doc)["problem"])

    other = make_function()
    missing = other.replace(other.rsplit(":", 1)[-1], "no-such-function")
    with contextlib.suppress(sm.exceptions.ResourceNotFoundException):
        sm.rotate_secret(SecretId=pg_secret.arn, RotationLambdaARN=missing)  # moto records the ARN, then fails
    result = run_cli("status", pg_secret.arn, "--json")
    assert result.code == 1
    assert result.doc is not None and result.doc["function"]["exists"] is False
    assert any("does not exist" in p for p in _levels(result.doc)["problem"])


def test_wrong_source_account_is_not_an_invoke_permission(
    pg_secret: PgSecret, sm: Any, make_function: MakeFunction
) -> None:
    function = make_function(source_account="999999999999")
    result = run_cli("attach", pg_secret.arn, "--function", function, "--schedule", "rate(7 days)", "--no-rotate-now")
    assert result.code == 1, result
    assert "does not let secretsmanager.amazonaws.com invoke it" in result.out
    assert "RotationLambdaARN" not in sm.describe_secret(SecretId=pg_secret.arn)


def test_against_an_emulator_status_says_its_dates_and_schedules_are_the_emulators(
    pg_secret: PgSecret, sm: Any, moto_endpoint: str
) -> None:
    before = rotations.stages(sm, pg_secret.arn)
    human = run_cli("status", pg_secret.arn, "--no-function-check")
    lines = [line for line in human.out.splitlines() if "emulator" in line and "not the service's" in line]
    assert len(lines) == 1, human.out
    assert lines[0].startswith("emulator   dates and schedules shown here are the emulator's, not the service's")
    doc = run_cli("status", pg_secret.arn, "--no-function-check", "--json").doc
    assert doc is not None and "not the service's" in doc["emulator_note"]
    # the same endpoint declared the real service (a tunnel to AWS): no such line
    real = run_cli("status", pg_secret.arn, "--no-function-check", "--endpoint-url", moto_endpoint, "--no-emulator")
    assert "not the service's" not in real.out, real
    assert rotations.stages(sm, pg_secret.arn) == before, "status changed nothing"
