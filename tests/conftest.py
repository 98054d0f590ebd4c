"""Test session set-up: fake AWS credentials, moto's Secrets Manager server, the real
database servers, and the scan of every captured log line for generated secrets."""

from __future__ import annotations

import json
import os
import socket
import sys
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
from tests.engines import DatabaseHarness, MySQLHarness, PostgresHarness, Target
from tests.support import driver, leaks
from tests.support.servers import mariadb_from_env_or_start, postgres_from_env_or_start


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


class _CurrentStdout:
    """Writes to whatever sys.stdout is now. Powertools' log handler keeps the stdout it
    found at import time; pointing it here lets capsys see the function's JSON logs, as
    it sees its EMF metrics (which Powertools print())."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _follow_stdout() -> None:
    import logging

    from rotation_core.observability import logger

    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = _CurrentStdout()


_follow_stdout()


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


@pytest.fixture(scope="session")
def mysql_harness() -> Iterator[MySQLHarness]:
    server = mariadb_from_env_or_start()
    try:
        yield MySQLHarness(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redshift_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.engines import RedshiftHarness  # PostgreSQL (md5) behind a shim, as Redshift

    harness = RedshiftHarness.from_env_or_start(str(tmp_path_factory.mktemp("redshift-shim")))
    try:
        yield harness
    finally:
        harness.stop()


# -- API key providers: the test issuer (tests/support/issuer.py) on loopback ----------
@pytest.fixture(scope="session")
def api_key_target(sm: Any) -> Iterator[Any]:
    from tests.api_key_target import ApiKeyTarget
    from tests.support.issuer import Issuer

    issuer = Issuer().start()
    try:
        yield ApiKeyTarget(issuer, sm)
    finally:
        issuer.stop()


# Every rotation function's target, by fixture name, with the strategies it rotates by.
# The protocol contract runs on all of them; the database contract on DATABASE_FIXTURES.
TARGETS: dict[str, tuple[str, ...]] = {
    "api_key_target": ("generated", "issued"),  # tests/api_key_target.py: ApiKeyTarget.strategies
    "postgres_harness": PostgresHarness.strategies,
    "mysql_harness": MySQLHarness.strategies,
    "redshift_harness": DatabaseHarness.strategies,
}
DATABASE_FIXTURES = ["postgres_harness", "mysql_harness", "redshift_harness"]


def _use(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fixture: str) -> Any:
    chosen = request.getfixturevalue(fixture)
    for key, value in chosen.env().items():
        monkeypatch.setenv(key, value)
    return chosen


@pytest.fixture(params=DATABASE_FIXTURES, ids=lambda name: name.removesuffix("_harness"))
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> DatabaseHarness:
    chosen: DatabaseHarness = _use(request, monkeypatch, request.param)
    return chosen


class RotationCase:
    """A fresh credential valid in the target, its secret in moto, and the handler under test."""

    def __init__(self, target: Target, sm: Any, strategy: str) -> None:
        self.target = target
        self.sm = sm
        self.strategy = strategy
        self.arn, self.initial = target.new_secret(sm, strategy)
        self.username = self.initial.get("username")
        self.password = self.initial.get("password")
        self.handler = target.make_handler()

    def current(self) -> dict[str, Any]:
        return dict(json.loads(driver.value(self.sm, self.arn, "AWSCURRENT")))

    def rotate(self) -> str:
        return driver.rotate(self.handler, self.sm, self.arn)

    def works(self, doc: dict[str, Any]) -> bool:
        return self.target.works(doc)


@pytest.fixture(
    params=[(fixture, strategy) for fixture, strategies in TARGETS.items() for strategy in strategies],
    ids=lambda p: f"{p[0].removesuffix('_harness').removesuffix('_target')}-{p[1]}",
)
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sm: Any) -> RotationCase:
    fixture, strategy = request.param
    return RotationCase(_use(request, monkeypatch, fixture), sm, strategy)
