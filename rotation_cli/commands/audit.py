"""`audit`: every secret of one or more Regions and accounts against a policy (fleet_audit).

Regions: --region (repeatable), --all-regions (those EC2 DescribeRegions says are enabled),
or the usual default. Accounts: the caller's, or the account of each --assume-role. One
finding per secret and check, grouped by severity, with a summary line; --json prints one
document, --sarif FILE writes SARIF 2.1.0 ('-': standard output instead of the table).
Exit code: 1 when a finding is at or above --fail-on (default high; none: never), 2 for a
user mistake or a Region or account that could not be audited, else 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from typing import Any, TextIO

from fleet_audit import CHECKS, Policy, PolicyError, Rates, Report, Severity, Target, audit, load_file, parse_duration
from fleet_audit import report as render
from rotation_cli.aws import Aws
from rotation_cli.common import EMULATOR_DATES, FAILED, OK, USAGE, Output
from rotation_cli.errors import UsageError

_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
DEFAULT_POLICY_RATE = 40.0
POLICY_QUOTA = 50.0  # GetResourcePolicy with the other policy calls, per Region, not adjustable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("what to audit")
    where.add_argument(
        "--region",
        action="append",
        default=[],
        help="a Region to audit (repeatable; default: the profile's, AWS_DEFAULT_REGION or AWS_REGION)",
    )
    where.add_argument("--all-regions", action="store_true", help="every Region enabled in the account")
    where.add_argument(
        "--assume-role",
        action="append",
        default=[],
        metavar="ROLE_ARN",
        help="audit the account of this role, assumed with your credentials (repeatable: several accounts)",
    )
    checks = parser.add_argument_group("the policy (each overrides the --policy file)")
    checks.add_argument("--policy", metavar="FILE", help="a policy file holding these options (JSON, or TOML: *.toml)")
    checks.add_argument("--max-age", metavar="DURATION", help="rotated at least this often, e.g. 90d")
    checks.add_argument("--unused-for", metavar="DURATION", help="read at least once in this time (default 90d)")
    checks.add_argument(
        "--require-cmk", action="store_const", const=True, help="a customer managed key, not aws/secretsmanager"
    )
    checks.add_argument(
        "--kms-key", action="append", metavar="KEY_ARN", help="an allowed key (repeatable; implies --require-cmk)"
    )
    checks.add_argument("--require-tags", metavar="KEYS", help="tags every secret must have, e.g. app,env,owner")
    checks.add_argument("--name-pattern", metavar="REGEX", help="a regular expression every name must match")
    checks.add_argument("--replica-regions", metavar="REGIONS", help="Regions every secret must be replicated to")
    checks.add_argument(
        "--check-replicas", action="store_const", const=True, help="replicas must be InSync (one DescribeSecret each)"
    )
    checks.add_argument(
        "--trusted-accounts", metavar="IDS", help="accounts a resource policy may let read secrets, e.g. 111122223333"
    )
    checks.add_argument("--engine-tag", metavar="KEY", help="the tag naming a secret's engine (default: engine)")
    checks.add_argument(
        "--skip", action="append", default=[], metavar="CHECKS", help="checks not to run (see --list-checks)"
    )
    result = parser.add_argument_group("the result")
    result.add_argument(
        "--fail-on",
        metavar="SEVERITY",
        help="exit 1 at a finding this severe or worse: critical, high (default), medium, low, info, none",
    )
    result.add_argument("--sarif", metavar="FILE", help="write SARIF 2.1.0 for code-scanning tools ('-': print it)")
    result.add_argument(
        "--policy-rate",
        metavar="N",
        help=f"GetResourcePolicy calls per second (default {DEFAULT_POLICY_RATE:g}; the quota is {POLICY_QUOTA:g})",
    )
    result.add_argument("--list-checks", action="store_true", help="print the checks and exit")


def _policy(args: argparse.Namespace) -> Policy:
    if args.name_pattern is not None:
        try:
            re.compile(args.name_pattern)
        except re.error as exc:
            message = f"--name-pattern: '{args.name_pattern}' is not a valid regular expression: {exc}"
            raise UsageError(message) from None
    base = load_file(args.policy) if args.policy else Policy()
    skip = {item.strip() for value in args.skip for item in value.split(",") if item.strip()}
    kms_keys = tuple(args.kms_key) if args.kms_key else None
    return base.with_overrides(
        max_age_days=parse_duration(args.max_age, "--max-age") if args.max_age else None,
        unused_days=parse_duration(args.unused_for, "--unused-for", days_only=True) if args.unused_for else None,
        require_cmk=True if (args.require_cmk or kms_keys) else None,
        kms_keys=kms_keys,
        require_tags=_names(args.require_tags),
        name_pattern=args.name_pattern,
        replica_regions=_names(args.replica_regions),
        check_replicas=args.check_replicas,
        trusted_accounts=_names(args.trusted_accounts),
        engine_tag=args.engine_tag,
        skip=frozenset(base.skip | skip) if skip else None,
        fail_on=Severity.parse(args.fail_on, "--fail-on") if args.fail_on and args.fail_on != "none" else None,
    )


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(item.strip() for item in text.split(",") if item.strip())


def known_regions() -> set[str]:
    import botocore.session

    session = botocore.session.get_session()
    return {r for p in session.get_available_partitions() for r in session.get_available_regions("secretsmanager", p)}


def _regions(args: argparse.Namespace, base: Aws) -> list[str]:
    if args.all_regions and args.region:
        raise UsageError("--all-regions and --region: choose one")
    if args.region:
        known = known_regions()
        for region in args.region:
            if not region.strip():
                raise UsageError("--region must not be empty")
            if region not in known:
                raise UsageError(f"--region: unknown Region '{region}' (Secrets Manager's: {', '.join(sorted(known))})")
        return list(dict.fromkeys(args.region))
    if args.all_regions:
        answer = base.client("ec2").describe_regions(AllRegions=False)
        return sorted(r["RegionName"] for r in answer["Regions"])
    return [str(base.session.region_name)]


def _roles(args: argparse.Namespace) -> list[str]:
    for role in args.assume_role:
        if not _ROLE.match(role):
            raise UsageError(f"--assume-role: '{role}' is not a role ARN (arn:aws:iam::111122223333:role/NAME)")
    return list(dict.fromkeys(args.assume_role))


def _rate(text: str | None) -> float:
    if text is None:
        return DEFAULT_POLICY_RATE
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--policy-rate: '{text}' is not a number") from None
    if not 0 < value <= POLICY_QUOTA:
        raise UsageError(f"--policy-rate must be more than 0 and at most the quota, {POLICY_QUOTA:g}, not {text}")
    return value


def _targets(base: Aws, regions: list[str], roles: list[str]) -> list[Target]:
    sessions: dict[str, Any] = {}

    def connect(region: str, role: str | None) -> tuple[Any, Any]:
        if role is None:
            aws = base.elsewhere(region)
        else:
            if role not in sessions:
                sessions[role] = _assume(base, role)
            aws = base.elsewhere(region, sessions[role])
        return aws.client("secretsmanager"), aws.client("lambda")

    def target(region: str, role: str | None) -> Target:
        match = _ROLE.match(role or "")
        label = f"account {match.group(1)}" if match else ""
        return Target(region, label=label, connect=lambda: connect(region, role))

    accounts: list[str | None] = list(roles) or [None]
    return [target(region, role) for role in accounts for region in regions]


def _assume(base: Aws, role: str) -> Any:
    import boto3

    credentials = base.client("sts").assume_role(RoleArn=role, RoleSessionName="secrets-audit")["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=base.session.region_name,
    )


class TerminalProgress:
    """One line on the terminal, redrawn at most five times a second; erased at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.state: dict[str, list[int]] = {}  # label -> [listed, to_read, read]
        self.drawn = 0.0
        self.width = 0

    def listed(self, label: str, secrets: int, to_read: int) -> None:
        with self.lock:
            row = self.state.setdefault(label, [0, 0, 0])
            row[0], row[1] = secrets, to_read
            self._draw(force=True)

    def read(self, label: str) -> None:
        with self.lock:
            self.state.setdefault(label, [0, 0, 0])[2] += 1
            self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn < 0.2:
            return
        self.drawn = now
        label, (listed, to_read, read) = next(reversed(self.state.items()))
        text = f"audit {label}: {listed} secrets listed, {read}/{to_read} policies and functions read"
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def list_checks(out: Output) -> int:
    out.line(f"{'CHECK':<32} {'SEVERITY':<9} {'SECURITY HUB':<17} AWS CONFIG RULE")
    for check in CHECKS.values():
        out.line(f"{check.id:<32} {check.severity.label:<9} {check.security_hub or '-':<17} {check.config_rule or '-'}")
    out.document({"command": "audit", "checks": [{**vars(c), "severity": c.severity.label} for c in CHECKS.values()]})
    return OK


def _write_sarif(path: str, report: Report, stream: TextIO) -> None:
    from rotation_cli.cli import version  # the command line's version, written once (pyproject.toml)

    text = json.dumps(render.sarif(report, version()), indent=2) + "\n"
    if path == "-":
        stream.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"--sarif: cannot write {path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace, out: Output) -> int:
    if args.list_checks:
        return list_checks(out)
    try:
        policy = _policy(args)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    fail_on = None if (args.fail_on or "").strip().lower() == "none" else policy.fail_on
    rate = _rate(args.policy_rate)
    roles = _roles(args)
    if args.sarif == "-" and args.json:
        raise UsageError("--sarif - and --json both print to standard output: choose one, or give --sarif a file")
    base = Aws.from_options(args.endpoint_url, (args.region or [None])[0], args.profile, args.emulator)
    base.retry_mode, base.max_attempts = "adaptive", 10
    regions = _regions(args, base)
    progress = TerminalProgress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        report = audit(_targets(base, regions, roles), policy, rates=Rates(get_resource_policy=rate), progress=progress)
    finally:
        if progress:
            progress.close()
    if base.emulator:
        report.notes.append(f"emulator: {EMULATOR_DATES}")
    _print(report, args, out, fail_on)
    if args.sarif:
        _write_sarif(args.sarif, report, out.stream)
    if report.errors:
        return USAGE
    return FAILED if report.exit_failed(fail_on) else OK


def _print(report: Report, args: argparse.Namespace, out: Output, fail_on: Severity | None) -> None:
    doc = render.document(report)
    doc["fail_on"] = fail_on.label if fail_on else None
    doc["ok"] = not report.errors and not report.exit_failed(fail_on)
    out.document(doc)
    if args.sarif == "-":
        return
    for line in render.table(report.findings):
        out.line(line)
    for where, error in report.errors:
        out.line(f"NOT AUDITED {where}: {error}")
    for note in report.notes:
        out.line(note)
    out.line(report.summary_line())
