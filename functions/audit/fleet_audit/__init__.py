"""The fleet audit: every secret of one or more accounts and Regions against a policy.

Shared by the scheduled function (functions/audit/app.py) and `bin/rotate audit`; the AWS
clients are passed in (fleet_audit.scan.Target), so tests drive it against moto. It never
calls GetSecretValue: ListSecrets and the other calls it makes return no secret value.

    from fleet_audit import Target, audit, load_file
    report = audit([Target("us-east-1", sm_client, lambda_client)], load_file("policy.toml"))
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

from fleet_audit.model import CHECKS, Finding, Severity
from fleet_audit.policy import Policy, PolicyError, from_mapping, from_text, load_file, parse_duration
from fleet_audit.report import Report
from fleet_audit.rotation_function import error_code, error_text
from fleet_audit.scan import Progress, Target, TargetResult, audit_target
from fleet_audit.throttle import Rates

__all__ = [
    "CHECKS",
    "Finding",
    "Policy",
    "PolicyError",
    "Progress",
    "Rates",
    "Report",
    "Severity",
    "Target",
    "TargetResult",
    "audit",
    "from_mapping",
    "from_text",
    "load_file",
    "parse_duration",
]


def audit(
    targets: Iterable[Target],
    policy: Policy,
    *,
    now: dt.datetime | None = None,
    rates: Rates | None = None,
    progress: Progress | None = None,
) -> Report:
    """Audit each target in turn. A target that cannot be reached or listed with an AWS error
    (access denied, a Region not enabled, a role that cannot be assumed) is reported in
    Report.errors and the others are still audited; any other error is raised."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    results: list[TargetResult] = []
    for target in targets:
        try:
            results.append(audit_target(target, policy, now=now, rates=rates, progress=progress))
        except Exception as exc:
            if error_code(exc) is None:
                raise
            failed = TargetResult(target.region, target.label)
            failed.error = error_text(exc)
            results.append(failed)
    return Report(results, policy, time.perf_counter() - started)
