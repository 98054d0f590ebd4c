"""A secret's rotation state, and what is wrong with it.

Reads DescribeSecret (stages, rotation configuration and dates), ListSecretVersionIds
(created dates), GetSecretValue of each labelled version (only to learn whether it has a
value and which user it names; the value itself is dropped at once), and the rotation
function's configuration and resource policy (lambda GetFunctionConfiguration, GetPolicy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotation_cli.aws import Aws, error_code
from rotation_cli.driver import CURRENT, FAKE_FUNCTION_ARN, PENDING, PREVIOUS, username_of
from rotation_cli.function_check import FunctionCheck, check_function

PROBLEM = "problem"
WARNING = "warning"
OK = "ok"


def utc(moment: object) -> str | None:
    if not isinstance(moment, datetime):
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class VersionInfo:
    version: str
    stages: list[str]
    created: str | None = None
    has_value: bool | None = None  # None: not read (unlabelled) or not readable
    user: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "stages": self.stages,
            "created": self.created,
            "has_value": self.has_value,
            "user": self.user,
        }


@dataclass
class Finding:
    level: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "text": self.text}


@dataclass
class Status:
    name: str
    arn: str
    rotation_enabled: bool
    function_arn: str | None
    rules: dict[str, Any]
    last_rotated: str | None
    next_rotation: str | None
    last_changed: str | None
    versions: list[VersionInfo]
    function: FunctionCheck | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(f.level == PROBLEM for f in self.findings)

    def stuck(self) -> list[VersionInfo]:
        return [v for v in self.versions if PENDING in v.stages and CURRENT not in v.stages]

    def holding(self, stage: str) -> VersionInfo | None:
        return next((v for v in self.versions if stage in v.stages), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arn": self.arn,
            "rotation_enabled": self.rotation_enabled,
            "function_arn": self.function_arn,
            "rotation_rules": self.rules,
            "last_rotated": self.last_rotated,
            "next_rotation": self.next_rotation,
            "last_changed": self.last_changed,
            "versions": [v.as_dict() for v in self.versions],
            "function": self.function.as_dict() if self.function else None,
            "findings": [f.as_dict() for f in self.findings],
            "healthy": self.healthy,
        }


def _order(info: VersionInfo) -> tuple[int, str]:
    for rank, stage in enumerate((CURRENT, PENDING, PREVIOUS)):
        if stage in info.stages:
            return rank, ""
    return 3 if info.stages else 4, info.created or ""


def _versions(client: Any, secret_id: str, staged: dict[str, list[str]]) -> list[VersionInfo]:
    created: dict[str, str | None] = {}
    with contextlib.suppress(Exception):  # ListSecretVersionIds may be denied: stages are known anyway
        kwargs: dict[str, Any] = {"SecretId": secret_id, "IncludeDeprecated": True, "MaxResults": 100}
        while True:
            page = client.list_secret_version_ids(**kwargs)
            for item in page.get("Versions", []):
                created[item["VersionId"]] = utc(item.get("CreatedDate"))
                staged.setdefault(item["VersionId"], list(item.get("VersionStages") or []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    infos = [VersionInfo(v, list(s), created.get(v)) for v, s in staged.items()]
    for info in infos:
        if not info.stages:
            continue
        try:
            text = client.get_secret_value(SecretId=secret_id, VersionId=info.version).get("SecretString")
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                info.has_value = False
            continue
        info.has_value = text is not None
        info.user = username_of(text)
        del text
    infos.sort(key=_order)
    return infos


def gather(aws: Aws, secret_id: str, *, engine_hint: str | None = None, with_function: bool = True) -> Status:
    client = aws.secretsmanager
    described = client.describe_secret(SecretId=secret_id)
    staged = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    status = Status(
        name=str(described.get("Name", secret_id)),
        arn=str(described["ARN"]),
        rotation_enabled=bool(described.get("RotationEnabled", False)),
        function_arn=described.get("RotationLambdaARN") or None,
        rules=dict(described.get("RotationRules") or {}),
        last_rotated=utc(described.get("LastRotatedDate")),
        next_rotation=utc(described.get("NextRotationDate")),
        last_changed=utc(described.get("LastChangedDate")),
        versions=_versions(client, status_arn(described), staged),
    )
    if with_function and status.function_arn and status.function_arn != FAKE_FUNCTION_ARN:
        status.function = check_function(aws, status.function_arn, status.arn)
    diagnose(status, described, engine_hint)
    return status


def status_arn(described: dict[str, Any]) -> str:
    return str(described["ARN"])


def diagnose(
    status: Status,
    described: dict[str, Any],
    engine_hint: str | None = None,
    commands: Mapping[str, str] | None = None,
) -> None:
    """commands: the full "resume" and "recover" command lines to suggest (the command line
    builds them, with its endpoint and options, so that they run as printed)."""
    engine = engine_hint or "ENGINE"
    suggested = {
        "resume": f"bin/rotate rotate {status.name} --local --engine {engine}",
        "recover": f"bin/rotate recover {status.name}",
        **(commands or {}),
    }
    _diagnose_versions(status, suggested)
    _diagnose_rotation(status, described)
    if status.healthy and not any(f.level == WARNING for f in status.findings):
        status.findings.append(Finding(OK, "healthy"))


def _diagnose_versions(status: Status, commands: Mapping[str, str]) -> None:
    add = status.findings.append
    current = status.holding(CURRENT)
    if current is None:
        add(Finding(PROBLEM, "no version is labelled AWSCURRENT: applications reading the secret get nothing"))
    elif current.has_value is False:
        add(Finding(PROBLEM, f"the AWSCURRENT version {current.version} has no value"))
    for stuck in status.stuck():
        add(
            Finding(
                PROBLEM,
                f"unfinished rotation: AWSPENDING is on version {stuck.version}, which is not AWSCURRENT. "
                'Secrets Manager refuses to start another rotation ("A previous rotation isn\'t complete") '
                f"until it is finished or cleared. Resume it: {commands['resume']}  Clear it safely: "
                f"{commands['recover']}",
            )
        )
        if stuck.has_value is False:
            add(
                Finding(
                    PROBLEM,
                    f"the pending version {stuck.version} has no value: createSecret never completed for it "
                    "(the function failed in createSecret, or was never invoked)",
                )
            )
    if current is not None and PENDING in current.stages:
        add(
            Finding(
                OK, "the last rotation completed (AWSPENDING left on the AWSCURRENT version, accepted by the service)"
            )
        )


def _diagnose_rotation(status: Status, described: dict[str, Any]) -> None:
    add = status.findings.append
    if status.rotation_enabled and not status.function_arn:
        add(Finding(PROBLEM, "rotation is enabled but no rotation function is set"))
    elif not status.rotation_enabled:
        hint = f"attach a function (`attach {status.name} --function ARN --schedule EXPR`)"
        configured = "a function is configured, but the schedule is off"
        add(Finding(WARNING, f"rotation is not enabled: {configured if status.function_arn else hint}"))
    if status.function_arn == FAKE_FUNCTION_ARN:
        add(Finding(WARNING, "the function is the local driver's placeholder (an emulator cannot invoke functions)"))
    elif status.function is not None:
        status.findings.extend(Finding(PROBLEM, text) for text in status.function.problems)
        status.findings.extend(Finding(WARNING, text) for text in status.function.warnings)
        if status.function.ok and status.function.exists and status.function.invoke_allowed:
            add(Finding(OK, "the rotation function exists and Secrets Manager may invoke it"))
    if status.last_rotated is None and status.function_arn == FAKE_FUNCTION_ARN:
        add(Finding(WARNING, "no rotation date recorded: moto records one only when it finds the function"))
    elif status.last_rotated is None:
        add(Finding(WARNING, "rotation has never run on this secret"))
    next_date = described.get("NextRotationDate")
    if status.rotation_enabled and isinstance(next_date, datetime):
        aware = next_date if next_date.tzinfo else next_date.replace(tzinfo=UTC)
        if aware < datetime.now(UTC):
            add(Finding(WARNING, "the next rotation date has passed: the last scheduled rotation may have failed"))
