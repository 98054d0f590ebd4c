"""Test session set-up: fake AWS credentials, moto's Secrets Manager server, the real
database servers, and the scan of every captured log line for generated secrets."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Never reach a real AWS account from the tests.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    POWERTOOLS_METRICS_NAMESPACE="RotationTests",
    POWERTOOLS_SERVICE_NAME="rotation-tests",
)
os.environ.pop("AWS_PROFILE", None)

from rotation_core import passwords
from tests.engines import Harness, PostgresHarness, new_password, unique
from tests.support import driver, leaks
from tests.support.servers import postgres_from_env_or_start


# -- every secret value the session generates is remembered, to be looked for in logs --
def _remember_generated(original: Callable[..., Any]) -> Callable[..., Any]:
    def generate(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        leaks.remember(value.reveal(), "password")
        return value

    return generate


passwords.generate = _remember_generated(passwords.generate)  # type: ignore[method-assign]


def _remember_verifiers() -> None:
    import psycopg2.extensions

    original = psycopg2.extensions.encrypt_password

    def encrypt_password(*args: Any, **kwargs: Any) -> str:
        verifier = original(*args, **kwargs)
        leaks.remember(verifier, "hash")
        return verifier

    psycopg2.extensions.encrypt_password = encrypt_password


_remember_verifiers()

_captured: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _captured.extend(content for _, content in report.sections)
    if report.longrepr is not None:
        _captured.append(str(report.longrepr))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = leaks.find("\n".join(_captured))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"secret-leak scan: {len(_captured)} captured outputs checked against {leaks.count()} generated values"
        )
    if found:
        if reporter is not None:
            reporter.write_line(f"SECRET LEAK: captured output contains generated values of kind(s): {found}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- Secrets Manager: moto's server over HTTP, as the function sees the real service --
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def sm(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client("secretsmanager", endpoint_url=moto_endpoint)


# -- databases -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_harness() -> Iterator[PostgresHarness]:
    server = postgres_from_env_or_start()
    try:
        yield PostgresHarness(server)
    finally:
        server.stop()


HARNESS_FIXTURES = ["postgres_harness"]


@pytest.fixture(params=HARNESS_FIXTURES, ids=lambda name: name.removesuffix("_harness"))
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Harness:
    chosen: Harness = request.getfixturevalue(request.param)
    for key, value in chosen.env().items():
        monkeypatch.setenv(key, value)
    return chosen


# -- a rotated secret, ready to rotate --------------------------------------------------
class RotationCase:
    """A fresh database user, its secret in moto, and the handler under test."""

    def __init__(self, harness: Harness, sm: Any, strategy: str) -> None:
        self.harness = harness
        self.sm = sm
        self.strategy = strategy
        self.username = unique("app")
        self.password = new_password()
        harness.create_user(self.username, self.password)
        extra: dict[str, Any] = {}
        if strategy == "alternating-users":
            master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(harness.master()))
            extra["masterarn"] = master["ARN"]
        created = sm.create_secret(
            Name=unique(f"{harness.name}-secret"),
            SecretString=json.dumps(harness.secret(self.username, self.password, **extra)),
        )
        self.arn: str = created["ARN"]
        self.handler = harness.make_handler()

    def current(self) -> dict[str, Any]:
        return dict(json.loads(driver.value(self.sm, self.arn, "AWSCURRENT")))

    def rotate(self) -> str:
        return driver.rotate(self.handler, self.sm, self.arn)

    def logs_in(self, doc: dict[str, Any]) -> bool:
        return self.harness.logs_in(doc["username"], doc["password"])


@pytest.fixture(params=["single-user", "alternating-users"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def case(harness: Harness, sm: Any, strategy: str) -> RotationCase:
    return RotationCase(harness, sm, strategy)
