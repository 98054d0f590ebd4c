"""Attach a deployed rotation function to an existing secret.

Checks first, changes after: the schedule is validated as the service validates it
(rotation_cli.schedule), the function must exist and its resource policy must let
secretsmanager.amazonaws.com invoke it, and no unfinished rotation may be in the way
(RotateSecret would be refused). Only then RotateSecret with RotationLambdaARN and
RotationRules, rotating now or at the next window (RotateImmediately=false: the service
then only runs testSecret against a temporary AWSPENDING version, which it removes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rotation_cli.aws import Aws, parse_arn
from rotation_cli.driver import CURRENT, PENDING, DriverError, lift_pending_from_current
from rotation_cli.errors import UsageError
from rotation_cli.function_check import FunctionCheck, check_function
from rotation_cli.schedule import Schedule


@dataclass
class AttachOutcome:
    secret_arn: str
    function_arn: str
    schedule: Schedule
    rotate_now: bool
    function: FunctionCheck | None = None
    attached: bool = False
    token: str | None = None  # the rotation started now, if any
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "secret": self.secret_arn,
            "function": self.function_arn,
            "rotation_rules": self.schedule.rotation_rules(),
            "schedule": self.schedule.describe(),
            "rotate_now": self.rotate_now,
            "function_check": self.function.as_dict() if self.function else None,
            "attached": self.attached,
            "token": self.token,
            "notes": self.notes,
        }


def _emulator_days(schedule: Schedule) -> int:
    expression = schedule.expression
    if expression.startswith("rate(") and "day" in expression:
        return int(expression[5:].split()[0])
    return 1


def attach(aws: Aws, secret_id: str, function_arn: str, schedule: Schedule, *, rotate_now: bool) -> AttachOutcome:
    parts = parse_arn(function_arn)
    if parts.get("service") != "lambda" or not parts.get("resource", "").startswith("function:"):
        raise UsageError("--function must be a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
    client = aws.secretsmanager
    described = client.describe_secret(SecretId=secret_id)
    arn = str(described["ARN"])
    outcome = AttachOutcome(arn, function_arn, schedule, rotate_now)
    versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    if stuck:
        raise DriverError(
            f"a previous rotation is unfinished (AWSPENDING on version {stuck[0]}): Secrets Manager refuses "
            "RotateSecret until it is finished or cleared (`rotate --local` resumes it, `recover` clears it)"
        )
    outcome.function = check_function(aws, function_arn, arn)
    if not outcome.function.ok:
        return outcome
    rules: dict[str, Any] = dict(schedule.rotation_rules())
    if aws.emulator:
        # moto turns rotation on only for AutomaticallyAfterDays (the service takes one or the other).
        rules["AutomaticallyAfterDays"] = _emulator_days(schedule)
        lift_pending_from_current(client, arn, versions)
    client.rotate_secret(
        SecretId=arn,
        RotationLambdaARN=function_arn,
        RotationRules=rules,
        RotateImmediately=rotate_now,
    )
    outcome.attached = True
    after = {v: list(s) for v, s in client.describe_secret(SecretId=arn).get("VersionIdsToStages", {}).items()}
    new_pending = [v for v, s in after.items() if v not in versions and PENDING in s and CURRENT not in s]
    if rotate_now:
        outcome.token = new_pending[0] if new_pending else None
    elif aws.emulator:
        # The service runs testSecret against a temporary AWSPENDING version and then removes
        # it; moto leaves it behind (with a copy of the current value), which would block the
        # next rotation: remove the label as the service would.
        for version in new_pending:
            client.update_secret_version_stage(SecretId=arn, VersionStage=PENDING, RemoveFromVersionId=version)
            outcome.notes.append(
                f"emulator: removed the test AWSPENDING label from version {version}, as the service does"
            )
    return outcome
