"""The contract every database engine meets, for both strategies, against a real server.

Parametrized over every engine harness (tests/engines.py) and both strategies, so a new
engine gets this whole suite by adding a harness.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotation_core import AuthenticationError, ConfigurationError, EventError
from tests.conftest import RotationCase
from tests.engines import Harness, new_password, unique
from tests.support import driver


def assert_rotated(case: RotationCase, before: dict[str, Any]) -> dict[str, Any]:
    after = case.current()
    assert after["password"] != before["password"]
    assert case.logs_in(after), "the new AWSCURRENT credential logs in"
    previous = json.loads(driver.value(case.sm, case.arn, "AWSPREVIOUS"))
    assert previous == before, "AWSPREVIOUS holds what AWSCURRENT held"
    assert driver.stuck_pending(case.sm, case.arn) == [], "no AWSPENDING left on a version that is not current"
    if case.strategy == "single-user":
        assert after["username"] == before["username"]
        assert not case.logs_in(before), "the user's old password no longer works"
    else:
        assert after["username"] != before["username"]
        assert {after["username"], before["username"]} == {case.username, case.username + "_clone"}
        assert case.logs_in(before), "the previous user keeps working until the next rotation"
    for key, value in before.items():
        if key not in ("username", "password"):
            assert after[key] == value, f"field {key!r} is carried over"
    return after


def test_full_rotation(case: RotationCase) -> None:
    before = case.current()
    token = case.rotate()
    after = assert_rotated(case, before)
    assert "AWSCURRENT" in driver.stages(case.sm, case.arn)[token]
    assert after["username"] == (case.username if case.strategy == "single-user" else case.username + "_clone")


def test_three_rotations_in_a_row(case: RotationCase) -> None:
    seen = []
    for _ in range(3):
        before = case.current()
        case.rotate()
        seen.append(assert_rotated(case, before)["password"])
    assert len(set(seen)) == 3


def test_each_step_twice_converges(case: RotationCase) -> None:
    before = case.current()
    token = driver.start_rotation(case.sm, case.arn)
    for step in driver.STEPS:
        case.handler(driver.event(case.arn, token, step), None)
        case.handler(driver.event(case.arn, token, step), None)
    assert_rotated(case, before)


def test_rotation_token_is_passed_through(case: RotationCase) -> None:
    before = case.current()
    token = driver.start_rotation(case.sm, case.arn)
    for step in driver.STEPS:
        case.handler(driver.event(case.arn, token, step, rotation_token="rotation-token-" + driver.new_token()), None)
    assert_rotated(case, before)


def test_attached_to_a_secret_with_extra_fields(harness: Harness, sm: Any) -> None:
    """A secret made for AWS's functions (or by RDS) keeps every field it had."""
    username, password = unique("legacy"), new_password()
    harness.create_user(username, password)
    doc = harness.secret(username, password, dbInstanceIdentifier="db-1", port=str(harness.info.port))
    arn = sm.create_secret(Name=unique("legacy"), SecretString=json.dumps(doc))["ARN"]
    driver.rotate(harness.make_handler(), sm, arn)
    after = json.loads(driver.value(sm, arn))
    assert after["dbInstanceIdentifier"] == "db-1"
    assert harness.logs_in(after["username"], after["password"])


@pytest.mark.parametrize(
    "username",
    ["we\"ird 'user'; DROP TABLE x; --", "Üñíçødé user", "user with  spaces", "back\\slash$1"],
)
def test_usernames_with_quotes_spaces_and_sql(harness: Harness, sm: Any, strategy: str, username: str) -> None:
    password = new_password()
    name = username[:40] + unique("")
    harness.create_user(name, password)
    extra = {}
    if strategy == "alternating-users":
        extra["masterarn"] = sm.create_secret(Name=unique("master"), SecretString=json.dumps(harness.master()))["ARN"]
    arn = sm.create_secret(Name=unique("odd"), SecretString=json.dumps(harness.secret(name, password, **extra)))["ARN"]
    handler = harness.make_handler()
    for _ in range(2):
        driver.rotate(handler, sm, arn)
        current = json.loads(driver.value(sm, arn))
        assert harness.logs_in(current["username"], current["password"])
    assert json.loads(driver.value(sm, arn))["username"] == name  # two rotations: back to the original user


# -- failures: a fault after every external call, then the whole rotation retried ----------
class InjectedFault(RuntimeError):
    pass


class FaultPlan:
    """Counts external calls (Secrets Manager API calls and engine operations) and raises
    InjectedFault right after the n-th one completes, while armed."""

    def __init__(self) -> None:
        self.armed_at: int | None = None
        self.calls = 0

    def tick(self) -> None:
        self.calls += 1
        if self.armed_at is not None and self.calls == self.armed_at:
            raise InjectedFault(f"fault injected after external call {self.calls}")


def instrument(case: RotationCase, plan: FaultPlan) -> None:
    client = case.handler.client
    client.meta.events.register("after-call.secrets-manager", lambda **_: plan.tick())
    engine = case.handler.rotation.engine  # type: ignore[attr-defined]
    for name in ("connect", "set_own_password", "set_password", "sync_clone", "check"):
        original = getattr(engine, name)

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            result = _original(*args, **kwargs)
            plan.tick()
            return result

        setattr(engine, name, wrapped)


def external_calls_per_step(harness: Harness, sm: Any, strategy: str) -> dict[str, int]:
    case = RotationCase(harness, sm, strategy)
    plan = FaultPlan()
    instrument(case, plan)
    token = driver.start_rotation(case.sm, case.arn)
    counts = {}
    for step in driver.STEPS:
        plan.calls = 0
        case.handler(driver.event(case.arn, token, step), None)
        counts[step] = plan.calls
    return counts


@pytest.mark.slow
def test_fault_after_every_external_call_then_retry(harness: Harness, sm: Any, strategy: str) -> None:
    counts = external_calls_per_step(harness, sm, strategy)
    injected = 0
    for step_index, step in enumerate(driver.STEPS):
        for n in range(1, counts[step] + 1):
            case = RotationCase(harness, sm, strategy)
            before = case.current()
            plan = FaultPlan()
            instrument(case, plan)
            token = driver.start_rotation(case.sm, case.arn)
            driver.run_steps(case.handler, case.arn, token, driver.STEPS[:step_index])
            plan.calls, plan.armed_at = 0, n
            with pytest.raises(InjectedFault):
                case.handler(driver.event(case.arn, token, step), None)
            injected += 1
            plan.armed_at = None
            # At every moment some stored version logs in.
            assert case.logs_in(case.current()) or case.logs_in(
                json.loads(driver.value(case.sm, case.arn, "AWSPENDING", token))
            ), f"lockout after a fault in {step} at call {n}"
            # Secrets Manager retries the whole rotation with the same token.
            driver.run_steps(case.handler, case.arn, token)
            assert_rotated(case, before)
    assert injected == sum(counts.values()) >= 8


# -- bad input: a clear error, and nothing changed ------------------------------------------
def snapshot(case: RotationCase) -> tuple[dict[str, list[str]], str]:
    return driver.stages(case.sm, case.arn), driver.value(case.sm, case.arn)


def test_rotation_disabled_is_refused(harness: Harness, sm: Any) -> None:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    arn = sm.create_secret(Name=unique("norot"), SecretString=json.dumps(harness.secret(username, password)))["ARN"]
    token = driver.new_token()
    sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="{}", VersionStages=["AWSPENDING"])
    with pytest.raises(EventError, match="rotation is not enabled"):
        harness.make_handler()(driver.event(arn, token, "createSecret"), None)
    assert harness.logs_in(username, password)


@pytest.mark.parametrize("step", driver.STEPS)
def test_foreign_token_is_refused(case: RotationCase, step: str) -> None:
    driver.start_rotation(case.sm, case.arn)
    before = snapshot(case)
    with pytest.raises(EventError, match="not a version of this secret"):
        case.handler(driver.event(case.arn, driver.new_token(), step), None)
    assert snapshot(case) == before
    assert case.logs_in(case.current())


def test_token_that_is_not_pending_is_refused(case: RotationCase) -> None:
    case.rotate()
    old = next(v for v, s in driver.stages(case.sm, case.arn).items() if "AWSPREVIOUS" in s)
    driver.start_rotation(case.sm, case.arn)
    before = snapshot(case)
    with pytest.raises(EventError, match="not staged AWSPENDING"):
        case.handler(driver.event(case.arn, old, "setSecret"), None)
    assert snapshot(case) == before


def test_current_token_is_a_successful_no_op(case: RotationCase) -> None:
    token = case.rotate()
    before = snapshot(case)
    for step in driver.STEPS:
        case.handler(driver.event(case.arn, token, step), None)
    assert snapshot(case) == before


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
    harness: Harness, sm: Any, change: dict[str, Any], message: str
) -> None:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    doc = {k: v for k, v in {**harness.secret(username, password), **change}.items() if v is not None}
    arn = sm.create_secret(Name=unique("bad"), SecretString=json.dumps(doc))["ARN"]
    token = driver.start_rotation(sm, arn)
    with pytest.raises(ConfigurationError, match=message) as info:
        harness.make_handler()(driver.event(arn, token, "createSecret"), None)
    assert password not in str(info.value)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        driver.value(sm, arn, "AWSPENDING", token)
    assert harness.logs_in(username, password)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PASSWORD_LENGTH": "0"}, "PASSWORD_LENGTH"),
        ({"EXCLUDE_CHARACTERS": "".join(map(chr, range(33, 127)))}, "no character"),
    ],
)
def test_invalid_password_settings_fail_create_before_anything_is_written(
    case: RotationCase, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    token = driver.start_rotation(case.sm, case.arn)
    with pytest.raises(ConfigurationError, match=message):
        case.handler(driver.event(case.arn, token, "createSecret"), None)
    with pytest.raises(case.sm.exceptions.ResourceNotFoundException):
        driver.value(case.sm, case.arn, "AWSPENDING", token)


def test_pending_secret_for_another_user_is_refused(case: RotationCase) -> None:
    """A tampered AWSPENDING (another user) must not get that user's password changed."""
    token = driver.start_rotation(case.sm, case.arn)
    victim, victim_password = unique("victim"), new_password()
    case.harness.create_user(victim, victim_password)
    tampered = {**case.current(), "username": victim, "password": new_password()}
    case.sm.put_secret_value(
        SecretId=case.arn, ClientRequestToken=token, SecretString=json.dumps(tampered), VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ConfigurationError, match="username"):
        case.handler(driver.event(case.arn, token, "setSecret"), None)
    assert case.harness.logs_in(victim, victim_password)


def test_wrong_current_password_is_an_authentication_error_naming_the_credentials(harness: Harness, sm: Any) -> None:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    doc = harness.secret(username, new_password())  # not the user's password
    arn = sm.create_secret(Name=unique("wrong"), SecretString=json.dumps(doc))["ARN"]
    handler = harness.make_handler()
    token = driver.start_rotation(sm, arn)
    handler(driver.event(arn, token, "createSecret"), None)
    with pytest.raises(AuthenticationError, match="neither the current, the pending nor the previous") as info:
        handler(driver.event(arn, token, "setSecret"), None)
    assert doc["password"] not in str(info.value)
    assert harness.logs_in(username, password)


def test_single_user_falls_back_to_the_previous_credential(harness: Harness, sm: Any) -> None:
    """AWSCURRENT was overwritten with a wrong password; AWSPREVIOUS still logs in."""
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    arn = sm.create_secret(Name=unique("prev"), SecretString=json.dumps(harness.secret(username, password)))["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(harness.secret(username, new_password())))
    handler = harness.make_handler()
    driver.rotate(handler, sm, arn)
    current = json.loads(driver.value(sm, arn))
    assert harness.logs_in(username, current["password"])
    assert not harness.logs_in(username, password)
