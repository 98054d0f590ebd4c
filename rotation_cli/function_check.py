"""Is a rotation function there, and may Secrets Manager invoke it?

The service invokes the function as the principal secretsmanager.amazonaws.com, so the
function's resource policy (lambda get_policy) needs a statement allowing that service
lambda:InvokeFunction; its conditions, when present, must let this secret's account
(aws:SourceAccount) and ARN (aws:SourceArn) through. RotateSecret is refused otherwise
("Secrets Manager cannot invoke the specified Lambda function").
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

from rotation_cli.aws import Aws, error_code, error_message, parse_arn

SERVICE_PRINCIPAL = "secretsmanager.amazonaws.com"
_INVOKE_ACTIONS = {"lambda:invokefunction", "lambda:*", "*"}


@dataclass
class FunctionCheck:
    arn: str
    exists: bool | None = None  # None: could not be checked
    runtime: str | None = None
    handler: str | None = None
    state: str | None = None
    invoke_allowed: bool | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "exists": self.exists,
            "runtime": self.runtime,
            "handler": self.handler,
            "state": self.state,
            "invoke_allowed": self.invoke_allowed,
            "problems": self.problems,
            "warnings": self.warnings,
            "notes": self.notes,
        }


def _as_list(item: Any) -> list[Any]:
    if item is None:
        return []
    return list(item) if isinstance(item, list) else [item]


def _principal_matches(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        services = [str(s).lower() for s in _as_list(principal.get("Service"))]
        aws = _as_list(principal.get("AWS"))
        return SERVICE_PRINCIPAL in services or "*" in aws
    return False


def _action_matches(action: Any) -> bool:
    return any(str(a).lower() in _INVOKE_ACTIONS for a in _as_list(action))


def _condition_holds(condition: Any, secret_arn: str) -> tuple[bool, list[str]]:
    """Evaluate the conditions on the source account and ARN; others are reported, not judged."""
    parts = parse_arn(secret_arn)
    context = {"aws:sourceaccount": parts.get("account", ""), "aws:sourcearn": secret_arn}
    notes: list[str] = []
    if not isinstance(condition, dict):
        return True, notes
    for operator, tests in condition.items():
        if not isinstance(tests, dict):
            continue
        op = str(operator).lower().removesuffix("ifexists")
        for key, expected in tests.items():
            actual = context.get(str(key).lower())
            if actual is None:
                notes.append(f"condition {operator} on {key} is not checked here")
                continue
            wanted = [str(e) for e in _as_list(expected)]
            if op in ("stringequals", "arnequals"):
                held = actual in wanted
            elif op in ("stringlike", "arnlike"):
                held = any(fnmatch.fnmatchcase(actual, pattern) for pattern in wanted)
            elif op in ("stringnotequals", "arnnotequals"):
                held = actual not in wanted
            elif op in ("stringnotlike", "arnnotlike"):
                held = not any(fnmatch.fnmatchcase(actual, pattern) for pattern in wanted)
            else:
                notes.append(f"condition {operator} on {key} is not checked here")
                continue
            if not held:
                return False, [f"condition {operator} {key} does not match this secret"]
    return True, notes


def invoke_permission(policy: dict[str, Any], secret_arn: str) -> tuple[bool, list[str]]:
    """Whether the resource policy lets Secrets Manager invoke the function for this secret."""
    allowed = False
    notes: list[str] = []
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, dict):
            continue
        if not (_principal_matches(statement.get("Principal")) and _action_matches(statement.get("Action"))):
            continue
        holds, why = _condition_holds(statement.get("Condition"), secret_arn)
        notes.extend(why)
        if not holds:
            continue
        if statement.get("Effect") == "Deny":
            return False, [*notes, f"statement {statement.get('Sid', '')} denies {SERVICE_PRINCIPAL}".strip()]
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed, notes


def add_permission_hint(function_arn: str, secret_arn: str) -> str:
    account = parse_arn(secret_arn).get("account", "ACCOUNT")
    return (
        f"aws lambda add-permission --function-name {function_arn} --statement-id SecretsManagerAccess "
        f"--action lambda:InvokeFunction --principal {SERVICE_PRINCIPAL} --source-account {account}"
    )


def check_function(aws: Aws, function_arn: str, secret_arn: str) -> FunctionCheck:
    result = FunctionCheck(function_arn)
    client = aws.lambda_
    try:
        config = client.get_function(FunctionName=function_arn)["Configuration"]
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            result.exists = False
            result.problems.append("the rotation function does not exist (lambda get_function: not found)")
        else:
            result.warnings.append(f"cannot check the function: {error_message(exc)}")
        return result
    result.exists = True
    result.runtime = config.get("Runtime")
    result.handler = config.get("Handler")
    result.state = config.get("State")
    if result.state not in (None, "Active"):
        result.warnings.append(f"the function's state is {result.state}")
    secret_region = parse_arn(secret_arn).get("region")
    function_region = parse_arn(function_arn).get("region")
    if secret_region and function_region and secret_region != function_region:
        result.problems.append(
            f"the function is in {function_region} and the secret in {secret_region}: they must share a region"
        )
    try:
        policy = json.loads(client.get_policy(FunctionName=function_arn)["Policy"])
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "ResourceNotFoundException":
            result.invoke_allowed = False
            result.problems.append(
                f"the function has no resource policy: {SERVICE_PRINCIPAL} may not invoke it. Fix: "
                + add_permission_hint(function_arn, secret_arn)
            )
        else:
            result.warnings.append(f"cannot read the function's resource policy: {error_message(exc)}")
        return result
    allowed, notes = invoke_permission(policy, secret_arn)
    result.invoke_allowed = allowed
    result.notes.extend(notes)
    if not allowed:
        result.problems.append(
            f"the function's resource policy does not let {SERVICE_PRINCIPAL} invoke it for this secret. Fix: "
            + add_permission_hint(function_arn, secret_arn)
        )
    return result
