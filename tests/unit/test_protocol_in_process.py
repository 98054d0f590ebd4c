"""The protocol alone, with moto in process (no server, no database): what the layer does
with Secrets Manager for any Rotation, step by step. The contract suites drive the same
protocol against real databases through moto's HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rotation_core import EventError, Rotation, RotationFunction, StepContext
from tests.support import rotations


class Recording(Rotation):
    """A rotation whose "target" is a counter: the protocol's calls are what is under test."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def create(self, ctx: StepContext) -> str:
        self.calls.append("create")
        doc = json.loads(ctx.current())
        return json.dumps({**doc, "generation": doc["generation"] + 1, "attempt": len(self.calls)})

    def set(self, ctx: StepContext) -> None:
        self.calls.append("set")

    def test(self, ctx: StepContext) -> None:
        self.calls.append("test")

    def finished(self, ctx: StepContext, previous_version: str | None) -> None:
        self.calls.append(f"finished:{previous_version}")

    def already_finished(self, ctx: StepContext) -> None:
        self.calls.append("already_finished")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def rotation() -> Recording:
    return Recording()


@pytest.fixture
def handler(aws: Any, rotation: Recording) -> RotationFunction:
    return RotationFunction(rotation, client_factory=lambda endpoint: aws)


def new_secret(aws: Any) -> str:
    return str(aws.create_secret(Name=rotations.new_token(), SecretString=json.dumps({"generation": 0}))["ARN"])


def test_a_full_rotation_calls_each_hook_once_and_moves_the_stage(aws: Any, handler: Any, rotation: Recording) -> None:
    arn = new_secret(aws)
    first = next(v for v, s in rotations.stages(aws, arn).items() if "AWSCURRENT" in s)
    token = rotations.start_rotation(aws, arn)
    rotations.run_steps(handler, arn, token)
    assert rotation.calls == ["create", "set", "test", f"finished:{first}"]
    stages = rotations.stages(aws, arn)
    assert "AWSCURRENT" in stages[token]
    assert stages[first] == ["AWSPREVIOUS"]
    assert json.loads(rotations.value(aws, arn)) == {"generation": 1, "attempt": 1}


def test_create_keeps_the_first_pending_value_and_finish_is_idempotent(
    aws: Any, handler: Any, rotation: Recording
) -> None:
    """createSecret again builds another value, which PutSecretValue refuses (the version has
    one already: ResourceExistsException): the first value stays, without a read first."""
    arn = new_secret(aws)
    token = rotations.start_rotation(aws, arn)
    rotations.run_steps(handler, arn, token, ("createSecret", "createSecret"))
    assert rotation.calls == ["create", "create"]
    assert json.loads(rotations.value(aws, arn, "AWSPENDING", token))["attempt"] == 1, "the first value is kept"
    rotations.run_steps(handler, arn, token, ("setSecret", "testSecret", "finishSecret", "finishSecret"))
    assert rotation.calls[-1] == "already_finished", "finishSecret again: only the after-move work"
    assert json.loads(rotations.value(aws, arn)) == {"generation": 1, "attempt": 1}


def test_calls_per_step(aws: Any, handler: Any) -> None:
    """DescribeSecret guards the steps that write, to Secrets Manager (createSecret,
    finishSecret) or to the target (setSecret); testSecret reads the token's AWSPENDING
    version only."""
    arn = new_secret(aws)
    token = rotations.start_rotation(aws, arn)
    calls: list[str] = []
    aws.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.append(model.name))
    counts = {}
    for step in rotations.STEPS:
        calls.clear()
        handler(rotations.event(arn, token, step), None)
        counts[step] = list(calls)
    assert counts["createSecret"] == ["DescribeSecret", "GetSecretValue", "PutSecretValue"]
    assert counts["setSecret"] == ["DescribeSecret", "GetSecretValue"]  # this rotation reads nothing itself
    assert counts["testSecret"] == ["GetSecretValue"]
    assert counts["finishSecret"] == ["DescribeSecret", "UpdateSecretVersionStage"]


@pytest.mark.parametrize("step", rotations.STEPS)
def test_refusals_change_nothing(aws: Any, handler: Any, rotation: Recording, step: str) -> None:
    """createSecret, setSecret and finishSecret (they write) refuse a secret whose rotation
    is not enabled; every step refuses a token of no version of this secret, and
    one whose version is no longer AWSPENDING (testSecret learns it from the
    token's read, then DescribeSecret says which)."""
    arn = new_secret(aws)
    token = rotations.new_token()
    aws.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="{}", VersionStages=["AWSPENDING"])
    current = next(v for v, s in rotations.stages(aws, arn).items() if "AWSCURRENT" in s)
    if step != "testSecret":
        with pytest.raises(EventError, match="rotation is not enabled"):
            handler(rotations.event(arn, token, step), None)
    pending = rotations.start_rotation(aws, arn)
    with pytest.raises(EventError, match="not a version of this secret"):
        handler(rotations.event(arn, rotations.new_token(), step), None)
    with pytest.raises(EventError, match="not staged AWSPENDING"):
        handler(rotations.event(arn, token, step), None)
    assert rotation.calls == [], "no hook ran"
    stages = rotations.stages(aws, arn)
    assert "AWSCURRENT" in stages[current], "AWSCURRENT did not move"
    assert "AWSCURRENT" not in stages[pending]


def test_set_before_create_is_a_clear_error(aws: Any, rotation: Recording) -> None:
    class Reading(Recording):
        def set(self, ctx: StepContext) -> None:
            ctx.pending()

    handler = RotationFunction(Reading(), client_factory=lambda endpoint: aws)
    arn = new_secret(aws)
    token = rotations.start_rotation(aws, arn)
    with pytest.raises(EventError, match="createSecret has not run"):
        handler(rotations.event(arn, token, "setSecret"), None)
