"""The layer caps the AWS SDK's loggers at WARNING, whatever level the function logs at:
at DEBUG botocore logs every request and response body, secrets included."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rotation_core import observability
from tests.support.functions import ROOT

SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


@pytest.fixture
def sdk_levels() -> Iterator[None]:
    """Put back the levels the tests change."""
    names = [*SDK_LOGGERS, "botocore.parsers", "urllib3.connectionpool"]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_the_sdk_loggers_are_capped_whatever_the_root_level(sdk_levels: None) -> None:
    assert observability.LIBRARY_LOGGERS == SDK_LOGGERS
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.DEBUG)  # AWS_LAMBDA_LOG_LEVEL=DEBUG, logging.basicConfig(level=DEBUG)
    try:
        for name in (*SDK_LOGGERS, "botocore.endpoint", "botocore.parsers", "botocore.auth", "botocore.hooks"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    finally:
        root.setLevel(saved)


def test_a_lower_level_set_on_an_sdk_logger_or_its_child_is_raised_and_a_higher_kept(sdk_levels: None) -> None:
    logging.getLogger("botocore").setLevel(logging.DEBUG)  # what boto3.set_stream_logger() does
    logging.getLogger("botocore.parsers").setLevel(logging.DEBUG)  # a child with a level of its own
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    observability.cap_library_loggers()
    assert logging.getLogger("botocore").level == logging.WARNING
    assert logging.getLogger("botocore.parsers").level == logging.WARNING
    assert logging.getLogger("urllib3").level == logging.ERROR


# Lambda's runtime (awslambdaric bootstrap) adds its handler to the root logger and sets the
# root's level from AWS_LAMBDA_LOG_LEVEL, then imports the handler module. Later, code may
# set logging up again. Then the function's Secrets Manager client reads and writes a secret.
FUNCTION = """
import json, logging, os, sys
root = logging.getLogger()
root.addHandler(logging.StreamHandler(sys.stderr))
root.setLevel(os.environ["AWS_LAMBDA_LOG_LEVEL"])
if sys.argv[1] == "with-layer":
    sys.path.insert(0, sys.argv[2])
    import rotation_core  # the handler module's import of the layer
    assert "boto3" not in sys.modules, "the layer's import stays cheap"
logging.basicConfig(level=logging.DEBUG, force=True)
import boto3
from moto import mock_aws
with mock_aws():
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="app", SecretString="{}")["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": os.environ["PASSWORD"]}))
    sm.get_secret_value(SecretId=arn)
logging.getLogger("check").debug("DEBUG records of other loggers still pass")
"""


def _function(mode: str, password: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    env.update(AWS_LAMBDA_LOG_LEVEL="DEBUG", POWERTOOLS_LOG_LEVEL="DEBUG", PASSWORD=password)  # moto in process
    done = subprocess.run(
        [sys.executable, "-c", FUNCTION, mode, str(ROOT / "layers" / "rotation_core")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_a_function_at_debug_logs_no_request_or_response_body() -> None:
    password = "unit-" + secrets.token_urlsafe(24)  # not registered: the control logs it on purpose
    control = _function("without-layer", password)
    assert "Making request for OperationModel(name=PutSecretValue)" in control
    assert password in control, "this botocore logs secret bodies at DEBUG"
    logged = _function("with-layer", password)
    assert "DEBUG records of other loggers still pass" in logged
    assert "Making request for" not in logged
    assert "Response body" not in logged
    assert password not in logged
