"""Which endpoint the command trusts, and how (security issue: emulator detection and
plain http), and what it hands the function for its own AWS look-ups."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotation_cli import paths
from rotation_cli.aws import Aws, is_aws_host, is_loopback
from rotation_cli.driver import bind
from rotation_core import RotationFunction
from tests.cli.conftest import (
    ConnectionRecorder,
    PgSecret,
    TlsProxy,
    current,
    non_loopback_name,
    run_cli,
    unchanged_state,
)
from tests.engines import PostgresHarness
from tests.support import rotations


@pytest.fixture
def proxy(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsProxy]:
    """moto's server behind HTTPS on this machine's own name (not written as loopback)."""
    name, address = non_loopback_name()
    server = TlsProxy(name, address, moto_endpoint, str(tmp_path))
    monkeypatch.setenv("AWS_CA_BUNDLE", server.ca_file)  # boto3 trusts the proxy's CA
    yield server
    server.close()


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    _, address = non_loopback_name()
    listening = ConnectionRecorder(address)
    yield listening
    listening.close()


# -- 1. an emulator only when asked, or on loopback ----------------------------------------------
def test_an_unknown_non_loopback_endpoint_is_the_real_service_not_an_emulator(
    proxy: TlsProxy, pg_secret: PgSecret, sm: Any
) -> None:
    """Against a host that is neither AWS's nor loopback (a VPC endpoint's private DNS name,
    a proxy), the command must not switch to the emulator's work-arounds (RotateSecret with
    a placeholder function ARN): it takes the real service's path, which refuses a secret
    whose rotation is not enabled, and changes nothing."""
    before = unchanged_state(sm, pg_secret.arn)
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--endpoint-url", proxy.url)
    assert result.code == 1, result
    assert f"endpoint, used as the real service {proxy.url}" in result.out
    assert "rotation is not enabled" in result.err
    assert proxy.connections > 0, "the command did talk to the endpoint"
    assert unchanged_state(sm, pg_secret.arn) == before, "no RotateSecret, no version"


def test_emulator_on_request_for_a_non_loopback_endpoint(
    proxy: TlsProxy, pg_secret: PgSecret, pg: PostgresHarness, sm: Any
) -> None:
    result = run_cli(
        "rotate", pg_secret.arn, "--local", "--engine", "postgres", "--endpoint-url", proxy.url, "--emulator", "--json"
    )
    assert result.code == 0, result
    assert result.doc is not None and "RotateSecret" in result.doc["prepared"]
    assert pg.works(current(sm, pg_secret.arn))


def test_a_loopback_endpoint_is_an_emulator_unless_told_otherwise(pg_secret: PgSecret, moto_endpoint: str) -> None:
    assert Aws.from_options(moto_endpoint).emulator
    assert Aws.from_options("http://localhost:5000").emulator
    assert Aws.from_options("http://[::1]:5000").emulator
    assert not Aws.from_options(moto_endpoint, emulator=False).emulator
    assert not Aws.from_options("https://vpce-0a1b2c3d-4e5f.secretsmanager.us-east-1.vpce.amazonaws.com").emulator
    assert not Aws.from_options("https://secrets.internal.example.com").emulator


def test_aws_hosts_are_every_partition_and_vpc_endpoint_names() -> None:
    for host in (
        "secretsmanager.us-east-1.amazonaws.com",
        "secretsmanager-fips.us-gov-west-1.amazonaws.com",
        "vpce-0a1b2c3d-4e5f.secretsmanager.eu-west-1.vpce.amazonaws.com",
        "secretsmanager.us-east-1.api.aws",
        "secretsmanager.cn-north-1.amazonaws.com.cn",
        "secretsmanager.eusc-de-east-1.amazonaws.eu",
        "secretsmanager.us-iso-east-1.c2s.ic.gov",
        "secretsmanager.us-isob-east-1.sc2s.sgov.gov",
        "secretsmanager.us-isof-south-1.csp.hci.ic.gov",
        "secretsmanager.eu-isoe-west-1.cloud.adc-e.uk",
    ):
        assert is_aws_host(host), host
    for host in ("amazonaws.com.evil.example", "notamazonaws.com", "secrets.example.com", "127.0.0.1"):
        assert not is_aws_host(host), host
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("192.0.2.2", "localhost.example.com", "10.0.0.1", "::2", "vm"):
        assert not is_loopback(host), host


@pytest.mark.parametrize(
    "argv", [["--emulator"], ["--emulator", "--endpoint-url", "https://secretsmanager.us-east-1.amazonaws.com"]]
)
def test_emulator_mode_is_refused_against_aws(
    argv: list[str], pg_secret: PgSecret, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's work-arounds (a placeholder function ARN) must never reach AWS."""
    for name in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "SECRETS_MANAGER_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    before = unchanged_state(sm, pg_secret.arn)
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", *argv)
    assert result.code == 2, result
    assert "--emulator" in result.err and "Traceback" not in result.err
    assert unchanged_state(sm, pg_secret.arn) == before


# -- 2. plain http only to loopback -----------------------------------------------------------
@pytest.mark.parametrize(
    "source", ["--endpoint-url", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "SECRETS_MANAGER_ENDPOINT"]
)
@pytest.mark.parametrize("command", [["rotate", "--local", "--engine", "postgres"], ["status"], ["recover"]])
def test_plain_http_to_another_host_is_refused_before_any_connection(  # noqa: PLR0917 - fixtures
    source: str,
    command: list[str],
    recorder: ConnectionRecorder,
    pg_secret: PgSecret,
    sm: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, _ = non_loopback_name()
    url = f"http://{name}:{recorder.port}"
    for variable in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "SECRETS_MANAGER_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    extra: list[str] = []
    if source == "--endpoint-url":
        extra = ["--endpoint-url", url]
    else:
        monkeypatch.setenv(source, url)
    before = unchanged_state(sm, pg_secret.arn)
    verb, *options = command
    result = run_cli(verb, pg_secret.arn, *options, *extra, "--emulator")
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {source}: plain http is allowed only to this machine")
    assert not recorder.connected(), "nothing was sent to the endpoint"
    assert unchanged_state(sm, pg_secret.arn) == before


def test_plain_http_for_another_service_is_refused_too(
    recorder: ConnectionRecorder, pg_secret: PgSecret, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands call Lambda and CloudWatch Logs too, and the function RDS and Redshift:
    boto3's service variables obey the same rule."""
    name, _ = non_loopback_name()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://{name}:{recorder.port}")
    result = run_cli("status", pg_secret.arn)
    assert result.code == 2 and "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: plain http" in result.err, result
    assert not recorder.connected()


def test_https_to_another_host_and_http_to_loopback_are_accepted(proxy: TlsProxy, pg_secret: PgSecret) -> None:
    assert run_cli("status", pg_secret.arn, "--endpoint-url", proxy.url).code in (0, 1)
    assert run_cli("status", pg_secret.arn).code in (0, 1)  # moto on http://127.0.0.1


# -- 3. the master credential, and the function's own AWS look-ups --------------------------------
def test_bind_gives_the_function_the_commands_session_for_other_services(
    pg: PostgresHarness, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = Aws.from_options(moto_endpoint, region="eu-west-3")
    bound = bind(paths.load_function("postgres").lambda_handler, aws.secretsmanager, aws.client)
    factory = getattr(bound, "aws_client_factory", None)
    if factory is None:
        pytest.skip("the layer has no RotationFunction.aws_client_factory yet")
    rds = factory("rds")
    assert rds.meta.endpoint_url == moto_endpoint, "against an emulator, the emulator's endpoint"
    assert rds.meta.region_name == "eu-west-3", "the command's region"
    assert rds.describe_db_instances()["DBInstances"] == [], "a real call, answered by the emulator"
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    real = Aws.from_options(None, region="eu-west-3")
    bound_real = bind(paths.load_function("postgres").lambda_handler, real.secretsmanager, real.client)
    rds_real = bound_real.aws_client_factory("rds")
    assert rds_real.meta.endpoint_url == "https://rds.eu-west-3.amazonaws.com", "the service itself, no emulator"


def test_bind_works_with_a_layer_without_the_hook(
    pg: PostgresHarness, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_init = RotationFunction.__init__

    def old_init(self: RotationFunction, *args: Any, **kwargs: Any) -> None:  # the layer before the hook
        new_init(self, *args, **kwargs)
        self.__dict__.pop("aws_client_factory", None)

    monkeypatch.setattr(RotationFunction, "__init__", old_init)
    aws = Aws.from_options(moto_endpoint)
    bound = bind(paths.load_function("postgres").lambda_handler, aws.secretsmanager, aws.client)
    assert not hasattr(bound, "aws_client_factory")


def test_the_command_line_never_reads_the_master_secret(
    pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking, inspecting and recovering an alternating-users secret reads the master
    secret's metadata at most (DescribeSecret), never its value: only the function's own
    setSecret does, and decides where the master may log in."""
    arn, doc = pg.new_secret(sm, "alternating-users")
    read: list[str] = []
    original = Aws.client

    def recording(self: Aws, service: str) -> Any:
        client = original(self, service)
        if service == "secretsmanager" and not getattr(client, "_recorded", False):
            client.meta.events.register(
                "provide-client-params.secretsmanager.GetSecretValue",
                lambda params, **_: read.append(str(params.get("SecretId"))),
            )
            client._recorded = True
        return client

    monkeypatch.setattr(Aws, "client", recording)
    stopped = run_cli("rotate", arn, "--local", "--engine", "postgres", "--fail-at", "createSecret")
    assert stopped.code == 1 and "stopped after createSecret" in stopped.out, stopped
    assert "the master secret exists" in stopped.out
    assert run_cli("status", arn).code == 1
    assert run_cli("recover", arn).code == 0
    assert read, "the recorder saw the command's reads"
    assert doc["masterarn"] not in read
    assert not any(doc["masterarn"].startswith(r) or r.startswith(doc["masterarn"]) for r in read)
    assert len(rotations.stuck_pending(sm, arn)) == 1, "the dry run changed nothing"


def test_no_code_of_the_command_line_handles_the_master_credential() -> None:
    """Where the master logs in is the function's decision alone (rotation_core.targets): the
    command line never parses a master secret, reads another secret's value, or connects."""
    forbidden = {"parse_master", "other_secret", "master_login", "connect"}
    for source in sorted((paths.ROOT / "rotation_cli").glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            assert name not in forbidden, f"{source.name}:{getattr(node, 'lineno', '?')} uses {name}"


def test_status_json_of_the_secret_holds_no_master_value(pg: PostgresHarness, sm: Any) -> None:
    arn, _ = pg.new_secret(sm, "alternating-users")
    result = run_cli("status", arn, "--json")
    assert result.doc is not None
    assert pg.master_password not in json.dumps(result.doc)
