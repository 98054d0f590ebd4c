"""No generated secret in any log, even at DEBUG; and the leak scanner itself finds what it
must (tests/support/leaks.py, and the hooks of tests/conftest.py that run it).

The scanner's self-tests register synthetic values of their own kind ("self-test value")
and consume what the scan found (leaks.take_findings()), so that the detection they prove
fails neither them nor the session. The hooks themselves (a leak fails the test it happened
in, its report redacted; a session that scanned nothing fails) are proved in a pytest
session of their own, run as a subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus
from xml.etree import ElementTree

import pytest

from rotation_core import observability
from rotation_core.observability import logger
from tests.conftest import RotationCase
from tests.support import leaks, rotations
from tests.support.functions import ROOT

SELF_TEST = "self-test value"
PYTHON = os.path.basename(sys.executable)  # how a finding names a subprocess


def synthetic_value() -> str:
    """A value with the characters every encoding treats specially."""
    return f"Pw-{secrets.token_urlsafe(18)}\"'\\/+%& ~é"


# -- DEBUG: every target, every strategy, with the function and the root logger at DEBUG ---
class _CurrentStderr:
    """Writes to whatever sys.stderr is now (capsys' while the test runs)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def debug_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Handler]:
    """Logging as a function configured for DEBUG: AWS_LAMBDA_LOG_LEVEL sets the root
    logger's level (Lambda's runtime does it before importing the handler), the root logger
    gets a handler (here to stderr, captured), POWERTOOLS_LOG_LEVEL the function's logger."""
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    root = logging.getLogger()
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root_level, function_level = root.level, logger.log_level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        logger.setLevel(function_level)


@contextlib.contextmanager
def sdk_logging_to(handler: logging.Handler) -> Iterator[None]:
    """The cap lifted: the SDK's loggers at the root's level (DEBUG), into handler only,
    not to the root (where pytest's log capture would add them to the test's report)."""
    sdk = logging.getLogger("botocore")
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in observability.LIBRARY_LOGGERS]
    for library, _ in saved:
        library.setLevel(logging.NOTSET)
    sdk.addHandler(handler)
    sdk.propagate = False
    try:
        yield
    finally:
        sdk.propagate = True
        sdk.removeHandler(handler)
        for library, level in saved:
            library.setLevel(level)


def test_rotation_at_debug_logs_no_secret(
    case: RotationCase, debug_logging: logging.Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    before = case.current()
    token = rotations.start_rotation(case.sm, case.arn)
    for step in rotations.STEPS:  # with a RotationToken, which PutSecretValue carries
        case.handler(
            rotations.event(case.arn, token, step, rotation_token="rotation-token-" + rotations.new_token()), None
        )
    out, err = capsys.readouterr()
    assert case.works(case.current()) and case.current() != before
    assert f'"correlation_id":"{token}"' in out, "the function's JSON logs were captured"
    assert "INFO werkzeug" in err, "the root handler captured other libraries' records"
    assert leaks.scan(out + err) == []  # every password, hash, key and RotationToken generated
    assert logging.getLogger("botocore.endpoint").getEffectiveLevel() == logging.WARNING

    # Not vacuous: the same capture and scan see botocore's DEBUG bodies once it may log.
    with sdk_logging_to(debug_logging):
        case.current()  # one GetSecretValue, by the tests' own client
    _, control = capsys.readouterr()
    found = leaks.take_findings()  # expected here: must not fail the test
    assert "DEBUG botocore.endpoint Making request for OperationModel(name=GetSecretValue)" in control
    assert "DEBUG botocore.parsers Response body" in control
    assert any(f.where == "stderr read with readouterr()" for f in found), "botocore logged the secret"


# -- the encodings a value is found in ------------------------------------------------------
def test_encoded_forms_of_a_value_are_found() -> None:
    registry = leaks.Registry()
    value = registry.remember(synthetic_value(), SELF_TEST)
    raw = value.encode()
    body = json.dumps({"SecretString": json.dumps({"password": value})}).encode()
    logged = {
        "plain": f"password={value}",
        "percent-encoded": f"GET /login?user=app&password={quote_plus(value)} HTTP/1.1",
        "JSON-escaped": json.dumps({"message": "connecting", "password": value}),
        "backslash-escaped": f"DEBUG botocore.parsers Response body:\n{body!r}",
        "base64": "Authorization: Basic " + base64.b64encode(b"app:" + raw).decode(),
        "hex": f"bytes: {raw.hex()}",
    }
    for form, text in logged.items():
        assert registry.scan(text, "test") == [leaks.Finding(SELF_TEST, form, "test")], form
        assert registry.find(registry.redact(text)) == [], form
    lower_case_escapes = re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(value, safe=""))
    assert registry.find(f"lower-case escapes: {lower_case_escapes}") == [SELF_TEST]
    assert registry.find(json.dumps(value, ensure_ascii=False)) == [SELF_TEST]
    assert registry.find(value[:-1] + " " + value[1:]) == [], "only the whole value counts"
    assert registry.remember("short", SELF_TEST) == "short"
    assert registry.count() == 1, "values shorter than MIN_LENGTH are not remembered (chance matches)"


@pytest.mark.parametrize("alphabet", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_value_anywhere_inside_a_base64_blob_is_found(alphabet: Any) -> None:
    registry = leaks.Registry()
    for _ in range(50):
        value = registry.remember(synthetic_value() + secrets.token_hex(secrets.randbelow(4)), SELF_TEST)
        for prefix in range(6):
            for suffix in range(3):
                blob = alphabet(os.urandom(prefix) + value.encode() + os.urandom(suffix)).decode()
                assert registry.find(f"data: {blob}") == [SELF_TEST], (prefix, suffix)


def test_one_value_among_thousands_is_found() -> None:
    registry = leaks.Registry()
    for _ in range(3000):
        registry.remember(synthetic_value(), "password")
    value = registry.remember(synthetic_value(), SELF_TEST)
    text = ('{"level":"INFO","message":"step done"}\n' * 2000) + quote(value)
    assert registry.find(text) == [SELF_TEST]


# -- the outputs a test can produce without a captured section --------------------------------
def test_a_value_printed_and_read_back_with_capsys_is_found(capsys: pytest.CaptureFixture[str]) -> None:
    value = leaks.remember(synthetic_value(), SELF_TEST)
    print(json.dumps({"password": value}))
    capsys.readouterr()  # consumed: never in the test's captured sections
    assert leaks.Finding(SELF_TEST, "JSON-escaped", "stdout read with readouterr()") in leaks.take_findings()


def test_a_value_printed_by_a_child_on_the_inherited_stdout_is_found(capfd: pytest.CaptureFixture[str]) -> None:
    value = leaks.remember(synthetic_value(), SELF_TEST)
    script = "import os, urllib.parse; print(urllib.parse.quote(os.environ['LEAKED']))"
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "LEAKED": value}, check=True)
    capfd.readouterr()  # the child wrote into the test's fd 1, which capfd holds
    assert leaks.Finding(SELF_TEST, "percent-encoded", "stdout read with readouterr()") in leaks.take_findings()


def test_a_value_printed_by_a_subprocess_into_a_pipe_is_found() -> None:
    value = leaks.remember(synthetic_value(), SELF_TEST)
    env = {**os.environ, "LEAKED": value}
    script = "import os, sys; print(os.environ['LEAKED'].encode().hex(), file=sys.stderr)"
    subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True)
    assert leaks.take_findings() == [leaks.Finding(SELF_TEST, "hex", f"stderr of subprocess {PYTHON}")]
    script = "import os; print(os.environ['LEAKED'])"
    subprocess.check_output([sys.executable, "-c", script], env=env)
    assert leaks.take_findings() == [leaks.Finding(SELF_TEST, "plain", f"stdout of subprocess {PYTHON}")]


# -- the hooks: a leak fails the test it happened in, and a scan of nothing fails ---------------
INNER_TESTS = """
import os, subprocess, sys
from urllib.parse import quote_plus

import pytest

from rotation_core import EventError, Rotation, RotationFunction
from tests.support import leaks

VALUE = leaks.remember(os.environ["LEAKED"], "password")


class Nothing(Rotation):
    name = "nothing"

    def create(self, ctx):
        raise NotImplementedError

    def set(self, ctx):
        raise NotImplementedError

    def test(self, ctx):
        raise NotImplementedError


def test_clean():
    print("nothing secret here")


def test_leaks_in_call():
    print("url: https://db/?password=" + quote_plus(VALUE))


@pytest.fixture
def leaky_teardown():
    yield
    print("teardown: " + VALUE)


def test_leaks_in_teardown(leaky_teardown):
    pass


@pytest.mark.xfail(reason="an expected failure must not hide a leak")
def test_xfail_that_leaks():
    print(VALUE)
    raise AssertionError


def test_fails_and_shows_the_value():
    assert VALUE == "something else"


def test_leaks_through_a_subprocess_pipe():
    subprocess.run([sys.executable, "-c", "import os; print(os.environ['LEAKED'])"], capture_output=True)


def test_runs_a_rotation_step():
    with pytest.raises(EventError):
        RotationFunction(Nothing())({})  # an invalid event: logged and counted, nothing else
"""


def _inner_session(tmp_path: Path, value: str, *options: str) -> tuple[subprocess.CompletedProcess[str], str]:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    junit = tmp_path / "junit.xml"
    env = {
        **os.environ,
        "LEAKED": value,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "rotation_core"), str(ROOT)]),
    }
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q"]
    command += ["--rootdir", str(tmp_path), f"--junitxml={junit}", "-o", "junit_logging=all", *options]
    command.append("test_inner.py")
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    return done, junit.read_text() if junit.exists() else ""


def _outcomes(junit: str) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = {}
    for case in ElementTree.fromstring(junit).iter("testcase"):  # noqa: S314 - written by our own pytest
        outcomes[case.get("name", "")] = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    return outcomes


def test_a_leak_fails_the_test_it_happened_in_and_is_redacted(tmp_path: Path) -> None:
    value = leaks.remember(synthetic_value(), SELF_TEST)  # so this test fails if the report shows it
    done, junit = _inner_session(tmp_path, value)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert _outcomes(junit) == {
        "test_clean": [],
        "test_leaks_in_call": ["failure"],
        "test_leaks_in_teardown": ["error"],
        "test_xfail_that_leaks": ["failure"],
        "test_fails_and_shows_the_value": ["failure"],
        "test_leaks_through_a_subprocess_pipe": ["failure"],
        "test_runs_a_rotation_step": [],
    }
    assert "password (percent-encoded) in Captured stdout call" in output
    assert "SECRET LEAK during teardown" in output
    assert "password in the failure report" in output  # shown by the assertion's diff
    assert f"password in stdout of subprocess {PYTHON}" in output
    assert "[password redacted]" in output
    assert leaks.scan(output + junit) == [], "the inner session's reports show no value"
    assert "secret-leak scan: " in output


def test_a_session_that_rotates_but_scans_nothing_fails(tmp_path: Path) -> None:
    done, _ = _inner_session(tmp_path, synthetic_value(), "-k", "rotation_step or clean")
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"secret-leak scan: [1-9]\d* captured outputs checked \(\d+ captured sections\)", done.stdout)
    # capture off, and no log capture either: the function's logs reach the terminal unread
    done, _ = _inner_session(tmp_path, synthetic_value(), "-s", "-p", "no:logging", "-k", "rotation_step or clean")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "2 passed" in done.stdout
    assert "SECRET-LEAK SCAN INCOMPLETE: capture is off" in done.stdout
    assert "SECRET-LEAK SCAN SAW NOTHING: 1 rotation steps ran but no output was scanned" in done.stdout
