"""Drive a rotation the way Secrets Manager does, against moto's server.

RotateSecret labels a new version (VersionId = the token) AWSPENDING with no value, then
invokes the function for each step. moto prepares that state too, then fails to invoke the
function (no Docker), which we ignore before driving the steps ourselves.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from tests.support import leaks

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
FAKE_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotation-under-test"

Handler = Callable[[dict[str, Any], Any], None]


def new_token() -> str:
    return str(uuid.uuid4())


def start_rotation(client: Any, secret_id: str, token: str | None = None) -> str:
    token = token or new_token()
    # After a successful rotation the service accepts AWSPENDING left on the AWSCURRENT
    # version (RotateSecret's documented end state); moto refuses to start the next
    # rotation then ("Previous rotation request is still in progress"), so lift it first.
    for version, labels in stages(client, secret_id).items():
        if "AWSPENDING" in labels and "AWSCURRENT" in labels:
            client.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=version
            )
    with contextlib.suppress(client.exceptions.ResourceNotFoundException):
        # moto cannot invoke the function; the AWSPENDING version is prepared all the same
        client.rotate_secret(
            SecretId=secret_id,
            ClientRequestToken=token,
            RotationLambdaARN=FAKE_FUNCTION_ARN,
            RotationRules={"AutomaticallyAfterDays": 30},
        )
    return token


def event(secret_id: str, token: str, step: str, rotation_token: str | None = None) -> dict[str, Any]:
    doc = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
    if rotation_token is not None:
        doc["RotationToken"] = leaks.remember(rotation_token, "rotation token")
    return doc


def run_steps(handler: Handler, secret_id: str, token: str, steps: Iterable[str] = STEPS) -> None:
    for step in steps:
        handler(event(secret_id, token, step), None)


def rotate(handler: Handler, client: Any, secret_id: str) -> str:
    token = start_rotation(client, secret_id)
    run_steps(handler, secret_id, token)
    return token


def stages(client: Any, secret_id: str) -> dict[str, list[str]]:
    return {v: list(s) for v, s in client.describe_secret(SecretId=secret_id)["VersionIdsToStages"].items()}


def value(client: Any, secret_id: str, stage: str = "AWSCURRENT", version: str | None = None) -> str:
    kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
    if version:
        kwargs["VersionId"] = version
    return str(client.get_secret_value(**kwargs)["SecretString"])


def stuck_pending(client: Any, secret_id: str) -> list[str]:
    """Versions labelled AWSPENDING that are not AWSCURRENT (a rotation left unfinished)."""
    return [v for v, s in stages(client, secret_id).items() if "AWSPENDING" in s and "AWSCURRENT" not in s]
