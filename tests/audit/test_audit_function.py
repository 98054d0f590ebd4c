"""The scheduled audit function (functions/audit/app.py), invoked here as Lambda would, against
moto: its EMF metrics (one per check, and HighSeverityFindings for the alarm) on stdout, and
its summary on the notification topic, read back from an SQS queue subscribed to it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from devtools.audit_fleet import Fleet
from fleet_audit import CHECKS, PolicyError
from rotation_cli import paths

OPEN = {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}


@pytest.fixture(scope="module")
def app() -> ModuleType:
    paths.ensure_layers_on_path()
    paths.ensure_audit_on_path()
    spec = importlib.util.spec_from_file_location("audit_app", paths.AUDIT_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_app"] = module
    spec.loader.exec_module(module)
    return module


class Topic:
    def __init__(self, endpoint: str) -> None:
        self.sns = boto3.client("sns", endpoint_url=endpoint)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint)
        self.arn = self.sns.create_topic(Name="rotation-notifications")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn)

    def received(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def topic(fleet: Fleet, moto_endpoint: str) -> Topic:
    return Topic(moto_endpoint)


@pytest.fixture
def function_env(app: ModuleType, topic: Topic, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[None]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", topic.arn)
    monkeypatch.setenv("AUDIT_NOTIFY_ON", "high")
    monkeypatch.setenv("AUDIT_POLICY", json.dumps({"skip": ["rotation-not-enabled"]}))
    app._clients.clear()
    yield
    app._clients.clear()


def emf(stdout: str) -> dict[str, Any]:
    (blob,) = [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]
    return dict(blob)


@pytest.mark.usefixtures("function_env")
def test_metrics_per_check_and_a_summary_on_the_topic(
    app: ModuleType, fleet: Fleet, topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.secret("app/open", tags={"app": "a"})
    fleet.resource_policy("app/open", OPEN)
    fleet.secret("app/untagged")
    result = app.lambda_handler({}, None)
    assert result["notified"] is True
    assert result["metrics"]["PublicPolicy"] == 1
    assert result["metrics"]["MissingTags"] == 1
    assert result["metrics"]["HighSeverityFindings"] == 1
    assert result["metrics"]["SecretsAudited"] == 2
    blob = emf(capsys.readouterr().out)
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "RotationTests"
    assert directive["Dimensions"] == [["service"]]
    names = {metric["Name"] for metric in directive["Metrics"]}
    assert names == {c.metric for c in CHECKS.values()} | {
        "HighSeverityFindings",
        "SecretsAudited",
        "RegionsNotAudited",
    }
    assert blob["PublicPolicy"] == [1.0] and blob["RotationStuck"] == [0.0] and blob["HighSeverityFindings"] == [1.0]
    (message,) = topic.received()
    assert message["Subject"] == "Secrets audit us-east-1: 1 critical"
    body = message["Message"]
    assert body.startswith("audited 2 secrets in 1 Region of 1 account")
    assert "public-policy" in body and "app/open" in body and "fix: aws secretsmanager delete-resource-policy" in body
    assert "missing-tags" not in body, "only what is at or above AUDIT_NOTIFY_ON is listed"


@pytest.mark.usefixtures("function_env")
def test_no_notification_below_the_chosen_severity(
    app: ModuleType, fleet: Fleet, topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.secret("app/untagged")
    result = app.lambda_handler({}, None)
    assert result["notified"] is False
    assert topic.received() == []
    blob = emf(capsys.readouterr().out)
    assert blob["MissingTags"] == [1.0] and blob["HighSeverityFindings"] == [0.0]


@pytest.mark.usefixtures("function_env")
def test_the_notification_severity_is_a_setting(
    app: ModuleType, fleet: Fleet, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.secret("app/untagged")
    monkeypatch.setenv("AUDIT_NOTIFY_ON", "low")
    assert app.lambda_handler({}, None)["notified"] is True
    (message,) = topic.received()
    assert message["Subject"] == "Secrets audit us-east-1: 1 low" and "missing-tags" in message["Message"]


@pytest.mark.usefixtures("function_env")
def test_a_bad_policy_fails_the_invocation_with_one_line(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUDIT_POLICY", '{"max_age": "soon"}')
    with pytest.raises(PolicyError, match=r"^AUDIT_POLICY: max_age: 'soon' is not a duration"):
        app.lambda_handler({}, None)
    monkeypatch.setenv("AUDIT_POLICY", "{}")
    monkeypatch.setenv("AUDIT_NOTIFY_ON", "loud")
    with pytest.raises(PolicyError, match="AUDIT_NOTIFY_ON: unknown severity 'loud'"):
        app.lambda_handler({}, None)
    assert '"_aws"' not in capsys.readouterr().out, "nothing published"
