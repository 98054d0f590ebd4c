"""Helpers for the command-line tests: run a command in this process (so the session's
leak scan sees its output), a real PostgreSQL user and secret, Lambda functions in moto
(moto needs no Docker to hold one, only to invoke it), and a stand-in for the service's
invocation of the function in remote mode."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rotation_cli.cli import main
from rotation_cli.driver import CURRENT, PENDING, LocalRotation, bind
from tests.engines import PostgresHarness, new_password, unique
from tests.support import rotations


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
    doc: dict[str, Any] = field(repr=False)  # holds the password: never in a failure report

    @property
    def username(self) -> str:
        return str(self.doc["username"])


@pytest.fixture
def pg_secret(pg: PostgresHarness, sm: Any) -> PgSecret:
    """A single-user PostgreSQL secret whose password logs in."""
    arn, doc = pg.new_secret(sm, "single-user")
    return PgSecret(arn, doc)


def current(sm: Any, arn: str) -> dict[str, Any]:
    return dict(json.loads(rotations.value(sm, arn, CURRENT)))


def version_value(sm: Any, arn: str, version: str) -> dict[str, Any]:
    return dict(json.loads(sm.get_secret_value(SecretId=arn, VersionId=version)["SecretString"]))


def stuck(sm: Any, arn: str) -> list[str]:
    return rotations.stuck_pending(sm, arn)


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
    """make_function(permission=True, source_account=None, name=None) -> a function ARN in moto."""

    def make(*, permission: bool = True, source_account: str | None = None, name: str | None = None) -> str:
        name = name or unique("rotation-fn")
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
                versions = rotations.stages(self.client, self.arn)
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


def moto_lambda_config(moto_endpoint: str, use_docker: bool) -> None:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - moto's server on this machine
        f"{moto_endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": use_docker}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert json.loads(response.read())["lambda"]["use_docker"] is use_docker


@pytest.fixture
def stand_in(moto_endpoint: str) -> Iterator[Callable[..., StandInService]]:
    """The stand-in plays the service; moto's own invocation is its Docker-free stub (which
    runs nothing and logs nothing), as if the emulator ran functions (`rotate --remote`
    stops at once against an emulator that says it cannot)."""
    started: list[StandInService] = []
    moto_lambda_config(moto_endpoint, use_docker=False)

    def start(arn: str, function_arn: str, engine: str = "postgres", attempts: int = 3) -> StandInService:
        service = StandInService(moto_endpoint, arn, function_arn, engine, attempts).__enter__()
        started.append(service)
        return service

    try:
        yield start
    finally:
        moto_lambda_config(moto_endpoint, use_docker=True)
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


# -- subprocess runs of bin/rotate -----------------------------------------------------------
@dataclass
class ProcessRun:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.out}\n{self.err}"


def run_bin(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> ProcessRun:
    """Run a command line (bin/rotate ... or a printed hint) as a user would."""
    import subprocess

    from rotation_cli import paths

    done = subprocess.run(
        argv,
        cwd=cwd or str(paths.ROOT),
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(done.stdout)  # scanned for leaked secrets
    print(done.stderr, file=sys.stderr)
    return ProcessRun(done.returncode, done.stdout, done.stderr)


def rotate_bin() -> str:
    from rotation_cli import paths

    return str(paths.ROOT / "bin" / "rotate")


# -- network stand-ins -------------------------------------------------------------------------
def non_loopback_name() -> tuple[str, str]:
    """(a host name that is not written as loopback, the address it resolves to on this
    machine): the machine's own name, which /etc/hosts usually maps to a local address."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve here")
    if name.lower() in ("localhost", "") or name.replace(".", "").isdigit():
        pytest.skip("the host name is written as loopback")
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError:
        pytest.skip(f"cannot listen on {address}")
    return name, address


class ConnectionRecorder:
    """A TCP port that only records whether anything connected to it."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])

    def connected(self) -> bool:
        self.sock.settimeout(0.3)
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


class _Pump:
    @staticmethod
    def pipe(source: Any, target: Any) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


class TlsProxy:
    """HTTPS in front of moto's server, for a host name that is not loopback: what a VPC
    endpoint or a proxy looks like to the command (a real TLS server with its own CA)."""

    def __init__(self, name: str, address: str, upstream: str, directory: str) -> None:
        import ssl
        from urllib.parse import urlsplit

        from devtools.tls import generate_server_tls

        files = generate_server_tls(directory, dns_names=(name,), ip_addresses=())
        self.ca_file = files.ca_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(files.cert_file, files.key_file)
        target = urlsplit(upstream)
        self.upstream = (str(target.hostname), int(target.port or 80))
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(64)
        self.url = f"https://{name}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(self.upstream)
        except OSError:
            conn.close()
            return
        back = threading.Thread(target=_Pump.pipe, args=(upstream, tls), daemon=True)
        back.start()
        _Pump.pipe(tls, upstream)
        back.join(timeout=30)
        for sock in (tls, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.sock.close()


class PlainPostgres:
    """What a PostgreSQL server without TLS (ssl = off) answers a client that asks for TLS:
    the single byte 'N' to the SSLRequest (PostgreSQL documentation, "Frontend/Backend
    Protocol", 55.2.10 SSL Session Encryption: "The server then responds with a single
    byte containing S or N, indicating that it is willing or unwilling to perform SSL");
    libpq with sslmode verify-full then gives up: "server does not support SSL, but SSL
    was required"."""

    SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.ssl_requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(8)
                    if first == self.SSL_REQUEST:
                        self.ssl_requests += 1
                        conn.sendall(b"N")
                        conn.recv(1024)  # a client that goes on in clear text; libpq hangs up
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()


def unchanged_state(sm: Any, arn: str) -> tuple[Any, ...]:
    """Everything about a secret that a refused command must leave as it was."""
    described = sm.describe_secret(SecretId=arn)
    versions = sm.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]
    return (
        {v: sorted(s) for v, s in described.get("VersionIdsToStages", {}).items()},
        sorted(v["VersionId"] for v in versions),
        bool(described.get("RotationEnabled")),
        described.get("RotationLambdaARN"),
    )
