"""Is a rotation function there, and may Secrets Manager invoke it?

The judgement is the fleet audit's (functions/audit/fleet_audit/rotation_function.py: the
same reading of the function and of its resource policy for one secret here as for every
secret there); this module turns it into the status and attach commands' view, with the
command that fixes each problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet_audit.rotation_function import (
    SERVICE_PRINCIPAL,
    add_permission_hint,
    assess,
    fetch,
    invoke_permission,
)
from rotation_cli.aws import Aws

__all__ = ["SERVICE_PRINCIPAL", "FunctionCheck", "add_permission_hint", "check_function", "invoke_permission"]


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


def check_function(aws: Aws, function_arn: str, secret_arn: str) -> FunctionCheck:
    facts = fetch(aws.lambda_, function_arn)
    judged = assess(facts, secret_arn)
    result = FunctionCheck(
        function_arn,
        exists=facts.exists,
        runtime=facts.runtime,
        handler=facts.handler,
        state=facts.state,
        invoke_allowed=judged.invoke_allowed,
        warnings=judged.warnings,
        notes=judged.notes,
    )
    result.problems = [f"{reason}. Fix: {fix}" if fix else reason for _kind, reason, fix in judged.problems]
    return result
