"""What the audit reports: severities, the checks it runs, and one finding per secret and check.

Severities follow AWS Security Hub where it has a control for the check (SecretsManager.1 to
.5, all medium except .5, low: Security Hub CSPM user guide, "Security Hub CSPM controls for
Secrets Manager"); anything that lets someone outside the account read a secret's value is
high, or critical when any principal may. The AWS Config managed rule each check stands
beside is named too, so a report can be read against the rules an account already runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str, source: str = "severity") -> Severity:
        """The severity named by text (any case); PolicyError names the choices."""
        from fleet_audit.policy import PolicyError

        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise PolicyError(f"{source}: unknown severity '{text}' (one of {choices})") from None


@dataclass(frozen=True)
class Check:
    id: str
    metric: str  # the CloudWatch metric the scheduled audit publishes (count of findings)
    title: str
    severity: Severity
    security_hub: str | None = None
    config_rule: str | None = None
    #: the calls the check needs beyond ListSecrets (it costs them only when it runs)
    needs: str = ""


def _check(*args: Any, **kwargs: Any) -> tuple[str, Check]:
    check = Check(*args, **kwargs)
    return check.id, check


CHECKS: dict[str, Check] = dict(
    [
        _check(
            "rotation-not-enabled",
            "RotationNotEnabled",
            "rotation is not enabled",
            Severity.MEDIUM,
            "SecretsManager.1",
            "secretsmanager-rotation-enabled-check",
        ),
        _check(
            "managed-by-service",
            "ManagedByService",
            "managed and rotated by another AWS service (OwningService)",
            Severity.INFO,
        ),
        _check(
            "rotation-function-missing",
            "RotationFunctionMissing",
            "rotation function missing",
            Severity.MEDIUM,
            "SecretsManager.2",
            "secretsmanager-scheduled-rotation-success-check",
            needs="lambda:GetFunctionConfiguration once per distinct function",
        ),
        _check(
            "rotation-function-not-invocable",
            "RotationFunctionNotInvocable",
            "Secrets Manager cannot invoke the rotation function",
            Severity.MEDIUM,
            "SecretsManager.2",
            "secretsmanager-scheduled-rotation-success-check",
            needs="lambda:GetPolicy once per distinct function",
        ),
        _check(
            "rotation-function-wrong-kind",
            "RotationFunctionWrongKind",
            "the rotation function does not rotate this kind of secret",
            Severity.MEDIUM,
            "SecretsManager.2",
            "secretsmanager-scheduled-rotation-success-check",
            needs="lambda:GetFunctionConfiguration once per distinct function",
        ),
        _check(
            "rotation-stuck",
            "RotationStuck",
            "unfinished rotation (AWSPENDING on a version that is not AWSCURRENT)",
            Severity.MEDIUM,
            "SecretsManager.2",
            "secretsmanager-scheduled-rotation-success-check",
        ),
        _check(
            "rotation-failed",
            "RotationFailed",
            "the scheduled rotation did not complete (NextRotationDate has passed)",
            Severity.MEDIUM,
            "SecretsManager.2",
            "secretsmanager-scheduled-rotation-success-check",
        ),
        _check(
            "rotation-overdue",
            "RotationOverdue",
            "not rotated within its schedule or the maximum age",
            Severity.MEDIUM,
            "SecretsManager.4",
            "secretsmanager-secret-periodic-rotation",
        ),
        _check(
            "schedule-exceeds-max-age",
            "ScheduleExceedsMaxAge",
            "the rotation schedule is longer than the maximum age",
            Severity.MEDIUM,
            "SecretsManager.1",
            "secretsmanager-rotation-enabled-check",
        ),
        _check(
            "unused",
            "Unused",
            "not read for longer than allowed (LastAccessedDate)",
            Severity.MEDIUM,
            "SecretsManager.3",
            "secretsmanager-secret-unused",
        ),
        _check(
            "scheduled-for-deletion",
            "ScheduledForDeletion",
            "scheduled for deletion",
            Severity.LOW,
        ),
        _check(
            "not-customer-key",
            "NotCustomerKey",
            "not encrypted with a customer managed key",
            Severity.LOW,
            None,
            "secretsmanager-using-cmk",
        ),
        _check(
            "public-policy",
            "PublicPolicy",
            "the resource policy lets any principal read the secret",
            Severity.CRITICAL,
            needs="secretsmanager:GetResourcePolicy once per secret",
        ),
        _check(
            "cross-account-policy",
            "CrossAccountPolicy",
            "the resource policy lets another account read the secret",
            Severity.HIGH,
            needs="secretsmanager:GetResourcePolicy once per secret",
        ),
        _check(
            "replication-missing",
            "ReplicationMissing",
            "not replicated to a required Region",
            Severity.LOW,
            needs="secretsmanager:DescribeSecret once per primary secret, only with a replication policy",
        ),
        _check(
            "replica-not-in-sync",
            "ReplicaNotInSync",
            "a replica's status is not InSync",
            Severity.MEDIUM,
            needs="secretsmanager:DescribeSecret once per primary secret, only with a replication policy",
        ),
        _check(
            "missing-tags",
            "MissingTags",
            "untagged, or missing required tags",
            Severity.LOW,
            "SecretsManager.5",
            "tagged-secretsmanager-secret (Security Hub's own rule)",
        ),
        _check(
            "name-pattern",
            "NamePattern",
            "the name breaks the naming rule",
            Severity.LOW,
        ),
        _check(
            "not-evaluated",
            "NotEvaluated",
            "a check could not be evaluated (access denied or an error)",
            Severity.LOW,
        ),
    ]
)

#: The checks that read the resource policy (GetResourcePolicy).
POLICY_CHECKS = frozenset({"public-policy", "cross-account-policy"})
#: The checks that read the rotation function (Lambda).
FUNCTION_CHECKS = frozenset(
    {"rotation-function-missing", "rotation-function-not-invocable", "rotation-function-wrong-kind"}
)
#: The checks that read the replicas' status (DescribeSecret).
REPLICATION_CHECKS = frozenset({"replication-missing", "replica-not-in-sync"})
#: The checks about rotating, which a secret managed by another service is exempt from.
ROTATION_CHECKS = frozenset(
    {"rotation-not-enabled", "rotation-stuck", "rotation-failed", "rotation-overdue", "schedule-exceeds-max-age"}
    | FUNCTION_CHECKS
)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    name: str
    arn: str
    region: str
    account: str
    reason: str  # one line
    fix: str  # the command or setting that fixes it

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.label,
            "secret": self.name,
            "arn": self.arn,
            "region": self.region,
            "account": self.account,
            "reason": self.reason,
            "fix": self.fix,
            "security_hub": CHECKS[self.check].security_hub,
            "config_rule": CHECKS[self.check].config_rule,
        }

    def sort_key(self) -> tuple[int, str, str, str, str]:
        return (-self.severity, self.check, self.account, self.region, self.name)
