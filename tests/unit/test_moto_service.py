"""moto's PutSecretValue against the service's documented rule (devtools/moto_service.py):
a version that has a value is never modified. Pins moto's own behaviour too, so that the
day moto follows the documentation the patch can go."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.secretsmanager.models import SecretsManagerBackend

from tests.support import rotations


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def pending_secret(aws: Any) -> tuple[str, str]:
    arn = str(aws.create_secret(Name=rotations.new_token(), SecretString=json.dumps({"n": 0}))["ARN"])
    return arn, rotations.start_rotation(aws, arn)


def put(aws: Any, arn: str, token: str, text: str) -> Any:
    return aws.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString=text, VersionStages=["AWSPENDING"])


def test_the_placeholder_takes_its_first_value_the_same_value_again_changes_nothing(aws: Any) -> None:
    arn, token = pending_secret(aws)
    put(aws, arn, token, "first")
    before = rotations.stages(aws, arn)
    answer = put(aws, arn, token, "first")
    assert answer["VersionId"] == token
    assert rotations.stages(aws, arn) == before
    assert rotations.value(aws, arn, "AWSPENDING", token) == "first"


def test_another_value_for_a_version_that_has_one_is_refused(aws: Any) -> None:
    arn, token = pending_secret(aws)
    put(aws, arn, token, "first")
    with pytest.raises(aws.exceptions.ResourceExistsException):
        put(aws, arn, token, "second")
    assert rotations.value(aws, arn, "AWSPENDING", token) == "first"


def test_moto_itself_overwrites_a_pending_version(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the patch exists: unpatched, moto 5.2 replaces an AWSPENDING version's value."""
    original = getattr(SecretsManagerBackend.put_secret_value, "moto_original", None)
    assert original is not None, "tests/conftest.py applies devtools/moto_service.py"
    monkeypatch.setattr(SecretsManagerBackend, "put_secret_value", original)
    arn, token = pending_secret(aws)
    put(aws, arn, token, "first")
    put(aws, arn, token, "second")
    assert rotations.value(aws, arn, "AWSPENDING", token) == "second"
