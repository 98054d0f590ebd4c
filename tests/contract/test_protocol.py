"""The protocol contract every rotation function meets, for each of its strategies.

Parametrized over every target (tests/engines.py: databases, API key providers) and its
strategies, so a new function gets this whole suite by registering its target.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotation_core import EventError
from tests.conftest import RotationCase
from tests.support import rotations


def assert_rotated(case: RotationCase, before: dict[str, Any]) -> dict[str, Any]:
    after = case.current()
    assert after != before
    assert case.works(after), "the new AWSCURRENT credential works"
    previous = json.loads(rotations.value(case.sm, case.arn, "AWSPREVIOUS"))
    assert previous == before, "AWSPREVIOUS holds what AWSCURRENT held"
    assert rotations.stuck_pending(case.sm, case.arn) == [], "no AWSPENDING left on a version that is not current"
    case.target.check_rotated(case.strategy, before, after)
    return after


def test_full_rotation(case: RotationCase) -> None:
    before = case.current()
    token = case.rotate()
    assert_rotated(case, before)
    assert "AWSCURRENT" in rotations.stages(case.sm, case.arn)[token]


def test_three_rotations_in_a_row(case: RotationCase) -> None:
    seen = []
    for _ in range(3):
        before = case.current()
        case.rotate()
        seen.append(json.dumps(assert_rotated(case, before), sort_keys=True))
    assert len(set(seen)) == 3


def test_each_step_twice_converges(case: RotationCase) -> None:
    before = case.current()
    token = rotations.start_rotation(case.sm, case.arn)
    for step in rotations.STEPS:
        case.handler(rotations.event(case.arn, token, step), None)
        case.handler(rotations.event(case.arn, token, step), None)
    assert_rotated(case, before)


def test_rotation_token_is_passed_through(case: RotationCase) -> None:
    before = case.current()
    token = rotations.start_rotation(case.sm, case.arn)
    for step in rotations.STEPS:
        case.handler(
            rotations.event(case.arn, token, step, rotation_token="rotation-token-" + rotations.new_token()), None
        )
    assert_rotated(case, before)


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


def instrument(case: RotationCase, plan: FaultPlan) -> pytest.MonkeyPatch:
    """Count every external call of the case's handler; undo() the returned patches before
    instrumenting again (fault points may be module functions: statements, one by one)."""
    client = case.handler.client
    client.meta.events.register("after-call.secrets-manager", lambda **_: plan.tick())
    patches = pytest.MonkeyPatch()
    for owner, name in case.target.fault_points(case.handler):
        original = getattr(owner, name)

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            result = _original(*args, **kwargs)
            plan.tick()
            return result

        patches.setattr(owner, name, wrapped)
    return patches


def external_calls_per_step(case: RotationCase) -> dict[str, int]:
    plan = FaultPlan()
    patches = instrument(case, plan)
    try:
        token = rotations.start_rotation(case.sm, case.arn)
        counts = {}
        for step in rotations.STEPS:
            plan.calls = 0
            case.handler(rotations.event(case.arn, token, step), None)
            counts[step] = plan.calls
    finally:
        patches.undo()
    return counts


@pytest.mark.slow
def test_fault_after_every_external_call_then_retry(case: RotationCase) -> None:
    counts = external_calls_per_step(case)
    injected = 0
    for step_index, step in enumerate(rotations.STEPS):
        for n in range(1, counts[step] + 1):
            case = RotationCase(case.target, case.sm, case.strategy)
            before = case.current()
            plan = FaultPlan()
            patches = instrument(case, plan)
            try:
                token = rotations.start_rotation(case.sm, case.arn)
                rotations.run_steps(case.handler, case.arn, token, rotations.STEPS[:step_index])
                plan.calls, plan.armed_at = 0, n
                with pytest.raises(InjectedFault):
                    case.handler(rotations.event(case.arn, token, step), None)
                injected += 1
            finally:
                plan.armed_at = None
                patches.undo()
            # At every moment some stored version logs in.
            assert case.works(case.current()) or case.works(
                json.loads(rotations.value(case.sm, case.arn, "AWSPENDING", token))
            ), f"lockout after a fault in {step} at call {n}"
            # Secrets Manager retries the whole rotation with the same token.
            rotations.run_steps(case.handler, case.arn, token)
            assert_rotated(case, before)
    assert injected == sum(counts.values()) >= 8


# -- bad input: a clear error, and nothing changed ------------------------------------------
def snapshot(case: RotationCase) -> tuple[dict[str, list[str]], str]:
    return rotations.stages(case.sm, case.arn), rotations.value(case.sm, case.arn)


def test_rotation_disabled_is_refused(case: RotationCase) -> None:
    """The steps that write, to Secrets Manager (createSecret: AWSPENDING; finishSecret:
    AWSCURRENT) or to the target (setSecret), run only when rotation is enabled (DescribeSecret).
    testSecret only logs in: its guard is the read of the token's AWSPENDING version."""
    token = rotations.new_token()
    case.sm.put_secret_value(
        SecretId=case.arn, ClientRequestToken=token, SecretString="{}", VersionStages=["AWSPENDING"]
    )
    before = snapshot(case)
    for step in ("createSecret", "setSecret", "finishSecret"):
        with pytest.raises(EventError, match="rotation is not enabled"):
            case.handler(rotations.event(case.arn, token, step), None)
    assert snapshot(case) == before
    assert case.works(case.initial)


def test_a_rotation_turned_off_halfway_leaves_the_target_alone(case: RotationCase) -> None:
    """createSecret stored the next credential, then rotation was turned off (CancelRotateSecret
    leaves AWSPENDING in place). finishSecret would refuse to move AWSCURRENT: setSecret must
    refuse too, or the target would hold a password AWSCURRENT does not."""
    token = rotations.start_rotation(case.sm, case.arn)
    case.handler(rotations.event(case.arn, token, "createSecret"), None)
    case.sm.cancel_rotate_secret(SecretId=case.arn)
    before = snapshot(case)
    with pytest.raises(EventError, match="rotation is not enabled"):
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    assert snapshot(case) == before
    assert case.works(case.current()), "AWSCURRENT still logs in"
    if case.username is not None:  # a database user: its password never changed
        pending = json.loads(case.sm.get_secret_value(SecretId=case.arn, VersionId=token)["SecretString"])
        assert pending["username"] != case.username or not case.works(pending), "the target learnt the pending password"


@pytest.mark.parametrize("step", rotations.STEPS)
def test_foreign_token_is_refused(case: RotationCase, step: str) -> None:
    rotations.start_rotation(case.sm, case.arn)
    before = snapshot(case)
    with pytest.raises(EventError, match="not a version of this secret"):
        case.handler(rotations.event(case.arn, rotations.new_token(), step), None)
    assert snapshot(case) == before
    assert case.works(case.current())


def test_token_that_is_not_pending_is_refused(case: RotationCase) -> None:
    case.rotate()
    old = next(v for v, s in rotations.stages(case.sm, case.arn).items() if "AWSPREVIOUS" in s)
    rotations.start_rotation(case.sm, case.arn)
    before = snapshot(case)
    with pytest.raises(EventError, match="not staged AWSPENDING"):
        case.handler(rotations.event(case.arn, old, "setSecret"), None)
    assert snapshot(case) == before


def test_current_token_is_a_successful_no_op(case: RotationCase) -> None:
    token = case.rotate()
    before = snapshot(case)
    for step in rotations.STEPS:
        case.handler(rotations.event(case.arn, token, step), None)
    assert snapshot(case) == before
