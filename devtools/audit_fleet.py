"""Fleets of secrets for the fleet audit, in moto's server: what the tests need, the sample
report of docs/audit.md, and the bench's 10,000 secrets.

Everything a real account could hold is made through the API (secrets, tags, keys, resource
policies, rotation functions and their permissions, rotations left unfinished, replicas, a
replica that failed, deletions). Two things moto cannot do through its API are done on its
model, in this process (ThreadedMotoServer shares it): dates in the past (moto stamps every
date with its own clock), and LastAccessedDate, which moto never fills (ListSecrets and
DescribeSecret always return it empty); `remember_last_access` makes moto return what
`backdate(..., accessed_days=N)` sets, as the service would after a read N days ago.

    python -m devtools.audit_fleet --check docs/audit.md   # the sample in the document is current
    python -m devtools.audit_fleet --write docs/audit.md   # regenerate it (make audit-sample)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400
SAMPLE_ACCOUNT = "111122223333"
SAMPLE_REGION = "us-east-1"
SAMPLE_BEGIN = "<!-- sample report: begin (make audit-sample writes it; tests check it) -->"
SAMPLE_END = "<!-- sample report: end -->"
SAMPLE_POLICY = {
    "max_age": "90d",
    "unused_for": "90d",
    "require_cmk": True,
    "require_tags": ["app", "owner"],
    "name_pattern": "^(prod|dev)/",
    "replica_regions": ["us-west-2"],
    "trusted_accounts": ["444455556666"],
}


# -- moto's model, in this process ----------------------------------------------------------
def moto_secret(account: str, region: str, name: str) -> Any:
    from moto.secretsmanager.models import secretsmanager_backends

    return secretsmanager_backends[account][region].secrets[name]


def backdate(
    account: str,
    region: str,
    name: str,
    *,
    created_days: float | None = None,
    rotated_days: float | None = None,
    next_rotation_days: float | None = None,
    accessed_days: float | None = None,
    no_next_rotation: bool = False,
) -> None:
    """Move a secret's dates into the past (days ago; next_rotation_days: days from now, negative
    in the past; no_next_rotation: the API gives no NextRotationDate)."""
    secret = moto_secret(account, region, name)
    now = time.time()
    if no_next_rotation:
        secret.next_rotation_date = None
    if created_days is not None:
        secret.created_date = int(now - created_days * DAY)
    if rotated_days is not None:
        secret.last_rotation_date = int(now - rotated_days * DAY)
    if next_rotation_days is not None:
        secret.next_rotation_date = int(now + next_rotation_days * DAY)
    if accessed_days is not None:
        remember_last_access()
        secret.audit_last_accessed = int(now - accessed_days * DAY)


def remember_last_access() -> None:
    """Make moto's ListSecrets and DescribeSecret return LastAccessedDate from
    `audit_last_accessed` when a secret has one (once per process)."""
    from moto.secretsmanager.models import FakeSecret

    if getattr(FakeSecret.to_dict, "audit_last_accessed", False):
        return
    original = FakeSecret.to_dict

    def to_dict(self: Any) -> dict[str, Any]:
        doc: dict[str, Any] = original(self)
        accessed = getattr(self, "audit_last_accessed", None)
        if accessed is not None:
            doc["LastAccessedDate"] = accessed
        return doc

    to_dict.audit_last_accessed = True  # type: ignore[attr-defined]
    FakeSecret.to_dict = to_dict  # type: ignore[method-assign]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    return buffer.getvalue()


class Fleet:
    """Secrets and rotation functions of one account and Region of moto's server."""

    def __init__(self, endpoint: str, account: str, region: str = SAMPLE_REGION, session: Any = None) -> None:
        import boto3

        self.endpoint = endpoint
        self.account = account
        self.region = region
        self.session = session or boto3.Session(region_name=region)
        self.sm = self.session.client("secretsmanager", endpoint_url=endpoint, region_name=region)
        self.lambda_ = self.session.client("lambda", endpoint_url=endpoint, region_name=region)
        self._role: str | None = None

    def elsewhere(self, region: str) -> Fleet:
        return Fleet(self.endpoint, self.account, region, self.session)

    def secret(
        self,
        name: str,
        *,
        tags: dict[str, str] | None = None,
        kms_key: str | None = None,
        value: str = '{"username": "app", "password": "not-a-real-password"}',
    ) -> str:
        kwargs: dict[str, Any] = {"Name": name, "SecretString": value}
        if tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        if kms_key:
            kwargs["KmsKeyId"] = kms_key
        return str(self.sm.create_secret(**kwargs)["ARN"])

    def role(self) -> str:
        if self._role is None:
            iam = self.session.client("iam", endpoint_url=self.endpoint)
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
            self._role = str(
                iam.create_role(
                    RoleName=f"rotation-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust)
                )["Role"]["Arn"]
            )
        return self._role

    def function(
        self,
        name: str,
        *,
        engine: str | None = None,
        description: str = "",
        permission: bool = True,
        source_account: str | None = None,
    ) -> str:
        """A function moto holds (it runs nothing); engine: what it says it rotates (POWERTOOLS_SERVICE_NAME)."""
        kwargs: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": "python3.13",
            "Role": self.role(),
            "Handler": "app.lambda_handler",
            "Code": {"ZipFile": _zip()},
            "Description": description,
        }
        if engine:
            kwargs["Environment"] = {"Variables": {"POWERTOOLS_SERVICE_NAME": f"{engine}-rotation"}}
        arn = str(self.lambda_.create_function(**kwargs)["FunctionArn"])
        if permission:
            grant: dict[str, Any] = {
                "FunctionName": name,
                "StatementId": "SecretsManagerAccess",
                "Action": "lambda:InvokeFunction",
                "Principal": "secretsmanager.amazonaws.com",
                "SourceAccount": source_account or self.account,
            }
            self.lambda_.add_permission(**grant)
        return arn

    def rotate(self, name: str, function_arn: str, days: int = 30, *, finish: bool = True) -> str:
        """RotateSecret with the function; finish: clear the AWSPENDING label as a completed
        rotation would, else the rotation is left unfinished. moto cannot run the function
        without Docker (it says so on stderr) and records the rotation all the same."""
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.account}/{self.region}/{name}"))
        self.sm.rotate_secret(
            SecretId=name,
            RotationLambdaARN=function_arn,
            RotationRules={"AutomaticallyAfterDays": days},
            ClientRequestToken=token,
        )
        if finish:
            self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=token)
        return token

    def rotate_with_missing_function(self, name: str, days: int = 30) -> str:
        """Rotation enabled, naming a function that does not exist (moto records it, then refuses)."""
        missing = f"arn:aws:lambda:{self.region}:{self.account}:function:deleted-rotation-function"
        with contextlib.suppress(self.sm.exceptions.ResourceNotFoundException):
            self.sm.rotate_secret(
                SecretId=name, RotationLambdaARN=missing, RotationRules={"AutomaticallyAfterDays": days}
            )
        # moto labels a new version AWSPENDING before it looks the function up; the service
        # refuses first. Clear it, as the service would have left none.
        for version, stages in self.sm.describe_secret(SecretId=name)["VersionIdsToStages"].items():
            if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
                self.sm.update_secret_version_stage(
                    SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version
                )
        return missing

    def resource_policy(self, name: str, *statements: dict[str, Any]) -> None:
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        self.sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(document))

    def replicate(self, name: str, region: str, *, fail: bool = False) -> None:
        """A replica in region; fail: a secret of the same name is there already, so the replica fails."""
        if fail:
            self.elsewhere(region).secret(name, tags={"app": "other"})
        self.sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": region}])

    def delete(self, name: str) -> None:
        self.sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)

    def backdate(self, name: str, **days: float) -> None:
        backdate(self.account, self.region, name, **days)


# -- the documented sample -----------------------------------------------------------------
GOOD = {"app": "billing", "owner": "payments"}
KEY = "arn:aws:kms:us-east-1:111122223333:key/0b6a9c1e-1111-2222-3333-444455556666"


def build_sample(fleet: Fleet) -> list[str]:
    """One secret per finding the sample shows, and one that passes everything; the options to audit it with."""
    postgres = fleet.function("prod-postgres-rotation", engine="postgres")
    stranger = fleet.function("prod-unshared-rotation", engine="postgres", permission=False)

    def secret(name: str, tags: dict[str, str] | None = None, key: str | None = KEY) -> str:
        return fleet.secret(name, tags=GOOD if tags is None else tags, kms_key=key)

    secret("prod/billing/db")  # everything right
    fleet.rotate("prod/billing/db", postgres)
    fleet.replicate("prod/billing/db", "us-west-2")
    fleet.backdate("prod/billing/db", rotated_days=10, accessed_days=1)

    secret("prod/billing/legacy")  # never rotated
    fleet.replicate("prod/billing/legacy", "us-west-2")
    fleet.backdate("prod/billing/legacy", created_days=400, accessed_days=2)

    secret("prod/billing/api-key")  # a rotation left unfinished, and a failed replica
    fleet.rotate("prod/billing/api-key", postgres, finish=False)
    fleet.replicate("prod/billing/api-key", "us-west-2", fail=True)
    fleet.backdate("prod/billing/api-key", accessed_days=1)

    secret("prod/billing/reports", tags={**GOOD, "engine": "mysql"})  # a PostgreSQL function on a MySQL secret
    fleet.rotate("prod/billing/reports", postgres, days=180)
    fleet.replicate("prod/billing/reports", "us-west-2")
    fleet.backdate("prod/billing/reports", rotated_days=100, next_rotation_days=80, accessed_days=3)

    secret("prod/billing/partner")  # read by another account
    fleet.rotate("prod/billing/partner", stranger)
    fleet.replicate("prod/billing/partner", "us-west-2")
    fleet.backdate("prod/billing/partner", rotated_days=5, next_rotation_days=-5, accessed_days=1)
    fleet.resource_policy(
        "prod/billing/partner",
        {
            "Sid": "PartnerReads",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        },
        {
            "Sid": "TrustedReads",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        },
    )

    secret("dev/scratch", tags={}, key=None)  # public, untagged, aws/secretsmanager, unused
    fleet.backdate("dev/scratch", created_days=200)
    fleet.resource_policy(
        "dev/scratch",
        {"Sid": "Debugging", "Effect": "Allow", "Principal": "*", "Action": "secretsmanager:*", "Resource": "*"},
    )

    secret("billing-export")  # a function that is gone; a name outside the naming rule
    fleet.rotate_with_missing_function("billing-export")
    fleet.replicate("billing-export", "us-west-2")
    fleet.backdate("billing-export", rotated_days=20, accessed_days=1)

    secret("prod/billing/old-token")
    fleet.delete("prod/billing/old-token")

    fleet.secret("rds!db-0f1e2d3c", tags={"aws:secretsmanager:owningService": "rds", **GOOD}, kms_key=KEY)
    fleet.backdate("rds!db-0f1e2d3c", accessed_days=1)
    options: list[str] = []
    for key, value in SAMPLE_POLICY.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            options.append(flag)
        else:
            options += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return options


def sample_report(endpoint: str, account: str = SAMPLE_ACCOUNT) -> tuple[str, list[str]]:
    """The sample audit's output (what docs/audit.md shows), and the command that printed it."""
    from rotation_cli.cli import main

    saved = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = account
    try:
        options = build_sample(Fleet(endpoint, account))
        argv = ["audit", "--region", SAMPLE_REGION, *options]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv, stream=out)
    finally:
        if saved is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = saved
    if code not in (0, 1) or err.getvalue().strip():
        raise RuntimeError(f"the sample audit failed (exit {code}): {err.getvalue().strip()}")
    command = "bin/rotate " + " ".join(f"'{a}'" if re.search(r"[^\w./,:-]", a) else a for a in argv)
    return out.getvalue(), [command, f"(exit code {code})"]


def sample_block(output: str, command: list[str]) -> str:
    return "\n".join(
        [SAMPLE_BEGIN, "```console", f"$ {command[0]}", output.rstrip("\n"), command[1], "```", SAMPLE_END]
    )


_CHANGING = (
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "YYYY-MM-DD"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "VERSION-ID"),
    (re.compile(r"\b\d{12}\b"), "ACCOUNT"),
)


def comparable(text: str) -> str:
    """The sample without what changes from run to run: dates, version ids, account ids."""
    for pattern, replacement in _CHANGING:
        text = pattern.sub(replacement, text)
    return text


def document_block(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start, end = text.find(SAMPLE_BEGIN), text.find(SAMPLE_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no sample block ({SAMPLE_BEGIN} ... {SAMPLE_END})")
    return text[start : end + len(SAMPLE_END)]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free port of this machine, with throwaway credentials."""
    import logging

    from devtools import moto_service

    os.environ.update(
        AWS_ACCESS_KEY_ID="audit-sample",
        AWS_SECRET_ACCESS_KEY="audit-sample",  # noqa: S106 - throwaway: moto accepts any value
        AWS_DEFAULT_REGION=SAMPLE_REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    os.environ.pop("AWS_PROFILE", None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_service.local_server() as endpoint:
        os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
        yield endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The sample audit report of docs/audit.md.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DOC", help="rewrite the sample in the document")
    mode.add_argument("--check", metavar="DOC", help="exit 1 if the document's sample is not what the audit prints")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "layers" / "rotation_core"), str(ROOT / "functions" / "audit"), str(ROOT)]
    path = Path(args.write or args.check)
    with moto_server() as endpoint:
        block = sample_block(*sample_report(endpoint))
    current = document_block(path)
    if args.check:
        if comparable(current) != comparable(block):
            print(f"{path}: the sample report is stale: run `make audit-sample`", file=sys.stderr)
            return 1
        print(f"{path}: the sample report is current")
        return 0
    path.write_text(path.read_text(encoding="utf-8").replace(current, block), encoding="utf-8")
    print(f"wrote the sample report into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
