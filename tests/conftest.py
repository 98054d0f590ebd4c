"""Test session set-up: fake AWS credentials, moto's Secrets Manager server, the real
database servers, and the scan of every output of every test for generated secrets (a
leak fails the test whose output holds it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
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

from devtools import moto_service
from devtools.servers import mariadb_from_env_or_start, postgres_from_env_or_start
from rotation_core import passwords
from rotation_core.protocol import RotationFunction
from tests.engines import DatabaseHarness, MySQLHarness, PostgresHarness, Target
from tests.support import leaks, rotations

# moto's PutSecretValue, made to refuse modifying a version that has a value, as the
# service does (devtools/moto_service.py): createSecret relies on it.
moto_service.apply()


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


# -- every output of the session is scanned for them; a leak fails the test it happened in --
# Scanned: each test's captured stdout, stderr and log sections (setup, call, teardown), its
# failure report, what it read itself with capsys/capfd.readouterr(), and the stdout and
# stderr of the subprocesses it ran with pipes (subprocess.run, check_output, communicate).
# A child that inherits the test's stdout/stderr writes into pytest's fd-level capture, so
# its output is in the captured sections (or in capfd.readouterr()) already.
_SCANNED_SECTIONS = pytest.StashKey[int]()
_LEAKED = pytest.StashKey[bool]()
_rotation_steps = [0]  # handler invocations in this process: a session with none may scan nothing


def _leak_message(when: str, findings: list[leaks.Finding]) -> str:
    lines = "\n".join(f"  - {finding}" for finding in findings)
    return (
        f"SECRET LEAK during {when}: output of this test holds generated secret values "
        f"(kinds and forms below; the values are redacted from this report):\n{lines}"
    )


def _check_report(report: pytest.TestReport | pytest.CollectReport, stash: pytest.Stash, when: str) -> None:
    """Scan what this report adds (its new captured sections, its failure text) with what
    the phase's readouterr() and subprocesses added, and fail the report on a leak."""
    start = stash.get(_SCANNED_SECTIONS, 0)
    for title, content in report.sections[start:]:
        leaks.observe(content, title, "captured sections")
    stash[_SCANNED_SECTIONS] = len(report.sections)
    failure = str(report.longrepr) if report.failed and report.longrepr is not None else ""
    if failure:
        leaks.observe(failure, "the failure report", "failure reports")
    findings = leaks.take_findings()
    if findings:
        stash[_LEAKED] = True
    if not stash.get(_LEAKED, False):
        return
    # Redact, so that the terminal, the JUnit XML and CI logs never show a value.
    report.sections = [(title, leaks.redact(content)) for title, content in report.sections]
    if findings:
        message = _leak_message(when, findings)
        report.longrepr = f"{leaks.redact(failure)}\n\n{message}" if failure else message
        report.outcome = "failed"
        if hasattr(report, "wasxfail"):  # an expected failure must not hide a leak
            del report.wasxfail


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after skipping's xfail handling
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    _check_report(report, item.stash, call.when)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after capture adds its sections
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield
    _check_report(report, collector.stash, "collection")
    return report


def _scan_readouterr() -> None:
    """Output a test reads with capsys/capfd.readouterr() never reaches its report: scan it."""
    original = pytest.CaptureFixture.readouterr

    def readouterr(self: pytest.CaptureFixture[Any]) -> Any:
        result = original(self)
        leaks.observe(result.out, "stdout read with readouterr()", "read by capsys/capfd")
        leaks.observe(result.err, "stderr read with readouterr()", "read by capsys/capfd")
        return result

    pytest.CaptureFixture.readouterr = readouterr  # type: ignore[method-assign]


_scan_readouterr()


def _scan_subprocess_output() -> None:
    """What a child writes into a pipe (subprocess.run(capture_output=True), check_output,
    Popen.communicate) never reaches pytest's capture: scan it (and a timeout's partial output)."""
    original = subprocess.Popen.communicate

    def communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        command = self.args if isinstance(self.args, list | tuple) else str(self.args).split()
        program = os.path.basename(str(command[0])) if command else "?"  # its name only: never an argument
        try:
            out, err = original(self, *args, **kwargs)
        except subprocess.TimeoutExpired as exc:
            leaks.observe(exc.stdout, f"stdout of subprocess {program}", "subprocess output")
            leaks.observe(exc.stderr, f"stderr of subprocess {program}", "subprocess output")
            raise
        leaks.observe(out, f"stdout of subprocess {program}", "subprocess output")
        leaks.observe(err, f"stderr of subprocess {program}", "subprocess output")
        return out, err

    subprocess.Popen.communicate = communicate  # type: ignore[method-assign]


_scan_subprocess_output()


def _count_rotation_steps() -> None:
    original = RotationFunction.__call__

    def call(self: RotationFunction, event: object, context: object = None) -> None:
        _rotation_steps[0] += 1
        original(self, event, context)

    RotationFunction.__call__ = call  # type: ignore[method-assign]


_count_rotation_steps()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    scanned = leaks.scanned()
    total = sum(scanned.values())
    detail = ", ".join(f"{number} {source}" for source, number in sorted(scanned.items()))
    problems = []
    stray = leaks.take_findings()  # observed after the last test's report: attributed to no test
    if stray:
        problems.append(_leak_message("the session, outside any test", stray))
    steps = _rotation_steps[0]
    if steps and session.config.getoption("capture") == "no":
        problems.append(
            f"SECRET-LEAK SCAN INCOMPLETE: capture is off (-s, --capture=no), so the stdout of {steps} "
            "rotation steps (the function's logs) went to the terminal unscanned"
        )
    if steps and not total:
        problems.append(f"SECRET-LEAK SCAN SAW NOTHING: {steps} rotation steps ran but no output was scanned")
    if reporter is not None:
        reporter.write_line(
            f"secret-leak scan: {total} captured outputs checked ({detail or 'none'}) against "
            f"{leaks.count()} generated values in {leaks.forms()} encoded forms"
        )
        for problem in problems:
            reporter.write_line(problem)
    if problems:
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
        return dict(json.loads(rotations.value(self.sm, self.arn, "AWSCURRENT")))

    def rotate(self) -> str:
        return rotations.rotate(self.handler, self.sm, self.arn)

    def works(self, doc: dict[str, Any]) -> bool:
        return self.target.works(doc)


@pytest.fixture(
    params=[(fixture, strategy) for fixture, strategies in TARGETS.items() for strategy in strategies],
    ids=lambda p: f"{p[0].removesuffix('_harness').removesuffix('_target')}-{p[1]}",
)
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sm: Any) -> RotationCase:
    fixture, strategy = request.param
    return RotationCase(_use(request, monkeypatch, fixture), sm, strategy)
