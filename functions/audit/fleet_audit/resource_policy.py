"""Who outside the account a secret's resource policy lets read its value.

Only Allow statements that grant secretsmanager:GetSecretValue count (an Action pattern
covering it, such as secretsmanager:* or secretsmanager:Get*, or a NotAction that leaves it
out); BatchGetSecretValue needs GetSecretValue on each secret too (Secrets Manager API
reference). Service principals act for the account and are left out. Deny statements are
not subtracted: a finding may be narrowed by one, and says which statement to look at.

- any principal ("*", {"AWS": "*"}, or NotPrincipal) with no condition: critical;
- any principal limited only by conditions this module does not evaluate (aws:SourceVpce,
  aws:SourceIp, ...): high, naming the condition;
- another account (a principal ARN or account id, aws:PrincipalAccount or aws:PrincipalArn
  naming one, aws:PrincipalOrgID: the whole organization), unless trusted: high.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fleet_audit.model import Severity

READ_ACTION = "secretsmanager:getsecretvalue"
_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]*:(?:iam|sts)::(\d{12}):")
_ACCOUNT = re.compile(r"^\d{12}$")
_ACCOUNT_KEYS = {"aws:principalaccount"}
_ARN_KEYS = {"aws:principalarn"}
_ORG_KEYS = {"aws:principalorgid", "aws:principalorgpaths"}


@dataclass(frozen=True)
class Exposure:
    check: str  # public-policy or cross-account-policy
    severity: Severity
    statement: str  # 'statement "Sid"' or 'statement 2'
    text: str


def _list(item: Any) -> list[Any]:
    if item is None:
        return []
    return list(item) if isinstance(item, list) else [item]


def grants_read(statement: Mapping[str, Any]) -> bool:
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(READ_ACTION, str(a).lower()) for a in _list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(READ_ACTION, str(a).lower()) for a in _list(statement.get("Action")))


def account_of(principal: str) -> str | None:
    if _ACCOUNT.match(principal):
        return principal
    match = _ACCOUNT_IN_ARN.match(principal)
    return match.group(1) if match else None


def _conditions(statement: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(operator, key in lower case, values) of every condition of the statement."""
    found = []
    condition = statement.get("Condition")
    if isinstance(condition, Mapping):
        for operator, tests in condition.items():
            if isinstance(tests, Mapping):
                for key, values in tests.items():
                    found.append((str(operator), str(key).lower(), [str(v) for v in _list(values)]))
    return found


def _label(statement: Mapping[str, Any], number: int) -> str:
    sid = statement.get("Sid")
    return f'statement "{sid}"' if isinstance(sid, str) and sid else f"statement {number}"


def _accounts_in_conditions(conditions: list[tuple[str, str, list[str]]]) -> tuple[set[str], list[str]]:
    """(the accounts the account conditions let in, the organization ids they let in)."""
    accounts: set[str] = set()
    orgs: list[str] = []
    for _operator, key, values in conditions:
        if key in _ACCOUNT_KEYS:
            accounts.update(values)
        elif key in _ARN_KEYS:
            accounts.update(a for a in (account_of(v) for v in values) if a)
            accounts.update("*" for v in values if account_of(v) is None)
        elif key in _ORG_KEYS:
            orgs.extend(values)
    return accounts, orgs


def _any_principal(
    label: str, conditions: list[tuple[str, str, list[str]]], own: str, trusted: Collection[str]
) -> Exposure | None:
    if not conditions:
        return Exposure(
            "public-policy", Severity.CRITICAL, label, f"{label} lets any principal read the value, with no condition"
        )
    accounts, orgs = _accounts_in_conditions(conditions)
    if accounts or orgs:
        outside = sorted(a for a in accounts if a != own and a not in trusted)
        if orgs:
            return Exposure(
                "cross-account-policy",
                Severity.HIGH,
                label,
                f"{label} lets any principal of organization {', '.join(orgs)} read the value",
            )
        if outside:
            named = ", ".join("any account" if a == "*" else a for a in outside)
            text = f"{label} lets account {named} read the value"
            return Exposure("cross-account-policy", Severity.HIGH, label, text)
        return None
    keys = ", ".join(sorted({key for _op, key, _values in conditions}))
    return Exposure(
        "public-policy",
        Severity.HIGH,
        label,
        f"{label} lets any principal read the value, limited only by {keys} (not evaluated here)",
    )


def exposures(policy: Mapping[str, Any], own_account: str, trusted: Collection[str] = ()) -> list[Exposure]:
    """What each Allow statement granting read access exposes outside the account."""
    found: list[Exposure] = []
    for number, statement in enumerate(_list(policy.get("Statement")), 1):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow" or not grants_read(statement):
            continue
        label = _label(statement, number)
        conditions = _conditions(statement)
        if "NotPrincipal" in statement:
            found.append(
                Exposure(
                    "public-policy",
                    Severity.CRITICAL,
                    label,
                    f"{label} lets every principal but those it names (NotPrincipal) read the value",
                )
            )
            continue
        principal = statement.get("Principal")
        aws: list[str] = []
        others: list[str] = []
        if principal == "*":
            aws = ["*"]
        elif isinstance(principal, Mapping):
            aws = [str(p) for p in _list(principal.get("AWS"))]
            others = [
                f"{kind} principal {p}" for kind in ("Federated", "CanonicalUser") for p in _list(principal.get(kind))
            ]
        if "*" in aws:
            exposure = _any_principal(label, conditions, own_account, trusted)
            if exposure:
                found.append(exposure)
            continue
        outside = sorted(
            {account_of(p) or p for p in aws} - {own_account} - set(trusted), key=lambda a: (len(a) != 12, a)
        )
        if outside:
            text = f"{label} lets account {', '.join(outside)} read the value"
            found.append(Exposure("cross-account-policy", Severity.HIGH, label, text))
        elif others:
            found.append(
                Exposure("cross-account-policy", Severity.HIGH, label, f"{label} lets the {others[0]} read the value")
            )
    return found
