"""moto's Secrets Manager, made to do what the service documents where a rotation relies on it.

PutSecretValue with a ClientRequestToken (Secrets Manager API reference, PutSecretValue,
ClientRequestToken): "If a version with this value already exists and the version's
SecretString and SecretBinary values are the same as those in the request, then the request
is ignored. [...] If [they] are different from those in the request, then the request fails
because you can't modify a secret version" (ResourceExistsException, one of the errors the
operation declares). createSecret relies on it: it stores the next credential without first
reading whether the token's version has one (rotation_core.protocol).

moto 5.2 differs: a version labelled AWSPENDING is overwritten whatever it holds (its
_check_with_existing_secrets_and_versions lets any AWSPENDING version through), so a
second createSecret would replace a password the database may already have learnt. apply()
makes moto's PutSecretValue follow the documented rule for a version that has a value; the
placeholder RotateSecret creates (AWSPENDING, no value) still takes its first value, as the
service's does. tests/unit/test_moto_service.py pins both moto's behaviour and this one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

_APPLIED = "_rotation_tests_documented"


def apply() -> None:
    """Idempotent; affects every moto backend of this process (in-process mocks and the
    threaded server alike)."""
    from moto.secretsmanager.exceptions import ResourceExistsException
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.put_secret_value
    if getattr(original, _APPLIED, False):
        return

    def put_secret_value(  # noqa: PLR0917 - moto's own signature
        self: SecretsManagerBackend,
        secret_id: str,
        secret_string: str,
        secret_binary: str,
        client_request_token: str,
        version_stages: list[str],
    ) -> str:
        if client_request_token and self._is_valid_identifier(secret_id):
            secret: Any = self.secrets[secret_id]
            version = secret.versions.get(client_request_token)
            if version is not None and ("secret_string" in version or "secret_binary" in version):
                if version.get("secret_string") != secret_string or version.get("secret_binary") != secret_binary:
                    raise ResourceExistsException(
                        f"You can't use ClientRequestToken {client_request_token} because that value is already "
                        f"in use for a version of secret {secret.arn}."
                    )
                # the same value: the request is ignored (nothing moves, no label changes)
                return json.dumps(
                    {
                        "ARN": secret.arn,
                        "Name": secret.name,
                        "VersionId": client_request_token,
                        "VersionStages": list(version["version_stages"]),
                    }
                )
        return original(self, secret_id, secret_string, secret_binary, client_request_token, version_stages)

    setattr(put_secret_value, _APPLIED, True)
    put_secret_value.moto_original = original  # type: ignore[attr-defined]
    SecretsManagerBackend.put_secret_value = put_secret_value  # type: ignore[method-assign]


def local_environment(log_level: str) -> None:
    """The environment a benchmark's processes run in: fake credentials for the local
    emulator, no AWS configuration file, the functions' logs at `log_level`, no metrics."""
    import os

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - the local emulator's fake credential
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        POWERTOOLS_LOG_LEVEL=log_level,
        POWERTOOLS_METRICS_DISABLED="true",
    )


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """moto's threaded server on a free loopback port, stopped on exit: yields its endpoint."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
