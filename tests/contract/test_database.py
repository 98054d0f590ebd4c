"""The database contract: what every database engine meets, for both strategies, against
a real server (bad secrets, odd user names, credentials that do not log in).

Parametrized over every database harness (tests/engines.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from rotation_core import AuthenticationError, ConfigurationError
from tests.conftest import RotationCase
from tests.engines import DatabaseHarness, new_password, unique
from tests.support import leaks, rotations
from tests.support.functions import ROOT


def test_attached_to_a_secret_with_extra_fields(harness: DatabaseHarness, sm: Any) -> None:
    """A secret made for AWS's functions (or by RDS) keeps every field it had."""
    username, password = unique("legacy"), new_password()
    harness.create_user(username, password)
    doc = harness.secret(username, password, dbInstanceIdentifier="db-1", port=str(harness.info.port))
    arn = sm.create_secret(Name=unique("legacy"), SecretString=json.dumps(doc))["ARN"]
    rotations.rotate(harness.make_handler(), sm, arn)
    after = json.loads(rotations.value(sm, arn))
    assert after["dbInstanceIdentifier"] == "db-1"
    assert harness.logs_in(after["username"], after["password"])


@pytest.mark.parametrize("strategy", DatabaseHarness.strategies)
@pytest.mark.parametrize(
    "username",
    ["we\"ird 'user'; DROP TABLE x; --", "Üñíçødé user", "user with  spaces", "back\\slash$1"],
)
def test_usernames_with_quotes_spaces_and_sql(harness: DatabaseHarness, sm: Any, strategy: str, username: str) -> None:
    password = new_password()
    name = username[:40] + unique("")
    harness.create_user(name, password)
    extra = {}
    if strategy == "alternating-users":
        extra["masterarn"] = sm.create_secret(Name=unique("master"), SecretString=json.dumps(harness.master()))["ARN"]
    arn = sm.create_secret(Name=unique("odd"), SecretString=json.dumps(harness.secret(name, password, **extra)))["ARN"]
    handler = harness.make_handler()
    for _ in range(2):
        rotations.rotate(handler, sm, arn)
        current = json.loads(rotations.value(sm, arn))
        assert harness.logs_in(current["username"], current["password"])
    assert json.loads(rotations.value(sm, arn))["username"] == name  # two rotations: back to the original user


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": None}, "missing the field 'host'"),
        ({"password": None}, "missing the field 'password'"),
        ({"username": None}, "missing the field 'username'"),
        ({"engine": "oracle"}, "field 'engine'"),
        ({"port": "not-a-port"}, "field 'port'"),
        ({"port": [5432]}, "field 'port'"),
        ({"username": 7}, "field 'username'"),
        ({"ssl": "sometimes"}, "field 'ssl'"),
        ({"host": "db\nevil"}, "control character"),
    ],
)
def test_bad_secret_is_refused_before_anything_is_written(
    harness: DatabaseHarness, sm: Any, change: dict[str, Any], message: str
) -> None:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    doc = {k: v for k, v in {**harness.secret(username, password), **change}.items() if v is not None}
    arn = sm.create_secret(Name=unique("bad"), SecretString=json.dumps(doc))["ARN"]
    token = rotations.start_rotation(sm, arn)
    with pytest.raises(ConfigurationError, match=message) as info:
        harness.make_handler()(rotations.event(arn, token, "createSecret"), None)
    assert password not in str(info.value)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        rotations.value(sm, arn, "AWSPENDING", token)
    assert harness.logs_in(username, password)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PASSWORD_LENGTH": "0"}, "PASSWORD_LENGTH"),
        # An engine that requires character classes (Redshift) names the first class left empty.
        ({"EXCLUDE_CHARACTERS": "".join(map(chr, range(33, 127)))}, "no character|removes every character"),
    ],
)
def test_invalid_password_settings_fail_create_before_anything_is_written(
    harness: DatabaseHarness, sm: Any, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    case = RotationCase(harness, sm, "single-user")
    token = rotations.start_rotation(case.sm, case.arn)
    with pytest.raises(ConfigurationError, match=message):
        case.handler(rotations.event(case.arn, token, "createSecret"), None)
    with pytest.raises(case.sm.exceptions.ResourceNotFoundException):
        rotations.value(case.sm, case.arn, "AWSPENDING", token)


@pytest.mark.parametrize("strategy", DatabaseHarness.strategies)
def test_pending_secret_for_another_user_is_refused(harness: DatabaseHarness, sm: Any, strategy: str) -> None:
    """A tampered AWSPENDING (another user) must not get that user's password changed."""
    case = RotationCase(harness, sm, strategy)
    token = rotations.start_rotation(case.sm, case.arn)
    victim, victim_password = unique("victim"), new_password()
    case.target.create_user(victim, victim_password)
    tampered = {**case.current(), "username": victim, "password": new_password()}
    case.sm.put_secret_value(
        SecretId=case.arn, ClientRequestToken=token, SecretString=json.dumps(tampered), VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ConfigurationError, match="username"):
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    assert case.target.logs_in(victim, victim_password)


def test_wrong_current_password_is_an_authentication_error_naming_the_credentials(
    harness: DatabaseHarness, sm: Any
) -> None:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    doc = harness.secret(username, new_password())  # not the user's password
    arn = sm.create_secret(Name=unique("wrong"), SecretString=json.dumps(doc))["ARN"]
    handler = harness.make_handler()
    token = rotations.start_rotation(sm, arn)
    handler(rotations.event(arn, token, "createSecret"), None)
    with pytest.raises(
        AuthenticationError, match="neither the current, the pending, the previous nor an abandoned"
    ) as info:
        handler(rotations.event(arn, token, "setSecret"), None)
    assert doc["password"] not in str(info.value)
    assert harness.logs_in(username, password)


def test_single_user_falls_back_to_the_previous_credential(harness: DatabaseHarness, sm: Any) -> None:
    """AWSCURRENT was overwritten with a wrong password; AWSPREVIOUS still logs in."""
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    arn = sm.create_secret(Name=unique("prev"), SecretString=json.dumps(harness.secret(username, password)))["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(harness.secret(username, new_password())))
    handler = harness.make_handler()
    rotations.rotate(handler, sm, arn)
    current = json.loads(rotations.value(sm, arn))
    assert harness.logs_in(username, current["password"])
    assert not harness.logs_in(username, password)


def test_single_user_recovers_the_password_of_an_abandoned_rotation(harness: DatabaseHarness, sm: Any) -> None:
    """AWS's lockout: setSecret changed the password, the rotation never finished, and a new
    rotation moved AWSPENDING away, so only a version without labels holds the working password."""
    case = RotationCase(harness, sm, "single-user")
    abandoned = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, abandoned, ("createSecret", "setSecret"))
    stranded = json.loads(rotations.value(sm, case.arn, "AWSPENDING", abandoned))
    assert not case.works(case.current()), "the database has the abandoned rotation's password"
    token = rotations.start_rotation(sm, case.arn)  # moves AWSPENDING to the new version
    assert rotations.stages(sm, case.arn)[abandoned] == []
    rotations.run_steps(case.handler, case.arn, token)
    assert case.works(case.current())
    assert not case.works(stranded)


# -- budgets, driver loading, logs: the same for every engine ----------------------------------
@pytest.mark.parametrize("strategy", DatabaseHarness.strategies)
def test_the_master_user_itself_is_never_rotated_as_an_alternating_user(
    harness: DatabaseHarness, sm: Any, strategy: str
) -> None:
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(harness.master()))["ARN"]
    username = harness.master_user + ("_clone" if strategy == "alternating-users" else "")
    doc = harness.secret(username, new_password(), masterarn=master)
    arn = sm.create_secret(Name=unique("self"), SecretString=json.dumps(doc))["ARN"]
    handler = harness.make_handler()
    token = rotations.start_rotation(sm, arn)
    handler(rotations.event(arn, token, "createSecret"), None)
    with pytest.raises(ConfigurationError, match="master secret's user"):
        handler(rotations.event(arn, token, "setSecret"), None)
    assert harness.logs_in(harness.master_user, harness.master_password)


def test_single_user_rotation_stays_within_budget(harness: DatabaseHarness, sm: Any) -> None:
    """At most 9 Secrets Manager calls and 2 database connections (AWS's: about 14 and 3):
    DescribeSecret before the steps that write, to Secrets Manager or to the database."""
    case = RotationCase(harness, sm, "single-user")
    calls: list[str] = []
    case.handler.client.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.append(model.name))
    engine = case.handler.rotation.engine  # type: ignore[attr-defined]
    connects: list[str] = []
    original = engine.connect
    engine.connect = lambda login, settings, **kw: connects.append(login.username) or original(login, settings, **kw)
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token)
    assert len(calls) <= 9, calls
    assert sorted(calls) == sorted(
        ["DescribeSecret"] * 3 + ["GetSecretValue"] * 4 + ["PutSecretValue", "UpdateSecretVersionStage"]
    ), calls
    assert "GetRandomPassword" not in calls
    assert len(connects) <= 2, connects
    assert case.works(case.current())


def test_create_and_finish_never_import_the_driver(harness: DatabaseHarness, sm: Any, moto_endpoint: str) -> None:
    case = RotationCase(harness, sm, "single-user")
    token = rotations.start_rotation(sm, case.arn)
    driver_module = harness.driver_module
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT / "layers" / "rotation_core")!r}, {str(ROOT / "functions" / harness.name)!r}]
        import app
        event = {{"SecretId": {case.arn!r}, "ClientRequestToken": {token!r}}}
        app.lambda_handler(dict(event, Step="createSecret"), None)
        assert {driver_module!r} not in sys.modules, "createSecret imported the driver"
        app.lambda_handler(dict(event, Step="finishSecret"), None)
        assert {driver_module!r} not in sys.modules, "finishSecret imported the driver"
        print("driver-not-imported")
    """)
    env = {**os.environ, "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "driver-not-imported" in out.stdout
    assert leaks.find(out.stdout + out.stderr) == []


@pytest.mark.parametrize("strategy", DatabaseHarness.strategies)
def test_logs_of_a_rotation_hold_no_secret(
    harness: DatabaseHarness,
    sm: Any,
    strategy: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = RotationCase(harness, sm, strategy)
    token = rotations.start_rotation(sm, case.arn)
    for step in rotations.STEPS:
        case.handler(
            rotations.event(case.arn, token, step, rotation_token="rotation-token-" + rotations.new_token()), None
        )
    out, err = capsys.readouterr()
    text = out + err + caplog.text
    assert '"step":"setSecret"' in text and "StepSucceeded" in text, "the logs and metrics were captured"
    assert case.current()["password"] not in text
    assert leaks.find(text) == []  # every password, hash and RotationToken the session generated
