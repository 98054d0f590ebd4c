"""The first hour with `rotate`: mistakes are found before anything changes, reported in
one line with the exit code the README gives, never as a traceback; only what a retry
can cure is retried; every suggested command runs as printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from rotation_cli import paths
from rotation_cli.cli import version
from rotation_cli.preflight import secret_parser
from rotation_core import Rotation
from tests.cli.conftest import (
    PgSecret,
    PlainPostgres,
    current,
    free_port,
    rotate_bin,
    run_bin,
    run_cli,
    stuck,
    unchanged_state,
)
from tests.engines import PostgresHarness, new_password, unique
from tests.support import rotations


def _secret(sm: Any, doc: dict[str, Any], prefix: str = "postgres-secret") -> str:
    return str(sm.create_secret(Name=unique(prefix), SecretString=json.dumps(doc))["ARN"])


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- 4. check before changing anything ---------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "engine", "expected"),
    [
        ({"host": None}, "postgres", "missing the field 'host'"),
        ({"port": "five"}, "postgres", "field 'port' of the current secret must be a number"),
        ({"password": ""}, "postgres", "field 'password' of the current secret is empty"),
        ({}, "mysql", "field 'engine' of the current secret must be one of"),
        ({"username": "x" * 64}, "postgres", "field 'username' of the current secret is longer"),
    ],
)
def test_a_bad_secret_is_refused_before_anything_changes(
    change: dict[str, Any], engine: str, expected: str, pg: PostgresHarness, sm: Any
) -> None:
    doc = pg.secret(unique("app"), new_password())
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    arn = _secret(sm, doc)
    before = unchanged_state(sm, arn)
    result = run_cli("rotate", arn, "--local", "--engine", engine)
    assert result.code == 1, result
    line = _one_line(result.err)
    assert expected in line and "nothing was changed" in line
    assert unchanged_state(sm, arn) == before, "no RotateSecret, no AWSPENDING, rotation not turned on"


def test_a_secret_that_is_not_json_is_refused_without_showing_it(sm: Any, pg: PostgresHarness) -> None:
    text = "not json " + new_password()
    arn = str(sm.create_secret(Name=unique("plain"), SecretString=text)["ARN"])
    before = unchanged_state(sm, arn)
    result = run_cli("rotate", arn, "--local", "--engine", "postgres")
    assert result.code == 1 and "the current secret is not valid JSON" in _one_line(result.err), result
    assert text not in result.out + result.err
    assert unchanged_state(sm, arn) == before


@pytest.mark.parametrize(
    ("pair", "variable"),
    [
        ("PASSWORD_LENGTH=abc", "PASSWORD_LENGTH"),
        ("PASSWORD_LENGTH=3", "PASSWORD_LENGTH"),
        ("ROTATION_STRATEGY=sideways", "ROTATION_STRATEGY"),
        ("DB_CA_BUNDLE=/nonexistent/ca.pem", "DB_CA_BUNDLE"),
        ("EXCLUDE_NUMBERS=maybe", "EXCLUDE_NUMBERS"),
    ],
)
def test_bad_configuration_is_a_bad_argument(pair: str, variable: str, pg_secret: PgSecret, sm: Any) -> None:
    before = unchanged_state(sm, pg_secret.arn)
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--env", pair)
    assert result.code == 2, result
    line = _one_line(result.err)
    assert variable in line and "--env" in line
    assert unchanged_state(sm, pg_secret.arn) == before


def test_alternating_users_need_masterarn_before_anything_changes(pg_secret: PgSecret, sm: Any) -> None:
    before = unchanged_state(sm, pg_secret.arn)
    result = run_cli(
        "rotate", pg_secret.arn, "--local", "--engine", "postgres", "--env", "ROTATION_STRATEGY=alternating-users"
    )
    assert result.code == 1 and "need the field 'masterarn'" in _one_line(result.err), result
    assert unchanged_state(sm, pg_secret.arn) == before


def test_a_master_secret_that_does_not_exist_is_not_found(pg: PostgresHarness, sm: Any) -> None:
    arn, doc = pg.new_secret(sm, "alternating-users")
    sm.delete_secret(SecretId=doc["masterarn"], ForceDeleteWithoutRecovery=True)
    before = unchanged_state(sm, arn)
    result = run_cli("rotate", arn, "--local", "--engine", "postgres")
    assert result.code == 1, result
    line = _one_line(result.err)
    assert "the master secret that field 'masterarn' names was not found" in line
    assert "AWSCURRENT" not in line
    assert unchanged_state(sm, arn) == before


def test_the_api_key_function_checks_its_secret_with_its_own_parser(sm: Any) -> None:
    arn = _secret(sm, {"mode": "borrowed", "key": "k-" + new_password()}, "api-key")
    before = unchanged_state(sm, arn)
    result = run_cli("rotate", arn, "--local", "--engine", "api_key")
    assert result.code == 1, result
    assert "'mode'" in _one_line(result.err) and "nothing was changed" in result.err
    assert unchanged_state(sm, arn) == before
    missing = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{unique('verify')}-AbCdEf"
    arn = _secret(sm, {"mode": "generated", "key": "k-" + new_password(), "verify_secret_arn": missing}, "api-key")
    before = unchanged_state(sm, arn)
    result = run_cli("rotate", arn, "--local", "--engine", "api_key")
    assert result.code == 1 and "the verify secret that field 'verify_secret_arn' names was not found" in result.err
    assert unchanged_state(sm, arn) == before


def test_the_api_key_parser_adapter_tolerates_another_signature() -> None:
    """The API key function is being reworked: the adapter matches parameters by name or
    position, and finds `parse` in a module next to the rotation's."""
    seen: list[tuple[Any, ...]] = []

    def by_keyword(*, role: str, text: str, secret_arn: str, strict: bool = True) -> str:
        seen.append((text, role, secret_arn, strict))
        return "parsed"

    def two_positional(raw: str, role: str) -> str:
        seen.append((raw, role))
        return "parsed"

    def needs_more(text: str, role: str, arn: str, clock: object) -> str:  # pragma: no cover - never called
        return "parsed"

    def fake_rotation(module_name: str) -> Rotation:
        namespace = {
            "__module__": module_name,
            "create": lambda self, ctx: "",
            "set": lambda self, ctx: None,
            "test": lambda self, ctx: None,
        }
        return type("FakeRotation", (Rotation,), namespace)()  # type: ignore[no-any-return]

    for parse, expected in (
        (by_keyword, ("T", "current", "A", True)),
        (two_positional, ("T", "current")),
        (needs_more, None),
    ):
        module = types.ModuleType("fake_rotation_module")
        module.parse = parse  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module
        try:
            adapter = secret_parser(fake_rotation(module.__name__))
            if expected is None:
                assert adapter is None, "a required argument it cannot supply: no adapter, no guess"
                continue
            assert adapter is not None
            assert adapter("T", "current", "A") == "parsed"
            assert seen[-1] == expected
        finally:
            del sys.modules[module.__name__]
    real = paths.load_function("api_key").lambda_handler.rotation
    assert secret_parser(real) is not None, "today's API key function is found"


def test_a_configuration_error_in_a_step_is_not_retried(pg_secret: PgSecret, pg: PostgresHarness, sm: Any) -> None:
    """A pending version that names another server (setSecret refuses it): a retry cannot
    change that, so there is one attempt, not three."""
    token = rotations.start_rotation(sm, pg_secret.arn)
    moved = dict(pg_secret.doc, host="db.elsewhere.example", password=new_password())
    sm.put_secret_value(
        SecretId=pg_secret.arn, ClientRequestToken=token, SecretString=json.dumps(moved), VersionStages=["AWSPENDING"]
    )
    result = run_cli(
        "rotate", pg_secret.arn, "--local", "--engine", "postgres", "--attempts", "3", "--retry-delay", "0", "--json"
    )
    assert result.code == 1, result
    assert result.doc is not None and result.doc["not_retried"] and len(result.doc["attempts"]) == 1
    assert "ConfigurationError" in result.doc["attempts"][0][-1]["error"]
    assert pg.works(pg_secret.doc), "the database never saw the pending password"


# -- 5. no tracebacks for user mistakes --------------------------------------------------------------
@pytest.mark.parametrize("source", ["--endpoint-url", "AWS_ENDPOINT_URL_SECRETS_MANAGER"])
def test_an_endpoint_without_a_scheme(source: str, pg_secret: PgSecret, moto_endpoint: str) -> None:
    bare = moto_endpoint.removeprefix("http://")
    env = dict(os.environ)
    argv = [rotate_bin(), "status", pg_secret.arn]
    if source == "--endpoint-url":
        argv += ["--endpoint-url", bare]
    else:
        env[source] = bare
    done = run_bin(argv, env=env)
    assert done.code == 2, done
    assert _one_line(done.err) == f"error: {source}: endpoint '{bare}' has no scheme: write it as http://{bare}"
    assert run_bin([rotate_bin(), "status", pg_secret.arn, "--endpoint-url", f"http://{bare}"]).code in (0, 1)


def _env_without(*names: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    return env


def test_missing_credentials_say_what_to_set(pg_secret: PgSecret, sm: Any) -> None:
    before = unchanged_state(sm, pg_secret.arn)
    env = _env_without("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    done = run_bin([rotate_bin(), "rotate", pg_secret.arn, "--local", "--engine", "postgres"], env=env)
    assert done.code == 2, done
    assert "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in _one_line(done.err)
    assert unchanged_state(sm, pg_secret.arn) == before
    done = run_bin([rotate_bin(), "status", pg_secret.arn, "--profile", "nosuchprofile"], env=env)
    assert done.code == 2 and "--profile" in _one_line(done.err), done


def test_a_missing_region_is_taken_from_the_arn_or_asked_for(pg_secret: PgSecret, sm: Any) -> None:
    env = _env_without("AWS_DEFAULT_REGION", "AWS_REGION")
    name = sm.describe_secret(SecretId=pg_secret.arn)["Name"]
    done = run_bin([rotate_bin(), "status", name], env=env)
    assert done.code == 2, done
    assert "no AWS region: pass --region, or set AWS_DEFAULT_REGION" in _one_line(done.err)
    done = run_bin([rotate_bin(), "status", pg_secret.arn], env=env)
    assert done.code == 0 or "diagnosis" in done.out, done  # us-east-1, from the ARN
    assert f"arn        {pg_secret.arn}" in done.out
    assert run_bin([rotate_bin(), "status", name, "--region", "us-east-1"], env=env).code in (0, 1)


def test_ctrl_c_during_a_step_says_where_it_stopped_and_the_command_that_resumes_it(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = paths.load_function("postgres").lambda_handler.rotation.engine
    original = engine.set_own_password

    def interrupted(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)  # the password changed in the database, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "set_own_password", interrupted)
    result = run_cli("rotate", pg_secret.arn, "--local")  # the engine comes from the secret
    monkeypatch.setattr(engine, "set_own_password", original)
    assert result.code == 130, result
    [token] = stuck(sm, pg_secret.arn)
    assert f"interrupted during setSecret: version {token} is AWSPENDING, not AWSCURRENT" in result.err
    assert "Traceback" not in result.err
    resume = next(line for line in result.err.splitlines() if line.startswith("resume it: "))
    command = resume.removeprefix("resume it: ")
    argv = shlex.split(command)
    assert argv[1:5] == ["rotate", pg_secret.arn, "--local", "--engine"] and argv[5] == "postgres"
    assert "--endpoint-url" in argv
    done = run_bin(argv, cwd=os.getcwd())
    assert done.code == 0, done
    assert f"version {token}: resuming the unfinished rotation" in done.out
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[token]
    assert pg.works(current(sm, pg_secret.arn))


def test_ctrl_c_while_waiting_to_retry(pg: PostgresHarness, sm: Any) -> None:
    doc = pg.secret(unique("app"), new_password())
    doc["port"] = free_port()  # connection refused: a failure worth retrying
    arn = _secret(sm, doc)
    process = subprocess.Popen(
        [rotate_bin(), "rotate", arn, "--local", "--engine", "postgres", "--retry-delay", "60"],
        cwd=paths.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "retrying the whole rotation" in line or not line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    print("".join(lines) + out, err)
    assert process.returncode == 130, err
    assert "interrupted while waiting to retry after setSecret failed" in err
    assert "resume it: bin/rotate rotate" in err and "Traceback" not in err
    assert len(stuck(sm, arn)) == 1


# -- 6. hints that work ---------------------------------------------------------------------------
def test_the_resume_hints_run_as_printed(pg_secret: PgSecret, pg: PostgresHarness, sm: Any) -> None:
    first = run_cli("rotate", pg_secret.arn, "--local", "--fail-at", "setSecret", "--env", "CONNECT_TIMEOUT=7")
    assert first.code == 1, first
    resume = next(line for line in first.out.splitlines() if line.strip().startswith("resume it: "))
    command = resume.strip().removeprefix("resume it: ")
    assert command.startswith(("bin/rotate rotate", f"{paths.ROOT}/bin/rotate rotate"))
    assert "--engine postgres" in command and "--endpoint-url http://127.0.0.1:" in command
    assert "--env CONNECT_TIMEOUT=7" in command
    status = run_cli("status", pg_secret.arn)
    assert f"Resume it: {command.replace(' --env CONNECT_TIMEOUT=7', '')}" in status.out
    done = run_bin(shlex.split(command), cwd=os.getcwd())
    assert done.code == 0, done
    assert pg.works(current(sm, pg_secret.arn)) and stuck(sm, pg_secret.arn) == []


def test_a_plain_local_server_refusing_tls_says_to_set_ssl_false(pg: PostgresHarness, sm: Any) -> None:
    server = PlainPostgres()
    try:
        doc = pg.secret(unique("app"), new_password())
        doc["port"] = server.port
        arn = _secret(sm, doc)
        result = run_cli("rotate", arn, "--local", "--engine", "postgres", "--retry-delay", "0", "--json")
    finally:
        server.close()
    assert result.code == 1, result
    assert server.ssl_requests >= 1, "the client asked for TLS and was told no"
    assert result.doc is not None and result.doc["not_retried"]
    failed = result.doc["attempts"][0][-1]
    assert "does not support SSL" in failed["error"]
    assert '"ssl": false' in failed["hint"]


# -- 7. exit codes, ranges, options that belong ----------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--local", "--attempts", "0"], "--attempts"),
        (["--local", "--attempts", "two"], "--attempts"),
        (["--local", "--retry-delay", "-1"], "--retry-delay"),
        (["--local", "--retry-delay", "nan"], "--retry-delay"),
        (["--remote", "--timeout", "0"], "--timeout"),
        (["--remote", "--timeout", "-5"], "--timeout"),
        (["--remote", "--poll", "-1"], "--poll"),
        (["--remote", "--max-failures", "-1"], "--max-failures"),
        (["--local", "--timeout", "5"], "--timeout"),
        (["--remote", "--attempts", "2"], "--attempts"),
        (["--remote", "--fail-at", "setSecret"], "--fail-at"),
        (["--local", "--env", "NOEQUALS"], "--env"),
        (["--local", "--env", "1BAD=x"], "--env"),
        (["--local", "--token", "short"], "--token"),
    ],
)
def test_bad_arguments_exit_2_and_change_nothing(argv: list[str], option: str, pg_secret: PgSecret, sm: Any) -> None:
    before = unchanged_state(sm, pg_secret.arn)
    result = run_cli("rotate", pg_secret.arn, "--engine", "postgres", *argv)
    assert result.code == 2, result
    assert option in result.err and "Traceback" not in result.err
    assert unchanged_state(sm, pg_secret.arn) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "SECRET", "--env", "A=1"],
        ["status", "SECRET", "--verbose"],
        ["attach", "SECRET", "--function", "F", "--schedule", "rate(1 day)", "--env", "A=1"],
        ["events", "SECRET", "--out", "x", "--region", "us-east-1"],
        ["events", "SECRET", "--out", "x", "--endpoint-url", "http://127.0.0.1:1"],
    ],
)
def test_options_that_would_do_nothing_are_not_offered(argv: list[str], tmp_path: Path) -> None:
    argv = [str(tmp_path / "x") if word == "x" else word for word in argv]
    result = run_cli(*argv)
    assert result.code == 2
    if argv[0] == "events":  # AWS options only go with --check (DescribeSecret)
        assert f"{argv[4]}: only with --check" in result.err
        assert not (tmp_path / "x").exists()
    else:
        assert "unrecognized arguments" in result.err


def test_version() -> None:
    done = run_bin([rotate_bin(), "--version"])
    assert done.code == 0 and done.out.strip() == f"rotate {version()}"
    assert version() != "unknown"


# -- 8. not found, and driver messages that stay readable ---------------------------------------------
@pytest.mark.parametrize("password", ["e", "pass", "Pw-shortish"])
def test_a_password_in_a_driver_message_never_garbles_it(
    password: str, pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver's own message (an error the engine did not wrap) may quote the password. A
    value shorter than 8 characters is never masked by replacement (a one-letter password
    would mask that letter everywhere): the message is withheld whole. A longer one is
    masked and the rest of the message stays as it was."""
    doc = pg.secret(unique("app"), password)
    arn = _secret(sm, doc)
    engine = paths.load_function("postgres").lambda_handler.rotation.engine

    def failing(login: Any, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"server closed the connection: password {login.password.reveal()} rejected by proxy")

    monkeypatch.setattr(engine, "connect", failing)
    result = run_cli("rotate", arn, "--local", "--engine", "postgres", "--json")
    assert result.code == 1, result
    assert result.doc is not None
    error = result.doc["attempts"][-1][-1]["error"]
    if len(password) < 8:
        assert error == "RuntimeError: (message withheld: it may contain a secret value)"
    else:
        assert error == "RuntimeError: server closed the connection: password ******** rejected by proxy"


def test_a_driver_message_without_a_value_is_shown_whole(
    pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = pg.secret(unique("app"), "e")
    arn = _secret(sm, doc)
    engine = paths.load_function("postgres").lambda_handler.rotation.engine
    monkeypatch.setattr(engine, "connect", lambda *_a, **_k: (_ for _ in ()).throw(RuntimeError("SSL SYSCALL: 104")))
    result = run_cli("rotate", arn, "--local", "--engine", "postgres", "--json")
    assert result.doc is not None
    assert result.doc["attempts"][-1][-1]["error"] == "RuntimeError: SSL SYSCALL: 104"


def test_an_untrusted_server_certificate_says_which_ca_to_give(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file = os.environ["DB_CA_BUNDLE"]
    monkeypatch.delenv("DB_CA_BUNDLE")  # the test server's CA is in no system store
    result = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--json")
    assert result.code == 1, result
    assert result.doc is not None and result.doc["not_retried"] and len(result.doc["attempts"]) == 1
    failed = result.doc["attempts"][0][-1]
    assert "not signed by a trusted authority" in failed["error"] and "--env DB_CA_BUNDLE=" in failed["hint"]
    again = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--env", f"DB_CA_BUNDLE={ca_file}")
    assert again.code == 0, again
    assert pg.works(current(sm, pg_secret.arn))
