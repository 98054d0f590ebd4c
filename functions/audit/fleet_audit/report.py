"""The audit's result, and how it is shown: a table grouped by severity with a summary line,
one JSON document, SARIF 2.1.0 for code-scanning tools, and the scheduled function's e-mail.

SARIF: one rule per check (security-severity as GitHub code scanning reads it: critical 9.5,
high 8.0, medium 5.5, low 3.0), one result per finding, located by a path that names the
secret (secretsmanager/<account>/<region>/<name>, no file of the repository) and by its ARN
as a logical location, with a fingerprint per secret and check so that alerts stay one alert
across runs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fleet_audit.model import CHECKS, Finding, Severity
from fleet_audit.policy import Policy
from fleet_audit.scan import TargetResult

TOOL = "rotate audit"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0"}
SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
MAX_NOTIFIED = 50  # findings listed in a notification (an SNS message holds 256 KB)


@dataclass
class Report:
    results: list[TargetResult]
    policy: Policy
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return sorted((f for r in self.results for f in r.findings), key=Finding.sort_key)

    @property
    def secrets(self) -> int:
        return sum(r.secrets for r in self.results)

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(r.where, r.error) for r in self.results if r.error]

    @property
    def calls(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for result in self.results:
            total.update(result.calls)
        return total

    @property
    def retries(self) -> int:
        attempts = sum(sum(r.attempts.values()) for r in self.results)
        return max(0, attempts - sum(self.calls.values()))

    def counts(self) -> dict[Severity, int]:
        counted = Counter(f.severity for f in self.findings)
        return {severity: counted.get(severity, 0) for severity in sorted(Severity, reverse=True)}

    def at_or_above(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity >= severity]

    def by_check(self) -> dict[str, int]:
        counted = Counter(f.check for f in self.findings)
        return {check: counted.get(check, 0) for check in CHECKS}

    @property
    def clean(self) -> int:
        """Secrets without any finding."""
        flagged = {(f.account, f.region, f.arn) for f in self.findings}
        return self.secrets - len(flagged)

    def accounts(self) -> set[str]:
        """The accounts audited. A Region without secrets names no account (it is read from the
        secrets' ARNs): it belongs to the account of its target's other Regions, or stands for
        its target (the role assumed, or the default credentials) when none has a secret."""
        by_target: dict[str, set[str]] = {}
        for result in self.results:
            if not result.error:
                known = by_target.setdefault(result.label, set())
                if result.account:
                    known.add(result.account)
        return {account for label, known in by_target.items() for account in (known or {label or "?"})}

    def summary(self) -> dict[str, Any]:
        accounts = sorted(self.accounts())
        calls = self.calls
        return {
            "secrets": self.secrets,
            "regions": sorted({r.region for r in self.results}),
            "accounts": accounts,
            "managed_by_service": sum(r.managed for r in self.results),
            "replicas": sum(r.replicas for r in self.results),
            "scheduled_for_deletion": sum(r.deleted for r in self.results),
            "without_findings": self.clean,
            "findings": {severity.label: count for severity, count in self.counts().items()},
            "by_check": self.by_check(),
            "api_calls": dict(sorted(calls.items())),
            "api_calls_total": sum(calls.values()),
            "calls_per_secret": round(sum(calls.values()) / self.secrets, 3) if self.secrets else None,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "errors": [{"where": where, "error": error} for where, error in self.errors],
        }

    def summary_line(self) -> str:
        counts = ", ".join(f"{count} {severity.label}" for severity, count in self.counts().items())
        regions = {r.region for r in self.results}
        accounts = self.accounts()
        extras = [
            f"{n} {what}"
            for n, what in (
                (self.clean, "without findings"),
                (sum(r.managed for r in self.results), "managed by another service"),
                (sum(r.replicas for r in self.results), "replicas"),
                (sum(r.deleted for r in self.results), "scheduled for deletion"),
            )
            if n
        ]
        calls = self.calls
        detail = ", ".join(f"{n} {op.split(':', 1)[1]}" for op, n in sorted(calls.items()))
        retried = f", {self.retries} retried" if self.retries else ""
        where = f"{len(regions)} Region{'s' if len(regions) != 1 else ''} of {len(accounts)} account" + (
            "s" if len(accounts) != 1 else ""
        )
        line = f"audited {self.secrets} secret{'s' if self.secrets != 1 else ''} in {where}"
        line += f" ({', '.join(extras)})" if extras else ""
        line += f": {counts}; {sum(calls.values())} API calls ({detail}{retried})"
        return line

    def exit_failed(self, fail_on: Severity | None) -> bool:
        return fail_on is not None and bool(self.at_or_above(fail_on))


def table(findings: list[Finding]) -> list[str]:
    """Findings grouped by severity, most severe first; each row's fix on the line below."""
    if not findings:
        return ["no findings"]
    accounts = len({f.account for f in findings}) > 1
    regions = len({f.region for f in findings}) > 1
    rows = [
        ([f.check, f.name, *([f.account] if accounts else []), *([f.region] if regions else []), f.reason], f)
        for f in findings
    ]
    header = ["CHECK", "SECRET", *(["ACCOUNT"] if accounts else []), *(["REGION"] if regions else []), "REASON"]
    widths = [max(len(header[i]), *(len(cells[i]) for cells, _ in rows)) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        return "  " + "  ".join([*padded, cells[-1]])

    out: list[str] = []
    for severity in sorted(Severity, reverse=True):
        group = [(cells, f) for cells, f in rows if f.severity == severity]
        if not group:
            continue
        out.append(f"{severity.name} ({len(group)})")
        out.append(line(header))
        for cells, finding in group:
            out.append(line(cells))
            out.append(f"    fix: {finding.fix}")
    return out


def document(report: Report) -> dict[str, Any]:
    return {
        "command": "audit",
        "summary": report.summary(),
        "findings": [f.as_dict() for f in report.findings],
        "policy": report.policy.as_dict(),
        "targets": [
            {
                "region": r.region,
                "account": r.account,
                "label": r.label or None,
                "secrets": r.secrets,
                "error": r.error,
                "seconds": round(r.seconds, 3),
                "api_calls": dict(sorted(r.calls.items())),
            }
            for r in report.results
        ],
        "notes": report.notes,
    }


def _fingerprint(finding: Finding) -> str:
    return hashlib.sha256(f"{finding.arn}|{finding.check}".encode()).hexdigest()


def sarif(report: Report, version: str = "0") -> dict[str, Any]:
    rule_ids = list(CHECKS)
    rules = []
    for check in CHECKS.values():
        related = " / ".join(x for x in (check.security_hub, check.config_rule) if x)
        properties: dict[str, Any] = {"tags": ["security", "aws", "secrets-manager"], "precision": "high"}
        if check.severity in SECURITY_SEVERITY:
            properties["security-severity"] = SECURITY_SEVERITY[check.severity]
        rules.append(
            {
                "id": check.id,
                "name": check.metric,
                "shortDescription": {"text": check.title},
                "fullDescription": {"text": check.title + (f" (like {related})" if related else "")},
                "help": {"text": f"See docs/audit.md, check {check.id}."},
                "defaultConfiguration": {"level": SARIF_LEVEL[check.severity]},
                "properties": properties,
            }
        )
    results = []
    for finding in report.findings:
        path = "/".join(quote(part, safe="") for part in ("secretsmanager", finding.account, finding.region)) + (
            "/" + quote(finding.name, safe="/")
        )
        result: dict[str, Any] = {
            "ruleId": finding.check,
            "ruleIndex": rule_ids.index(finding.check),
            "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.name}: {finding.reason}. Fix: {finding.fix}"},
            "locations": [
                {
                    "physicalLocation": {"artifactLocation": {"uri": path}},
                    "logicalLocations": [{"fullyQualifiedName": finding.arn, "kind": "resource"}],
                }
            ],
            "partialFingerprints": {"secretCheck/v1": _fingerprint(finding)},
            "properties": {"severity": finding.severity.label, "region": finding.region, "account": finding.account},
        }
        if finding.severity in SECURITY_SEVERITY:
            result["properties"]["security-severity"] = SECURITY_SEVERITY[finding.severity]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL, "version": version, "rules": rules}},
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": f"{where}: {error}"}}
                            for where, error in report.errors
                        ],
                    }
                ],
            }
        ],
    }


def notification(report: Report, severity: Severity) -> tuple[str, str] | None:
    """(subject, message) of the summary to send, or None: nothing at or above severity and
    every Region audited."""
    chosen = report.at_or_above(severity)
    if not chosen and not report.errors:
        return None
    regions = ", ".join(sorted({r.region for r in report.results}))
    counts = Counter(f.severity for f in chosen)
    worst = ", ".join(f"{counts[s]} {s.label}" for s in sorted(counts, reverse=True))
    subject = f"Secrets audit {regions}: {worst or 'incomplete'}"[:100]
    lines = [report.summary_line(), ""]
    lines += [f"NOT AUDITED {where}: {error}" for where, error in report.errors]
    lines += table(chosen[:MAX_NOTIFIED]) if chosen else []
    if len(chosen) > MAX_NOTIFIED:
        lines.append(f"... and {len(chosen) - MAX_NOTIFIED} more: run `bin/rotate audit` for all of them")
    return subject, "\n".join(lines) + "\n"
