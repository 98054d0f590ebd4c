"""The checks: one secret's ListSecrets entry (plus what the scan fetched for it) against the
policy, as findings. No AWS call here and never a secret's value: ListSecrets returns none.

What the API shows, and so what "failed" can mean here (docs/audit.md says more):
- an unfinished rotation: AWSPENDING on a version that is not AWSCURRENT (SecretVersionsToStages);
- a failed scheduled rotation: NextRotationDate in the past (the API reference: "If rotation is
  unsuccessful, this date may be in the past"), beyond the rotation window;
- overdue: LastRotatedDate (or CreatedDate, never rotated) older than the schedule allows, when
  the API gives no NextRotationDate, or older than the policy's maximum age.
A RotationFailed event (CloudTrail, EventBridge) is not in these APIs: the stack's
RotationEventRule sends those to the notification topic as they happen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet_audit import schedule
from fleet_audit.model import CHECKS, FUNCTION_CHECKS, POLICY_CHECKS, REPLICATION_CHECKS, Finding, Severity
from fleet_audit.policy import Policy
from fleet_audit.resource_policy import exposures
from fleet_audit.rotation_function import FunctionFacts, assess, family_of

AWS_MANAGED_KEY = "alias/aws/secretsmanager"
#: Slack on top of the schedule and its window before a rotation counts as overdue.
GRACE_DAYS = 1.0


@dataclass
class Fetched:
    """What the scan read for one secret beyond its ListSecrets entry (None: not read)."""

    resource_policy: dict[str, Any] | None = None
    policy_error: str | None = None
    function: FunctionFacts | None = None
    replication: list[dict[str, Any]] | None = None
    replication_error: str | None = None


def _when(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _day(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d")


def _days(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 86400


def _count(days: float) -> str:
    whole = int(days)
    return "1 day" if whole == 1 else f"{whole} days"


def account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def is_replica(entry: Mapping[str, Any], region: str) -> bool:
    primary = entry.get("PrimaryRegion")
    return bool(primary) and primary != region


def is_deleted(entry: Mapping[str, Any]) -> bool:
    return entry.get("DeletedDate") is not None


def _audited(entry: Mapping[str, Any], region: str) -> bool:
    return not is_deleted(entry) and not is_replica(entry, region)


def needs_resource_policy(entry: Mapping[str, Any], region: str, policy: Policy) -> bool:
    return _audited(entry, region) and any(policy.runs(check) for check in POLICY_CHECKS)


def function_to_read(entry: Mapping[str, Any], region: str, policy: Policy) -> str | None:
    """The rotation function the checks need read for this secret, if any."""
    if not _audited(entry, region) or entry.get("OwningService") or not entry.get("RotationEnabled"):
        return None
    if not any(policy.runs(check) for check in FUNCTION_CHECKS):
        return None
    arn = entry.get("RotationLambdaARN")
    return str(arn) if arn else None


def needs_replication(entry: Mapping[str, Any], region: str, policy: Policy) -> bool:
    return (
        _audited(entry, region)
        and not entry.get("OwningService")
        and policy.wants_replication
        and any(policy.runs(check) for check in REPLICATION_CHECKS)
    )


class _Findings:
    def __init__(self, entry: Mapping[str, Any], region: str, policy: Policy) -> None:
        self.name = str(entry.get("Name", ""))
        self.arn = str(entry.get("ARN", ""))
        self.region = region
        self.account = account_of(self.arn)
        self.policy = policy
        self.found: list[Finding] = []

    def add(self, check: str, reason: str, fix: str, severity: Severity | None = None) -> None:
        if self.policy.runs(check):
            self.found.append(
                Finding(
                    check,
                    severity if severity is not None else CHECKS[check].severity,
                    self.name,
                    self.arn,
                    self.region,
                    self.account,
                    reason,
                    fix,
                )
            )

    def cli(self, *words: str) -> str:
        return " ".join([*words, "--region", self.region])


def _tag_values(entry: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value", "")) for t in entry.get("Tags") or [] if isinstance(t, Mapping)}


def _rotation(out: _Findings, entry: Mapping[str, Any], fetched: Fetched, now: dt.datetime) -> None:
    enabled = bool(entry.get("RotationEnabled"))
    function = entry.get("RotationLambdaARN") or None
    rules = entry.get("RotationRules") or {}
    name = out.name
    if not enabled:
        if function:
            reason = f"rotation is off; {function} is configured but not scheduled"
        else:
            reason = "rotation is not enabled"
        out.add(
            "rotation-not-enabled",
            reason,
            out.cli(f"bin/rotate attach {name} --function {function or 'FUNCTION_ARN'} --schedule 'rate(30 days)'"),
        )
    elif not function:
        out.add(
            "rotation-function-missing",
            "rotation is enabled but no rotation function is set",
            out.cli(f"bin/rotate attach {name} --function FUNCTION_ARN --schedule 'rate(30 days)'"),
        )
    elif fetched.function is not None:
        _function(out, entry, fetched.function)
    _stuck(out, entry)
    if enabled:
        _schedule(out, entry, rules, now)
    _max_age(out, entry, rules, enabled, now)


def _function(out: _Findings, entry: Mapping[str, Any], facts: FunctionFacts) -> None:
    assessment = assess(facts, out.arn)
    attach = out.cli(f"bin/rotate attach {out.name} --function FUNCTION_ARN --schedule 'rate(30 days)'")
    for kind, reason, fix in assessment.problems:
        if kind == "missing":
            out.add("rotation-function-missing", f"{facts.arn} does not exist", fix or attach)
        else:
            deploy = f"deploy the rotation function in {out.region} and attach it: {attach}"
            out.add("rotation-function-not-invocable", reason, fix or deploy)
    if facts.exists is None:
        out.add(
            "not-evaluated",
            f"could not read the rotation function {facts.arn}: {facts.error}",
            "let the auditing role call lambda:GetFunctionConfiguration and lambda:GetPolicy",
        )
    elif facts.exists and facts.policy is None and facts.policy_error:
        out.add(
            "not-evaluated",
            f"could not read the resource policy of {facts.arn}: {facts.policy_error}",
            "let the auditing role call lambda:GetPolicy",
        )
    tag = out.policy.engine_tag
    wanted = family_of(_tag_values(entry).get(tag))
    if facts.exists and facts.engine and wanted and wanted != facts.engine:
        out.add(
            "rotation-function-wrong-kind",
            f"{facts.arn} rotates {facts.engine} secrets; the secret's {tag} tag says {wanted}",
            out.cli(
                f"bin/rotate attach {out.name} --function {wanted.upper()}_FUNCTION_ARN --schedule 'rate(30 days)'"
            ),
        )


def _stuck(out: _Findings, entry: Mapping[str, Any]) -> None:
    versions = entry.get("SecretVersionsToStages") or {}
    for version, stages in sorted(versions.items()):
        if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
            out.add(
                "rotation-stuck",
                f"AWSPENDING is on version {version}, which is not AWSCURRENT: no rotation can start until it is "
                "finished or cleared",
                f"{out.cli(f'bin/rotate status {out.name}')}, then {out.cli(f'bin/rotate recover {out.name}')}",
            )
            return


def _schedule(out: _Findings, entry: Mapping[str, Any], rules: Mapping[str, Any], now: dt.datetime) -> None:
    window = schedule.window_days(rules)
    function = str(entry.get("RotationLambdaARN") or "")
    logs = f" and the log group /aws/lambda/{function.rsplit(':', 1)[-1]}" if function else ""
    due = _when(entry.get("NextRotationDate"))
    if due is not None:
        late = _days(now - due)
        if late > window:
            out.add(
                "rotation-failed",
                f"the rotation due by {_day(due)} has not completed ({_count(late)} late)",
                f"{out.cli(f'bin/rotate status {out.name}')}{logs}",
            )
        return
    interval = schedule.interval_days(rules)
    last = _when(entry.get("LastRotatedDate")) or _when(entry.get("CreatedDate"))
    if interval is None or last is None:
        return
    age = _days(now - last)
    if age > interval + window + GRACE_DAYS:
        what = "last rotated" if entry.get("LastRotatedDate") else "never rotated; created"
        out.add(
            "rotation-overdue",
            f"{what} {_count(age)} ago; its schedule ({schedule.describe(rules)}) allows {_count(interval)}",
            f"{out.cli(f'bin/rotate rotate {out.name} --remote')}{logs and ', then check' + logs}",
        )


def _max_age(
    out: _Findings, entry: Mapping[str, Any], rules: Mapping[str, Any], enabled: bool, now: dt.datetime
) -> None:
    limit = out.policy.max_age_days
    if limit is None:
        return
    last = _when(entry.get("LastRotatedDate"))
    reference = last or _when(entry.get("CreatedDate"))
    if (
        reference is not None
        and _days(now - reference) > limit
        and not any(f.check == "rotation-overdue" for f in out.found)
    ):
        what = "last rotated" if last else "never rotated; created"
        fix = (
            out.cli(f"bin/rotate rotate {out.name} --remote")
            if enabled
            else out.cli(f"bin/rotate attach {out.name} --function FUNCTION_ARN --schedule 'rate({int(limit)} days)'")
        )
        out.add(
            "rotation-overdue",
            f"{what} {_count(_days(now - reference))} ago, over the maximum age of {_count(limit)}",
            fix,
        )
    interval = schedule.interval_days(rules)
    if enabled and interval is not None and interval > limit:
        out.add(
            "schedule-exceeds-max-age",
            f"its schedule ({schedule.describe(rules)}) allows {_count(interval)} between rotations, more than the "
            f"maximum age of {_count(limit)}",
            out.cli(
                f"bin/rotate attach {out.name} --function {entry.get('RotationLambdaARN') or 'FUNCTION_ARN'} "
                f"--schedule 'rate({int(limit)} days)' --no-rotate-now"
            ),
        )


def _unused(out: _Findings, entry: Mapping[str, Any], now: dt.datetime) -> None:
    accessed = _when(entry.get("LastAccessedDate"))
    created = _when(entry.get("CreatedDate"))
    reference = accessed or created
    if reference is None:
        return
    idle = _days(now - reference)
    if idle <= out.policy.unused_days:
        return
    allowed = _count(out.policy.unused_days)
    if accessed:
        reason = f"not read for {_count(idle)} (last accessed {_day(accessed)}); allowed {allowed}"
    else:
        reason = f"never read since it was created {_count(idle)} ago; allowed {allowed}"
    out.add(
        "unused",
        reason,
        out.cli(f"aws secretsmanager delete-secret --secret-id {out.name} --recovery-window-in-days 30")
        + " (once nothing needs it)",
    )


def _key(out: _Findings, entry: Mapping[str, Any]) -> None:
    policy = out.policy
    if not (policy.require_cmk or policy.kms_keys):
        return
    key = str(entry.get("KmsKeyId") or "")
    wanted = policy.kms_keys[0] if policy.kms_keys else "KEY_ARN"
    fix = out.cli(f"aws secretsmanager update-secret --secret-id {out.name} --kms-key-id {wanted}")
    if not key or key.endswith(AWS_MANAGED_KEY):
        out.add("not-customer-key", "encrypted with the AWS managed key aws/secretsmanager", fix)
    elif policy.kms_keys and key not in policy.kms_keys:
        out.add("not-customer-key", f"encrypted with {key}, not one of the allowed keys", fix)


def _resource_policy(out: _Findings, fetched: Fetched) -> None:
    if fetched.policy_error:
        out.add(
            "not-evaluated",
            f"could not read the resource policy: {fetched.policy_error}",
            "let the auditing role call secretsmanager:GetResourcePolicy",
        )
        return
    if fetched.resource_policy is None:
        return
    found = exposures(fetched.resource_policy, out.account, out.policy.trusted_accounts)
    for check in ("public-policy", "cross-account-policy"):
        mine = sorted((e for e in found if e.check == check), key=lambda e: -e.severity)
        if not mine:
            continue
        more = f" (and {len(mine) - 1} more statements)" if len(mine) > 1 else ""
        if check == "public-policy":
            fix = out.cli(f"aws secretsmanager delete-resource-policy --secret-id {out.name}") + (
                f", or remove {mine[0].statement} and put the policy back with --block-public-policy"
            )
        else:
            fix = (
                f"remove {mine[0].statement}: "
                + out.cli(
                    f"aws secretsmanager put-resource-policy --secret-id {out.name} --resource-policy file://policy.json"
                )
                + ", or trust the account (--trusted-accounts)"
            )
        out.add(check, mine[0].text + more, fix, severity=mine[0].severity)


def _replication(out: _Findings, fetched: Fetched) -> None:
    if fetched.replication_error:
        out.add(
            "not-evaluated",
            f"could not read the replication status: {fetched.replication_error}",
            "let the auditing role call secretsmanager:DescribeSecret",
        )
        return
    if fetched.replication is None:
        return
    present = {str(r.get("Region")): r for r in fetched.replication}
    missing = [region for region in out.policy.replica_regions if region not in present]
    if missing:
        out.add(
            "replication-missing",
            f"no replica in {', '.join(missing)}",
            out.cli(
                f"aws secretsmanager replicate-secret-to-regions --secret-id {out.name} "
                + " ".join(f"--add-replica-regions Region={region}" for region in missing)
            ),
        )
    bad = [r for r in fetched.replication if r.get("Status") != "InSync"]
    if bad:
        first = bad[0]
        message = f": {first.get('StatusMessage')}" if first.get("StatusMessage") else ""
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        out.add(
            "replica-not-in-sync",
            f"the replica in {first.get('Region')} is {first.get('Status')}{message}{more}",
            out.cli(
                f"aws secretsmanager replicate-secret-to-regions --secret-id {out.name} "
                f"--add-replica-regions Region={first.get('Region')} --force-overwrite-replica-secret"
            )
            + " (once you know what holds the name there)",
        )


def _tags(out: _Findings, entry: Mapping[str, Any]) -> None:
    keys = {key for key in _tag_values(entry) if not key.startswith("aws:")}
    required = out.policy.require_tags
    tag = out.cli(f"aws secretsmanager tag-resource --secret-id {out.name} --tags")
    if required:
        missing = [key for key in required if key not in keys]
        if missing:
            out.add(
                "missing-tags",
                f"missing required tags: {', '.join(missing)}",
                tag.replace(" --tags", " --tags " + " ".join(f"Key={key},Value=VALUE" for key in missing)),
            )
    elif not keys:
        out.add("missing-tags", "no tags", tag.replace(" --tags", " --tags Key=owner,Value=TEAM"))


def _name(out: _Findings) -> None:
    pattern = out.policy.name_pattern
    if pattern is not None and not out.policy.matches_name(out.name):
        out.add(
            "name-pattern",
            f"the name does not match {pattern}",
            "names cannot be changed: create the secret under a matching name, move its users, delete this one",
        )


def evaluate(
    entry: Mapping[str, Any], fetched: Fetched, policy: Policy, *, region: str, now: dt.datetime
) -> list[Finding]:
    """Every finding for one secret (an empty list: it passes every check that ran)."""
    out = _Findings(entry, region, policy)
    if is_deleted(entry):
        deleted = _when(entry.get("DeletedDate"))
        out.add(
            "scheduled-for-deletion",
            f"scheduled for deletion{f' ({_day(deleted)})' if deleted else ''}",
            out.cli(f"aws secretsmanager restore-secret --secret-id {out.name}") + " (if it is still needed)",
        )
        return out.found
    if is_replica(entry, region):
        _key(out, entry)  # each Region's copy has its own key; the rest is the primary's
        return out.found
    owner = entry.get("OwningService")
    if owner:
        # Its name, rotation and replication are the owning service's to decide.
        out.add(
            "managed-by-service",
            f"managed by {owner}: it rotates by that service's rules",
            f"see the {owner} settings that own it",
        )
    else:
        _rotation(out, entry, fetched, now)
    _unused(out, entry, now)
    _key(out, entry)
    _resource_policy(out, fetched)
    if not owner:
        _replication(out, fetched)
    _tags(out, entry)
    if not owner:
        _name(out)
    return out.found
