"""Is a secret's rotation function there, may Secrets Manager invoke it, and what does it rotate?

Read once per distinct function (lambda GetFunctionConfiguration and GetPolicy), then judged
for each secret that names it; `bin/rotate status` and `attach` judge one secret with the same
code. The service invokes the function as the principal secretsmanager.amazonaws.com, so the
function's resource policy needs a statement allowing that service lambda:InvokeFunction;
its conditions, when present, must let this secret's account (aws:SourceAccount) and ARN
(aws:SourceArn) through. RotateSecret is refused otherwise ("Secrets Manager cannot invoke
the specified Lambda function"), and the function must be in the secret's Region.

What a function rotates is read from its configuration, never from a secret: this project's
functions say it in POWERTOOLS_SERVICE_NAME (<engine>-rotation), AWS's own rotation
functions in their Description ("... rotation for RDS PostgreSQL ...").
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rotation_core.errors import aws_error_code, aws_error_text

SERVICE_PRINCIPAL = "secretsmanager.amazonaws.com"
_INVOKE_ACTIONS = {"lambda:invokefunction", "lambda:*", "*"}
_SERVICE_NAME = re.compile(r"^([a-z0-9-]+)-rotation$")
#: Engine families: the values a secret's engine field (or engine tag) takes, by function kind.
FAMILIES = {
    "postgres": ("postgres", "postgresql", "aurora-postgresql"),
    "mysql": ("mysql", "mariadb", "aurora-mysql", "aurora"),
    "redshift": ("redshift", "redshift-serverless"),
    "sqlserver": ("sqlserver", "sqlserver-ee", "sqlserver-se", "sqlserver-ex", "sqlserver-web"),
    "oracle": ("oracle", "oracle-ee", "oracle-se2", "oracle-se", "oracle-se1"),
    "mongodb": ("mongo", "mongodb"),
    "documentdb": ("docdb", "documentdb"),
    "api-key": ("api-key", "api_key", "apikey"),
}
# Words of a function's Description naming what it rotates (AWS's rotation templates say
# "Conducts an AWS SecretsManager secret rotation for RDS PostgreSQL using single user
# rotation scheme"; this project's say "Rotates ... secrets of PostgreSQL users").
_DESCRIPTION_WORDS = (
    ("postgres", ("postgresql",)),
    ("mysql", ("mysql", "mariadb")),
    ("redshift", ("redshift",)),
    ("sqlserver", ("sql server", "sqlserver")),
    ("oracle", ("oracle",)),
    ("mongodb", ("mongodb",)),
    ("documentdb", ("documentdb",)),
    ("api-key", ("api key",)),
)


def family_of(engine: str | None) -> str | None:
    """The family of an engine name (mariadb -> mysql); an unknown name stands for itself."""
    if not engine:
        return None
    value = engine.strip().lower()
    for family, names in FAMILIES.items():
        if value == family or value in names:
            return family
    return value or None


def _arn_parts(arn: str) -> dict[str, str]:
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return {}
    return dict(zip(("arn", "partition", "service", "region", "account", "resource"), parts, strict=True))


error_code, error_text = aws_error_code, aws_error_text


@dataclass
class FunctionFacts:
    """What Lambda says about a function (None: could not be read)."""

    arn: str
    exists: bool | None = None
    runtime: str | None = None
    handler: str | None = None
    state: str | None = None
    state_reason: str | None = None
    engine: str | None = None  # family it rotates, when its configuration says
    policy: dict[str, Any] | None = None
    has_policy: bool | None = None  # False: no resource policy at all
    error: str | None = None  # the function could not be read
    policy_error: str | None = None  # its policy could not be read


def engine_of_configuration(config: dict[str, Any]) -> str | None:
    variables = (config.get("Environment") or {}).get("Variables") or {}
    match = _SERVICE_NAME.match(str(variables.get("POWERTOOLS_SERVICE_NAME", "")))
    if match and family_of(match.group(1)) in FAMILIES:
        return family_of(match.group(1))
    description = str(config.get("Description") or "").lower()
    named = [family for family, words in _DESCRIPTION_WORDS if any(word in description for word in words)]
    return named[0] if len(named) == 1 else None


def fetch(lambda_client: Any, function_arn: str, pace: Callable[[str], None] | None = None) -> FunctionFacts:
    """GetFunctionConfiguration, then GetPolicy if the function exists: two calls at most.
    pace(operation) is called before each (the audit's rate limits)."""
    facts = FunctionFacts(function_arn)
    pace = pace or (lambda _operation: None)
    try:
        pace("GetFunctionConfiguration")
        config = lambda_client.get_function_configuration(FunctionName=function_arn)
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        if error_code(exc) == "ResourceNotFoundException":
            facts.exists = False
        else:
            facts.error = error_text(exc)
        return facts
    facts.exists = True
    facts.runtime = config.get("Runtime")
    facts.handler = config.get("Handler")
    facts.state = config.get("State")
    facts.state_reason = config.get("StateReason")
    facts.engine = engine_of_configuration(config)
    try:
        pace("GetPolicy")
        facts.policy = json.loads(lambda_client.get_policy(FunctionName=function_arn)["Policy"])
        facts.has_policy = True
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "ResourceNotFoundException":
            facts.has_policy = False
        else:
            facts.policy_error = error_text(exc)
    return facts


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
    context = {"aws:sourceaccount": _arn_parts(secret_arn).get("account", ""), "aws:sourcearn": secret_arn}
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
    account = _arn_parts(secret_arn).get("account", "ACCOUNT")
    return (
        f"aws lambda add-permission --function-name {function_arn} --statement-id SecretsManagerAccess "
        f"--action lambda:InvokeFunction --principal {SERVICE_PRINCIPAL} --source-account {account}"
    )


@dataclass
class Assessment:
    """One secret's view of its function: problems by kind ('missing' or 'not-invocable')."""

    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, reason, fix)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    invoke_allowed: bool | None = None


def assess(facts: FunctionFacts, secret_arn: str) -> Assessment:
    result = Assessment()
    arn = facts.arn
    if facts.exists is False:
        result.problems.append(
            ("missing", "the rotation function does not exist (lambda GetFunctionConfiguration: not found)", "")
        )
        return result
    if facts.exists is None:
        result.warnings.append(f"cannot check the function: {facts.error}")
        return result
    if facts.state not in (None, "Active", "Inactive", "Pending"):
        reason = f" ({facts.state_reason})" if facts.state_reason else ""
        result.problems.append(("not-invocable", f"the function's state is {facts.state}{reason}", ""))
    elif facts.state not in (None, "Active"):
        result.warnings.append(f"the function's state is {facts.state}")
    secret_region = _arn_parts(secret_arn).get("region")
    function_region = _arn_parts(arn).get("region")
    if secret_region and function_region and secret_region != function_region:
        result.problems.append(
            (
                "not-invocable",
                f"the function is in {function_region} and the secret in {secret_region}: they must share a region",
                "",
            )
        )
    hint = add_permission_hint(arn, secret_arn)
    if facts.has_policy is False:
        result.invoke_allowed = False
        result.problems.append(
            ("not-invocable", f"the function has no resource policy: {SERVICE_PRINCIPAL} may not invoke it", hint)
        )
    elif facts.policy is None:
        result.warnings.append(f"cannot read the function's resource policy: {facts.policy_error}")
    else:
        allowed, notes = invoke_permission(facts.policy, secret_arn)
        result.invoke_allowed = allowed
        result.notes.extend(notes)
        if not allowed:
            result.problems.append(
                (
                    "not-invocable",
                    f"the function's resource policy does not let {SERVICE_PRINCIPAL} invoke it for this secret",
                    hint,
                )
            )
    return result
