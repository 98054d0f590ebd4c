"""Every check against moto: for each, secrets made to fail it and secrets made to pass it,
audited by `bin/rotate audit` (in this process, its JSON document). The expected findings are
the whole set: a check that fires where it should not fails the test as surely as one that
stays silent."""

from __future__ import annotations

from typing import Any

from devtools.audit_fleet import Fleet
from tests.audit.conftest import KEY, OTHER_KEY, findings
from tests.cli.conftest import run_cli

TAGS = {"app": "billing", "owner": "payments"}
POLICY = [
    "--max-age", "90d",
    "--unused-for", "60d",
    "--kms-key", KEY,
    "--require-tags", "app,owner",
    "--name-pattern", "^t/",
    "--replica-regions", "us-west-2",
    "--trusted-accounts", "444455556666",
]  # fmt: skip


def read(principal: Any, action: str = "secretsmanager:GetSecretValue", **condition: Any) -> dict[str, Any]:
    statement = {"Sid": "Reader", "Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*"}
    if condition:
        statement["Condition"] = condition
    return statement


class Maker:
    """Secrets that pass every check of POLICY unless told otherwise."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.postgres = fleet.function("t-postgres", engine="postgres")

    def __call__(
        self,
        name: str,
        *,
        tags: dict[str, str] | None = None,
        key: str | None = KEY,
        function: str | None = "postgres",
        days: int = 30,
        finish: bool = True,
        replicate: bool = True,
        accessed_days: float | None = 1,
        **dates: Any,
    ) -> str:
        fleet = self.fleet
        arn = fleet.secret(name, tags=TAGS if tags is None else tags, kms_key=key)
        if function == "postgres":
            fleet.rotate(name, self.postgres, days, finish=finish)
        elif function:
            fleet.rotate(name, function, days, finish=finish)
        if replicate:
            fleet.replicate(name, "us-west-2")
        rotated = {"rotated_days": 10} if function else {}
        fleet.backdate(name, **{**rotated, "accessed_days": accessed_days, **dates})
        return arn


def test_every_check_fails_where_it_should_and_passes_elsewhere(fleet: Fleet) -> None:
    make = Maker(fleet)
    own_role = f"arn:aws:iam::{fleet.account}:role/app"
    make("t/good", tags={**TAGS, "engine": "postgres"})
    make("t/not-enabled", function=None)
    fleet.secret("t/managed", tags={"aws:secretsmanager:owningService": "rds", **TAGS}, kms_key=KEY)
    fleet.backdate("t/managed", accessed_days=1)
    make("t/fn-missing", function=None)
    fleet.rotate_with_missing_function("t/fn-missing")
    make("t/fn-no-permission", function=fleet.function("t-closed", engine="postgres", permission=False))
    make("t/fn-other-account", function=fleet.function("t-other", engine="postgres", source_account="999999999999"))
    make("t/fn-wrong-kind", tags={**TAGS, "engine": "mysql"})
    make("t/fn-same-family", tags={**TAGS, "engine": "mariadb"}, function=fleet.function("t-mysql", engine="mysql"))
    make("t/stuck", finish=False)
    make("t/failed", next_rotation_days=-3)
    make("t/late-within-window", next_rotation_days=-0.5)
    make("t/schedule-overdue", no_next_rotation=True, rotated_days=40)
    make("t/schedule-kept", no_next_rotation=True, rotated_days=25)
    make("t/too-old", rotated_days=100)
    make("t/long-schedule", days=180)
    make("t/unused", accessed_days=70)
    make("t/never-read", accessed_days=None, created_days=70)
    make("t/read-lately", accessed_days=50, created_days=400)
    make("t/deleted", key=None, tags={}, replicate=False)
    fleet.delete("t/deleted")
    make("t/aws-key", key=None)
    make("t/other-key", key=OTHER_KEY)
    for name, statement in {
        "t/public": read("*"),
        "t/public-vpce": read({"AWS": "*"}, StringEquals={"aws:SourceVpce": "vpce-0123456789abcdef0"}),
        "t/org": read("*", "secretsmanager:Get*", StringEquals={"aws:PrincipalOrgID": "o-a1b2c3d4e5"}),
        "t/cross": read({"AWS": "arn:aws:iam::999988887777:root"}, "secretsmanager:*"),
        "t/own-account-only": read("*", StringEquals={"aws:PrincipalAccount": fleet.account}),
        "t/trusted": read({"AWS": "444455556666"}),
        "t/own": read({"AWS": own_role}),
        "t/describe-only": read("*", "secretsmanager:DescribeSecret"),
    }.items():
        make(name)
        fleet.resource_policy(name, statement)
    make("t/no-replica", replicate=False)
    make("t/replica-failed", replicate=False)
    fleet.replicate("t/replica-failed", "us-west-2", fail=True)
    make("t/missing-tag", tags={"app": "billing"})
    make("Bad-name")

    result = run_cli("audit", *POLICY, "--json")

    assert result.code == 1, result  # critical and high findings: --fail-on high by default
    assert result.doc is not None
    assert findings(result.doc) == {
        ("t/not-enabled", "rotation-not-enabled"),
        ("t/managed", "managed-by-service"),
        ("t/fn-missing", "rotation-function-missing"),
        ("t/fn-no-permission", "rotation-function-not-invocable"),
        ("t/fn-other-account", "rotation-function-not-invocable"),
        ("t/fn-wrong-kind", "rotation-function-wrong-kind"),
        ("t/stuck", "rotation-stuck"),
        ("t/failed", "rotation-failed"),
        ("t/schedule-overdue", "rotation-overdue"),
        ("t/too-old", "rotation-overdue"),
        ("t/long-schedule", "schedule-exceeds-max-age"),
        ("t/unused", "unused"),
        ("t/never-read", "unused"),
        ("t/deleted", "scheduled-for-deletion"),
        ("t/aws-key", "not-customer-key"),
        ("t/other-key", "not-customer-key"),
        ("t/public", "public-policy"),
        ("t/public-vpce", "public-policy"),
        ("t/org", "cross-account-policy"),
        ("t/cross", "cross-account-policy"),
        ("t/no-replica", "replication-missing"),
        ("t/replica-failed", "replica-not-in-sync"),
        ("t/missing-tag", "missing-tags"),
        ("Bad-name", "name-pattern"),
    }
    by_key = {(f["secret"], f["check"]): f for f in result.doc["findings"]}
    assert by_key["t/public", "public-policy"]["severity"] == "critical"
    assert by_key["t/public-vpce", "public-policy"]["severity"] == "high"
    assert "aws:sourcevpce" in by_key["t/public-vpce", "public-policy"]["reason"]
    assert by_key["t/cross", "cross-account-policy"]["reason"] == (
        'statement "Reader" lets account 999988887777 read the value'
    )
    assert "o-a1b2c3d4e5" in by_key["t/org", "cross-account-policy"]["reason"]
    assert "mysql" in by_key["t/fn-wrong-kind", "rotation-function-wrong-kind"]["reason"]
    assert "add-permission" in by_key["t/fn-no-permission", "rotation-function-not-invocable"]["fix"]
    assert "does not let" in by_key["t/fn-other-account", "rotation-function-not-invocable"]["reason"]
    assert "maximum age of 90 days" in by_key["t/too-old", "rotation-overdue"]["reason"]
    assert "schedule (every 30 days)" in by_key["t/schedule-overdue", "rotation-overdue"]["reason"]
    assert "bin/rotate recover t/stuck" in by_key["t/stuck", "rotation-stuck"]["fix"]
    assert by_key["t/missing-tag", "missing-tags"]["reason"] == "missing required tags: owner"
    assert by_key["t/managed", "managed-by-service"]["severity"] == "info"
    # Security Hub's severities where it has a control; nothing it rates is above medium.
    for finding in result.doc["findings"]:
        if finding["security_hub"]:
            assert finding["severity"] in ("medium", "low"), finding
    summary = result.doc["summary"]
    assert summary["managed_by_service"] == 1 and summary["scheduled_for_deletion"] == 1
    assert "secretsmanager:GetSecretValue" not in summary["api_calls"], "the audit never reads a value"


def test_untagged_is_a_finding_without_a_tag_policy_as_in_security_hub(fleet: Fleet) -> None:
    fleet.secret("plain")
    fleet.secret("tagged", tags={"team": "a"})
    fleet.secret("system-tags-only", tags={"aws:cloudformation:stack-name": "x"})
    result = run_cli("audit", "--json", "--skip", "rotation-not-enabled")
    assert result.code == 0, result
    assert findings(result.doc) == {("plain", "missing-tags"), ("system-tags-only", "missing-tags")}
    # and a check that is skipped reports nothing
    assert not any(f["check"] == "rotation-not-enabled" for f in result.doc["findings"])  # type: ignore[index]
