"""Helpers for the command-line tests: run a command in this process (so the session's
leak scan sees its output), a real PostgreSQL user and secret, Lambda functions in moto
(moto needs no Docker to hold one, only to invoke it), and a stand-in for the service's
invocation of the function in remote mode."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rotation_cli.cli import main
from rotation_cli.driver import CURRENT, PENDING, LocalRotation, bind
from tests.engines import PostgresHarness, new_password, unique
from tests.support import driver


@dataclass
class CliRun:
    code: int
    out: str
    err: str
    doc: dict[str, Any] | None

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.out}\n{self.err}"


def run_cli(*argv: str) -> CliRun:
    """Run `rotate <argv>` in this process; with --json, parse the document."""
    buffer, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = main(list(argv), stream=buffer)
    out, err = buffer.getvalue(), errors.getvalue()
    print(out)  # captured by pytest, and so scanned for leaked secrets
    print(err, file=sys.stderr)
    doc = json.loads(out) if "--json" in argv and out.strip() else None
    return CliRun(code, out, err, doc)


def free_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pg(postgres_harness: PostgresHarness, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> PostgresHarness:
    for key, value in postgres_harness.env().items():
        monkeypatch.setenv(key, value)
    return postgres_harness


@dataclass
class PgSecret:
    arn: str
    doc: dict[str, Any]

    @property
    def username(self) -> str:
        return str(self.doc["username"])


@pytest.fixture
def pg_secret(pg: PostgresHarness, sm: Any) -> PgSecret:
    """A single-user PostgreSQL secret whose password logs in."""
    arn, doc = pg.new_secret(sm, "single-user")
    return PgSecret(arn, doc)


def current(sm: Any, arn: str) -> dict[str, Any]:
    return dict(json.loads(driver.value(sm, arn, CURRENT)))


def version_value(sm: Any, arn: str, version: str) -> dict[str, Any]:
    return dict(json.loads(sm.get_secret_value(SecretId=arn, VersionId=version)["SecretString"]))


def stuck(sm: Any, arn: str) -> list[str]:
    return driver.stuck_pending(sm, arn)


# -- Lambda functions held by moto --------------------------------------------------------
def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def lambda_client(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client("lambda", endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def lambda_role(moto_endpoint: str) -> str:
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    return str(
        iam.create_role(RoleName=unique("rotation-role"), AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    )


MakeFunction = Callable[..., str]


@pytest.fixture
def make_function(lambda_client: Any, lambda_role: str) -> MakeFunction:
    """make_function(permission=True, source_account=None) -> a function ARN in moto."""

    def make(*, permission: bool = True, source_account: str | None = None) -> str:
        name = unique("rotation-fn")
        arn = lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=lambda_role,
            Handler="app.lambda_handler",
            Code={"ZipFile": _zip()},
        )["FunctionArn"]
        if permission:
            kwargs: dict[str, Any] = {
                "FunctionName": name,
                "StatementId": "SecretsManagerAccess",
                "Action": "lambda:InvokeFunction",
                "Principal": "secretsmanager.amazonaws.com",
            }
            if source_account:
                kwargs["SourceAccount"] = source_account
            lambda_client.add_permission(**kwargs)
        return str(arn)

    return make


# -- a stand-in for Secrets Manager invoking the deployed function ---------------------------
class _ToCloudWatch(logging.Handler):
    """Forwards the function's log records to moto's CloudWatch Logs, as Lambda would."""

    def __init__(self, logs: Any, group: str) -> None:
        super().__init__()
        self.logs = logs
        self.group = group
        self.stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        for call, kwargs in (
            (logs.create_log_group, {"logGroupName": group}),
            (logs.create_log_stream, {"logGroupName": group, "logStreamName": self.stream}),
        ):
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                call(**kwargs)

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        self.logs.put_log_events(
            logGroupName=self.group,
            logStreamName=self.stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": message}],
        )


class StandInService:
    """Plays Secrets Manager after RotateSecret: when the secret gets an AWSPENDING version
    that is not AWSCURRENT, it invokes the function's steps (the local handler, as the
    deployed function would run), retrying the whole rotation up to `attempts` times, and
    the function's logs go to /aws/lambda/<name> in moto's CloudWatch Logs."""

    def __init__(self, moto_endpoint: str, arn: str, function_arn: str, engine: str, attempts: int = 3) -> None:
        import boto3

        from rotation_cli.paths import load_function
        from rotation_core.observability import logger

        self.client = boto3.client("secretsmanager", endpoint_url=moto_endpoint)
        self.logs = boto3.client("logs", endpoint_url=moto_endpoint)
        self.arn = arn
        self.handler = bind(load_function(engine).lambda_handler, self.client)
        self.attempts = attempts
        self.forward = _ToCloudWatch(self.logs, "/aws/lambda/" + function_arn.rsplit(":", 1)[-1])
        self.forward.setFormatter(logger.registered_formatter)
        self.logger = logger
        self.done: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandInService:
        self.logger.addHandler(self.forward)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.logger._logger.removeHandler(self.forward)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                versions = driver.stages(self.client, self.arn)
                pending = [v for v, s in versions.items() if PENDING in s and CURRENT not in s and v not in self.done]
                if pending:
                    self.done.append(pending[0])
                    LocalRotation(
                        self.handler,
                        self.client,
                        emulator=True,
                        attempts=self.attempts,
                        retry_delay=0,
                        retryable=lambda _error: True,  # the service retries whatever failed
                    ).run(self.arn, token=pending[0])
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


@pytest.fixture
def stand_in(moto_endpoint: str) -> Iterator[Callable[..., StandInService]]:
    started: list[StandInService] = []

    def start(arn: str, function_arn: str, engine: str = "postgres", attempts: int = 3) -> StandInService:
        service = StandInService(moto_endpoint, arn, function_arn, engine, attempts).__enter__()
        started.append(service)
        return service

    yield start
    for service in started:
        service.__exit__()
    for service in started:
        assert not service.errors, service.errors


def wrong_password_secret(pg: PostgresHarness, sm: Any) -> str:
    """A secret whose user exists but whose stored password is not the user's: nothing logs in."""
    username = unique("app")
    pg.create_user(username, new_password())
    doc = pg.secret(username, new_password())
    return str(sm.create_secret(Name=unique("postgres-secret"), SecretString=json.dumps(doc))["ARN"])
