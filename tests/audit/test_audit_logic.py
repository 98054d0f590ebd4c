"""The audit's parts on their own: resource policies, schedules, the rate limiter, throttling
retried by botocore's adaptive mode, errors that leave a check not evaluated, a Region that
cannot be listed."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.audit_fleet import Fleet
from fleet_audit import Policy, Severity, Target, audit, from_mapping
from fleet_audit.model import CHECKS
from fleet_audit.policy import PolicyError, parse_duration
from fleet_audit.resource_policy import exposures
from fleet_audit.scan import _Scan, audit_target
from fleet_audit.schedule import interval_days, window_days
from fleet_audit.throttle import RateLimiter, Rates
from tests.cli.conftest import run_cli

OWN = "111122223333"


def allow(principal: Any, action: Any = "secretsmanager:GetSecretValue", **extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": action, **extra}],
    }


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (allow("*"), [("public-policy", Severity.CRITICAL)]),
        (allow({"AWS": ["*"]}, "*"), [("public-policy", Severity.CRITICAL)]),
        (allow("*", "secretsmanager:Get*"), [("public-policy", Severity.CRITICAL)]),
        (allow("*", None, NotAction="secretsmanager:PutSecretValue"), [("public-policy", Severity.CRITICAL)]),
        (allow("*", None, NotAction="secretsmanager:*"), []),
        (allow("*", "secretsmanager:DescribeSecret"), []),
        ({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "*"}]}, []),
        (
            {"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": OWN}, "Action": "*"}]},
            [("public-policy", Severity.CRITICAL)],
        ),
        (allow("*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), [("public-policy", Severity.HIGH)]),
        (allow("*", Condition={"StringEquals": {"aws:PrincipalAccount": OWN}}), []),
        (
            allow("*", Condition={"StringEquals": {"aws:PrincipalAccount": [OWN, "999988887777"]}}),
            [("cross-account-policy", Severity.HIGH)],
        ),
        (allow("*", Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{OWN}:role/*"}}), []),
        (
            allow("*", Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"}}),
            [("cross-account-policy", Severity.HIGH)],
        ),
        (
            allow("*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}),
            [("cross-account-policy", Severity.HIGH)],
        ),
        (allow({"AWS": f"arn:aws:iam::{OWN}:role/app"}), []),
        (allow({"AWS": OWN}), []),
        (allow({"AWS": "999988887777"}), [("cross-account-policy", Severity.HIGH)]),
        (allow({"AWS": "arn:aws:sts::999988887777:assumed-role/x/y"}), [("cross-account-policy", Severity.HIGH)]),
        (allow({"AWS": "444455556666"}), []),  # trusted below
        (allow({"Federated": "cognito-identity.amazonaws.com"}), [("cross-account-policy", Severity.HIGH)]),
        (allow({"Service": "lambda.amazonaws.com"}), []),
    ],
)
def test_what_a_resource_policy_exposes(policy: dict[str, Any], expected: list[tuple[str, Severity]]) -> None:
    found = exposures(policy, OWN, trusted=("444455556666",))
    assert [(e.check, e.severity) for e in found] == expected
    for exposure in found:
        assert exposure.text.startswith("statement 1 lets "), exposure.text


def test_the_reason_names_the_statement_by_its_sid() -> None:
    mine = {"Sid": "Mine", "Effect": "Allow", "Principal": {"AWS": OWN}, "Action": "*"}
    theirs = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": "999988887777"}, "Action": "*"}
    policy = {"Statement": [mine, theirs]}
    (exposure,) = exposures(policy, OWN)
    assert exposure.text == 'statement "Theirs" lets account 999988887777 read the value'


@pytest.mark.parametrize(
    ("rules", "days"),
    [
        ({"AutomaticallyAfterDays": 7}, 7),
        ({"ScheduleExpression": "rate(30 days)"}, 30),
        ({"ScheduleExpression": "rate(4 hours)"}, 4 / 24),
        ({"ScheduleExpression": "cron(0 4 ? * SUN *)"}, 7),
        ({"ScheduleExpression": "cron(0 4/12 * * ? *)"}, 0.5),
        ({"ScheduleExpression": "cron(0 0 1 * ? *)"}, 31),
        ({"ScheduleExpression": "cron(0 0 L * ? *)"}, 31),
        ({"ScheduleExpression": "cron(0 0 ? * 2#1 *)"}, 35),  # the first Monday of each month
        ({"ScheduleExpression": "cron(0 0 1 1,7 ? *)"}, 184),
        ({"ScheduleExpression": "cron(0 0 15W * ? *)"}, 32),  # nearest weekday: Fri 14th to Mon 16th
        ({}, None),
        ({"ScheduleExpression": "cron(nonsense)"}, None),
    ],
)
def test_the_longest_gap_a_schedule_allows(rules: dict[str, Any], days: float | None) -> None:
    found = interval_days(rules)
    assert found == days if days is None else math.isclose(found or 0, days), (rules, found)


def test_the_rotation_window() -> None:
    assert window_days({"AutomaticallyAfterDays": 30, "Duration": "3h"}) == 3 / 24
    assert window_days({"ScheduleExpression": "rate(4 hours)"}) == 1 / 24
    assert window_days({"AutomaticallyAfterDays": 30}) == 1


def test_policy_durations_and_mapping() -> None:
    assert parse_duration("90d", "x") == 90
    assert parse_duration("2w", "x") == 14
    assert parse_duration("12h", "x") == 0.5
    policy = from_mapping({"max-age": "30d", "require_tags": "a, b", "fail_on": "Critical"}, "test")
    assert (policy.max_age_days, policy.require_tags, policy.fail_on) == (30, ("a", "b"), Severity.CRITICAL)
    with pytest.raises(PolicyError, match="test: require_cmk: expected true or false"):
        from_mapping({"require_cmk": "yes"}, "test")


def test_the_rate_limiter_lets_a_burst_through_then_spaces_calls() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rate=10, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        limiter.acquire()
    assert [round(s, 6) for s in slept] == [0.1, 0.1, 0.1]
    assert math.isclose(now[0], 100.3)
    unlimited = RateLimiter(rate=math.inf, clock=lambda: 0.0, sleep=sleep)
    for _ in range(1000):
        unlimited.acquire()
    assert len(slept) == 3


def _clients(endpoint: str, attempts: int = 5) -> tuple[Any, Any]:
    config = Config(retries={"mode": "adaptive", "max_attempts": attempts})
    return (
        boto3.client("secretsmanager", endpoint_url=endpoint, config=config),
        boto3.client("lambda", endpoint_url=endpoint, config=config),
    )


def _error(code: str, status: int, message: str = "injected") -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse("https://injected", status, {"x-amzn-errortype": code}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self.body


def test_throttling_is_retried_adaptively_and_counted(fleet: Fleet, moto_endpoint: str) -> None:
    fleet.secret("app/open", tags={"app": "a"})
    fleet.resource_policy(
        "app/open", {"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    )
    sm, lambda_client = _clients(moto_endpoint)
    throttled = [2]

    def throttle(event_name: str, **_: Any) -> AWSResponse | None:
        if event_name.endswith("GetResourcePolicy") and throttled[0]:
            throttled[0] -= 1
            return _error("ThrottlingException", 400, "Rate exceeded")
        return None

    sm.meta.events.register("before-send.secrets-manager.GetResourcePolicy", throttle)
    result = audit_target(Target("us-east-1", sm, lambda_client), Policy(skip=frozenset({"rotation-not-enabled"})))
    assert [f.check for f in result.findings] == ["public-policy"], "found after two throttled attempts"
    assert result.calls["secretsmanager:GetResourcePolicy"] == 1
    assert result.attempts["secretsmanager:GetResourcePolicy"] == 3


def test_a_check_that_cannot_read_what_it_needs_says_so(fleet: Fleet, moto_endpoint: str) -> None:
    fleet.secret("app/one", tags={"app": "a"})
    fleet.rotate("app/one", fleet.function("fn", engine="postgres"))
    sm, lambda_client = _clients(moto_endpoint, attempts=1)

    def deny(**_: Any) -> AWSResponse:
        return _error("AccessDeniedException", 400, "not authorized to perform this action")

    sm.meta.events.register("before-send.secrets-manager.GetResourcePolicy", deny)
    lambda_client.meta.events.register("before-send.lambda.GetFunctionConfiguration", deny)
    result = audit_target(Target("us-east-1", sm, lambda_client), Policy())
    reasons = sorted(f.reason for f in result.findings if f.check == "not-evaluated")
    assert len(reasons) == 2, result.findings
    assert reasons[0].startswith("could not read the resource policy: AccessDeniedException")
    assert reasons[1].startswith("could not read the rotation function arn:aws:lambda:")
    assert CHECKS["not-evaluated"].severity == Severity.LOW


def test_a_region_that_cannot_be_listed_is_reported_and_the_others_audited(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.secret("app/east", tags={"app": "a"})
    original = _Scan.list_all

    def list_all(self: _Scan) -> None:
        if self.region == "eu-west-1":
            raise ClientError(
                {"Error": {"Code": "UnrecognizedClientException", "Message": "invalid token"}}, "ListSecrets"
            )
        original(self)

    monkeypatch.setattr(_Scan, "list_all", list_all)
    result = run_cli("audit", "--region", "eu-west-1", "--region", "us-east-1", "--fail-on", "none")
    assert result.code == 2, result
    assert "NOT AUDITED eu-west-1: UnrecognizedClientException: invalid token" in result.out
    assert "app/east" in result.out
    report = audit(
        [Target("eu-west-1", *_clients(fleet.endpoint)), Target("us-east-1", *_clients(fleet.endpoint))],
        Policy(),
        now=dt.datetime.now(dt.UTC),
        rates=Rates.unlimited(),
    )
    assert report.errors == [("eu-west-1", "UnrecognizedClientException: invalid token")]
    assert report.secrets == 1
