"""`bin/rotate audit` as a user meets it: the table, exit codes, mistakes, SARIF, Regions and
accounts, policy files, the calls it makes, and its progress line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from devtools.audit_fleet import Fleet
from rotation_cli.commands.audit import TerminalProgress
from tests.audit.conftest import KEY, findings, new_account
from tests.cli.conftest import run_cli

OPEN = {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
PARTNER = {
    "Sid": "Partner",
    "Effect": "Allow",
    "Principal": {"AWS": "999988887777"},
    "Action": "secretsmanager:GetSecretValue",
    "Resource": "*",
}


def small_fleet(fleet: Fleet) -> None:
    """One critical, one high, medium (rotation off) and low (untagged) findings."""
    fleet.secret("app/open", tags={"app": "a"})
    fleet.resource_policy("app/open", OPEN)
    fleet.secret("app/partner", tags={"app": "a"})
    fleet.resource_policy("app/partner", PARTNER)
    fleet.secret("app/untagged")


def test_the_table_is_grouped_by_severity_and_ends_with_a_summary(fleet: Fleet) -> None:
    small_fleet(fleet)
    result = run_cli("audit")
    assert result.code == 1, result
    lines = result.out.splitlines()
    headers = [line for line in lines if line and not line.startswith(" ")]
    assert headers[:4] == ["CRITICAL (1)", "HIGH (1)", "MEDIUM (3)", "LOW (1)"], result.out
    critical = lines.index("CRITICAL (1)")
    assert lines[critical + 1].split() == ["CHECK", "SECRET", "REASON"]
    assert lines[critical + 2].split()[:2] == ["public-policy", "app/open"]
    assert 'statement "Open" lets any principal read the value' in lines[critical + 2]
    assert lines[critical + 3].startswith("    fix: aws secretsmanager delete-resource-policy --secret-id app/open")
    assert lines[-1].startswith(
        "audited 3 secrets in 1 Region of 1 account: 1 critical, 1 high, 3 medium, 1 low, 0 info"
    )
    assert "4 API calls (3 GetResourcePolicy, 1 ListSecrets)" in lines[-1]
    assert any(line.startswith("emulator: ") for line in lines)


def test_a_clean_fleet_says_so_and_exits_0(fleet: Fleet) -> None:
    fleet.secret("app/kept", tags={"app": "a"})
    result = run_cli("audit", "--skip", "rotation-not-enabled")
    assert result.code == 0, result
    assert result.out.splitlines()[0] == "no findings"
    assert "(1 without findings)" in result.out


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [("critical", 1), ("high", 1), ("CRITICAL", 1), ("none", 0)],
)
def test_fail_on_chooses_the_severity_that_fails_a_pipeline(fleet: Fleet, fail_on: str, code: int) -> None:
    fleet.secret("app/open", tags={"app": "a"})
    fleet.resource_policy("app/open", OPEN)
    assert run_cli("audit", "--fail-on", fail_on).code == code


def test_fail_on_critical_passes_high_findings(fleet: Fleet) -> None:
    fleet.secret("app/partner", tags={"app": "a"})
    fleet.resource_policy("app/partner", PARTNER)
    assert run_cli("audit", "--fail-on", "critical").code == 0
    assert run_cli("audit", "--fail-on", "high").code == 1
    assert run_cli("audit").code == 1, "high by default"
    low_only = run_cli("audit", "--fail-on", "medium", "--skip", "cross-account-policy,rotation-not-enabled")
    assert low_only.code == 0, low_only


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fail-on", "severe"], "--fail-on: unknown severity 'severe' (one of info, low, medium, high, critical)"),
        (["--max-age", "90"], "--max-age: '90' is not a duration; write it with a unit: 90d (days), 12h (hours)"),
        (["--max-age", "0d"], "--max-age: '0d' must be more than zero"),
        (["--unused-for", "12h"], "--unused-for: '12h': give whole days"),
        (["--name-pattern", "prod/(["], "--name-pattern: 'prod/([' is not a valid regular expression"),
        (["--policy", "/nonexistent/policy.toml"], "cannot read the policy file /nonexistent/policy.toml"),
        (["--region", "us-nowhere-1"], "--region: unknown Region 'us-nowhere-1'"),
        (["--region", "us-east-1", "--all-regions"], "--all-regions and --region: choose one"),
        (["--assume-role", "audit-role"], "--assume-role: 'audit-role' is not a role ARN"),
        (["--skip", "rotation"], "skip: unknown check 'rotation'"),
        (["--trusted-accounts", "12345"], "trusted_accounts: '12345' is not a 12-digit account id"),
        (["--replica-regions", "west"], "replica_regions: 'west' is not a Region name"),
        (["--kms-key", "alias/mine"], "kms_keys: 'alias/mine' is not a KMS key ARN"),
        (["--policy-rate", "80"], "--policy-rate must be more than 0 and at most the quota, 50, not 80"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(account: str, argv: list[str], message: str) -> None:
    result = run_cli("audit", *argv)
    assert result.code == 2, result
    assert result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert message in result.err, result.err


def test_a_mistake_with_json_is_one_document(account: str) -> None:
    result = run_cli("audit", "--sarif", "-", "--json")
    assert result.code == 2
    assert result.doc == {
        "ok": False,
        "error": "--sarif - and --json both print to standard output: choose one, or give --sarif a file",
    }


def test_policy_file_mistakes_are_one_line(account: str, tmp_path: Path) -> None:
    cases = {
        "bad.json": ("{not json", "not valid JSON"),
        "list.json": ("[1, 2]", "expected an object of options"),
        "unknown.toml": ('max_age = "90d"\ncolour = "red"\n', "unknown option 'colour'"),
        "type.toml": ("require_tags = 3\n", "require_tags: expected a list of names"),
        "severity.toml": ('fail_on = "urgent"\n', "unknown severity 'urgent'"),
        "broken.toml": ("max_age = \n", "not valid TOML"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        result = run_cli("audit", "--policy", str(path))
        assert result.code == 2, (name, result)
        assert result.err.count("\n") == 1 and message in result.err and str(path) in result.err, (name, result.err)


def test_a_policy_file_holds_the_options_in_json_or_toml_and_the_command_line_overrides_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.secret("prod/kept", tags={"app": "a", "owner": "b"}, kms_key=KEY)
    fleet.secret("scratch", tags={"app": "a"})
    toml = tmp_path / "policy.toml"
    toml.write_text(
        'require_tags = ["app", "owner"]\nrequire_cmk = true\nname_pattern = "^prod/"\n'
        'skip = ["rotation-not-enabled"]\nfail_on = "low"\n',
        encoding="utf-8",
    )
    as_json = tmp_path / "policy.json"
    as_json.write_text(
        json.dumps(
            {
                "require_tags": "app,owner",
                "require_cmk": True,
                "name_pattern": "^prod/",
                "skip": ["rotation-not-enabled"],
                "fail_on": "low",
            }
        ),
        encoding="utf-8",
    )
    expected = {("scratch", "missing-tags"), ("scratch", "not-customer-key"), ("scratch", "name-pattern")}
    for path in (toml, as_json):
        result = run_cli("audit", "--policy", str(path), "--json")
        assert result.code == 1, result  # fail_on low, from the file
        assert findings(result.doc) == expected, path
        assert result.doc is not None and result.doc["policy"]["require_tags"] == ["app", "owner"]
    overridden = run_cli("audit", "--policy", str(toml), "--require-tags", "app", "--fail-on", "high", "--json")
    assert overridden.code == 0, overridden
    assert findings(overridden.doc) == expected - {("scratch", "missing-tags")}


def test_sarif_for_code_scanning(fleet: Fleet, tmp_path: Path) -> None:
    small_fleet(fleet)
    path = tmp_path / "audit.sarif"
    result = run_cli("audit", "--sarif", str(path), "--json")
    assert result.code == 1
    assert result.doc is not None
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "rotate audit"
    assert {rule["id"] for rule in rules} >= {"public-policy", "cross-account-policy", "missing-tags"}
    results = run["results"]
    assert len(results) == len(result.doc["findings"])
    open_result = next(r for r in results if r["ruleId"] == "public-policy")
    assert open_result["level"] == "error"
    assert open_result["properties"]["security-severity"] == "9.5"
    assert rules[open_result["ruleIndex"]]["id"] == "public-policy"
    location = open_result["locations"][0]
    assert (
        location["physicalLocation"]["artifactLocation"]["uri"] == f"secretsmanager/{fleet.account}/us-east-1/app/open"
    )
    assert location["logicalLocations"][0]["fullyQualifiedName"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert next(r for r in results if r["ruleId"] == "missing-tags")["level"] == "note"
    fingerprints = [r["partialFingerprints"]["secretCheck/v1"] for r in results]
    assert len(set(fingerprints)) == len(fingerprints)
    again = tmp_path / "again.sarif"
    run_cli("audit", "--sarif", str(again))
    assert [r["partialFingerprints"] for r in json.loads(again.read_text())["runs"][0]["results"]] == [
        r["partialFingerprints"] for r in results
    ], "the same finding keeps its fingerprint from run to run"
    assert run["invocations"][0]["executionSuccessful"] is True
    printed = run_cli("audit", "--sarif", "-")
    assert json.loads(printed.out)["runs"][0]["results"] == results


def test_calls_near_one_per_secret_and_one_read_per_distinct_function(fleet: Fleet) -> None:
    functions = [fleet.function(f"fn-{n}", engine="postgres") for n in range(3)]
    for n in range(150):
        fleet.secret(f"app/{n:03d}", tags={"app": "a"})
        if n % 10 == 0:
            fleet.rotate(f"app/{n:03d}", functions[n % 3])
    result = run_cli("audit", "--json")
    assert result.doc is not None
    summary = result.doc["summary"]
    assert summary["secrets"] == 150
    assert summary["api_calls"] == {
        "lambda:GetFunctionConfiguration": 3,
        "lambda:GetPolicy": 3,
        "secretsmanager:GetResourcePolicy": 150,
        "secretsmanager:ListSecrets": 2,
    }
    assert summary["calls_per_secret"] == round(158 / 150, 3)
    skipped = run_cli("audit", "--json", "--skip", "public-policy,cross-account-policy")
    assert skipped.doc is not None
    assert "secretsmanager:GetResourcePolicy" not in skipped.doc["summary"]["api_calls"]
    replicas = run_cli("audit", "--json", "--check-replicas")
    assert replicas.doc is not None and replicas.doc["summary"]["api_calls"]["secretsmanager:DescribeSecret"] == 150


def test_several_regions_and_all_regions(fleet: Fleet) -> None:
    fleet.secret("app/east", tags={"app": "a"})
    west = fleet.elsewhere("eu-west-1")
    west.secret("app/west", tags={"app": "a"})
    fleet.secret("app/replicated", tags={"app": "a"})
    fleet.replicate("app/replicated", "eu-west-1")
    result = run_cli("audit", "--region", "us-east-1", "--region", "eu-west-1", "--json")
    assert result.doc is not None
    assert {(f["secret"], f["region"]) for f in result.doc["findings"]} == {
        ("app/east", "us-east-1"),
        ("app/replicated", "us-east-1"),
        ("app/west", "eu-west-1"),
    }, "a replica is audited with its primary"
    assert result.doc["summary"]["replicas"] == 1
    assert result.doc["summary"]["regions"] == ["eu-west-1", "us-east-1"]
    human = run_cli("audit", "--region", "us-east-1", "--region", "eu-west-1")
    assert "REGION" in human.out.splitlines()[1]
    everywhere = run_cli("audit", "--all-regions", "--json")
    assert everywhere.doc is not None
    assert len(everywhere.doc["summary"]["regions"]) > 20
    assert findings(everywhere.doc) == findings(result.doc)


def test_several_accounts_through_a_role_in_each(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    accounts = [new_account(), new_account()]
    roles = [f"arn:aws:iam::{account}:role/secrets-audit" for account in accounts]
    sts = boto3.client("sts", endpoint_url=moto_endpoint)
    for account, role in zip(accounts, roles, strict=True):
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name="us-east-1",
        )
        Fleet(moto_endpoint, account, session=session).secret(f"app/{account}", tags={"app": "a"})
    args = [arg for role in roles for arg in ("--assume-role", role)]
    result = run_cli("audit", *args, "--json")
    assert result.doc is not None
    assert {(f["secret"], f["account"]) for f in result.doc["findings"]} == {(f"app/{a}", a) for a in accounts}
    assert result.doc["summary"]["accounts"] == sorted(accounts)
    human = run_cli("audit", *args)
    assert human.out.splitlines()[1].split()[:3] == ["CHECK", "SECRET", "ACCOUNT"]
    assert "of 2 accounts" in human.out


def test_progress_is_drawn_only_on_a_terminal(fleet: Fleet) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = TerminalProgress(screen)
    progress.listed("us-east-1", 100, 40)
    for _ in range(40):
        progress.read("us-east-1")
    progress.close()
    drawn = screen.getvalue()
    assert "\raudit us-east-1: 100 secrets listed, 0/40 policies and functions read" in drawn
    assert drawn.endswith("\r"), "the line is erased at the end"
    fleet.secret("app/one", tags={"app": "a"})
    result = run_cli("audit")  # stderr is not a terminal here
    assert "\r" not in result.err and "\r" not in result.out


def test_never_reads_a_value(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the checks: no GetSecretValue (nor BatchGetSecretValue) reaches the service."""
    from moto.secretsmanager.models import SecretsManagerBackend

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the audit read a secret value")

    monkeypatch.setattr(SecretsManagerBackend, "get_secret_value", refuse)
    monkeypatch.setattr(SecretsManagerBackend, "batch_get_secret_value", refuse)
    small_fleet(fleet)
    fleet.rotate("app/open", fleet.function("fn", engine="postgres"))
    result = run_cli("audit", "--check-replicas", "--max-age", "1d", "--require-cmk", "--json")
    assert result.code == 1 and result.doc is not None and result.doc["findings"]


def test_the_repeatable_region_of_audit_leaves_the_other_commands_alone() -> None:
    """audit takes --region from a parent of its own: argparse's "resolve" edits the action
    it replaces, which the other commands' parsers share."""
    from rotation_cli.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["status", "app/x", "--region", "eu-west-1"]).region == "eu-west-1"
    assert parser.parse_args(["audit", "--region", "eu-west-1", "--region", "us-east-1"]).region == [
        "eu-west-1",
        "us-east-1",
    ]
    assert parser.parse_args(["audit"]).region == []
