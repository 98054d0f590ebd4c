"""devtools/quota_gate.py: Secrets Manager's request quotas in front of moto, answering
ThrottlingException as the service does; and a rotation through it absorbing them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.quota_gate import QUOTAS, QuotaGate, QuotaGateServer
from rotation_core import Rotation, RotationFunction, StepContext
from tests.support import rotations


def test_a_quota_lets_a_second_of_its_rate_through_then_its_rate() -> None:
    gate = QuotaGate(lambda environ, start_response: [b""])
    assert [gate.admit("PutSecretValue", now=100.0) for _ in range(50)] == [True] * 50
    assert not gate.admit("UpdateSecretVersionStage", now=100.0), "one quota for both writes"
    assert gate.admit("GetSecretValue", now=100.0), "reads have a quota of their own"
    assert gate.admit("PutSecretValue", now=100.03), "1/50 s later (and a bit), one more"
    assert not gate.admit("PutSecretValue", now=100.03)
    assert gate.stats.throttled == {"UpdateSecretVersionStage": 1, "PutSecretValue": 1}
    assert gate.stats.peak("writes") == 51


def test_the_documented_rates() -> None:
    assert QUOTAS["GetSecretValue"] == QUOTAS["DescribeSecret"] == ("reads", 10_000.0)
    assert QUOTAS["PutSecretValue"] == QUOTAS["UpdateSecretVersionStage"] == ("writes", 50.0)
    assert QUOTAS["RotateSecret"] == ("rotate", 50.0)


@pytest.fixture
def gate(moto_endpoint: str) -> Iterator[QuotaGateServer]:
    server = QuotaGateServer(scale=1 / 50).start()  # writes: 1 per second
    try:
        yield server
    finally:
        server.stop()


def client(url: str) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("secretsmanager", endpoint_url=url, config=config)


def test_beyond_the_quota_botocore_reads_a_throttling_exception(sm: Any, gate: QuotaGateServer) -> None:
    arn = sm.create_secret(Name=rotations.new_token(), SecretString="{}")["ARN"]
    gated = client(gate.url)
    gated.put_secret_value(SecretId=arn, SecretString='{"n": 1}')
    with pytest.raises(ClientError) as refused:
        gated.put_secret_value(SecretId=arn, SecretString='{"n": 2}')
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert json.loads(rotations.value(sm, arn)) == {"n": 1}, "the refused request never reached moto"


class Counting(Rotation):
    name = "counting"

    def create(self, ctx: StepContext) -> str:
        return json.dumps({"n": json.loads(ctx.current())["n"] + 1})

    def set(self, ctx: StepContext) -> None:
        ctx.pending()

    def test(self, ctx: StepContext) -> None:
        ctx.pending()


def test_a_rotation_through_the_gate_absorbs_its_throttling(sm: Any, gate: QuotaGateServer) -> None:
    """PutSecretValue and UpdateSecretVersionStage share 1 request per second here: the
    second is throttled, retried after a backoff, and the rotation completes."""
    arn = sm.create_secret(Name=rotations.new_token(), SecretString='{"n": 0}')["ARN"]
    handler = RotationFunction(Counting(), client_factory=lambda _endpoint: client(gate.url))
    token = rotations.start_rotation(sm, arn)
    rotations.run_steps(handler, arn, token)
    assert json.loads(rotations.value(sm, arn)) == {"n": 1}
    assert "AWSCURRENT" in rotations.stages(sm, arn)[token]
    assert gate.gate.stats.throttled["UpdateSecretVersionStage"] >= 1
