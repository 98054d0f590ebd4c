"""Throttling on every Secrets Manager call of a rotation, for every target and strategy.

Like the fault matrix (test_protocol.py), parametrized over every call: the n-th Secrets
Manager call of each step is answered ThrottlingException (the service's answer beyond a
quota, tests/support/throttling.py), and

- a few times: the step absorbs it (backoff, then the same call again) and the rotation
  completes in one pass, as if nothing happened;
- for good: the step retries within its time budget (the Lambda context's remaining time,
  on a clock that does not wait), then fails with a clear UnreachableError; at that moment
  some stored version still logs in, and when Secrets Manager retries the whole rotation
  with the same token, it converges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from rotation_core import UnreachableError
from rotation_core.budget import AFTER_THROTTLE_SECONDS, CLEAN_FAILURE_SECONDS
from tests.conftest import RotationCase
from tests.contract.test_protocol import assert_rotated
from tests.support import rotations
from tests.support.throttling import FakeClock, Throttler

ABSORBED = 3  # throttled answers in a row that a step absorbs


@dataclass
class LambdaContext:
    """What the handler reads of Lambda's context object: the invocation's time left."""

    clock: FakeClock
    deadline: float
    aws_request_id: str = "throttling-test"

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.deadline - self.clock.monotonic()) * 1000)


def instrumented(case: RotationCase) -> tuple[Throttler, FakeClock]:
    clock = FakeClock()
    case.handler.clock = clock
    return Throttler(case.handler.client), clock


def invoke(case: RotationCase, clock: FakeClock, token: str, step: str, seconds: float = 30.0) -> None:
    case.handler(rotations.event(case.arn, token, step), LambdaContext(clock, clock.monotonic() + seconds))


def pending_doc(case: RotationCase, token: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(rotations.value(case.sm, case.arn, "AWSPENDING", token)))
    except case.sm.exceptions.ResourceNotFoundException:
        return None


def calls_per_step(case: RotationCase) -> dict[str, int]:
    throttler, clock = instrumented(case)
    token = rotations.start_rotation(case.sm, case.arn)
    counts = {}
    for step in rotations.STEPS:
        throttler.arm(first=10**9, times=None)
        invoke(case, clock, token, step)
        counts[step] = throttler.requests
    return counts


@pytest.mark.slow
def test_throttling_of_every_call_is_absorbed(case: RotationCase) -> None:
    counts = calls_per_step(case)
    for index, step in enumerate(rotations.STEPS):
        for n in range(1, counts[step] + 1):
            case = RotationCase(case.target, case.sm, case.strategy)
            before = case.current()
            throttler, clock = instrumented(case)
            token = rotations.start_rotation(case.sm, case.arn)
            for earlier in rotations.STEPS[:index]:
                invoke(case, clock, token, earlier)
            throttler.arm(first=n, times=ABSORBED)
            invoke(case, clock, token, step)  # no error: absorbed
            assert throttler.answered == ABSORBED, f"{step}: call {n} was throttled {ABSORBED} times"
            assert len(set(throttler.operations[n - 1 : n + ABSORBED])) == 1, "the same call, retried"
            assert len(clock.slept) == ABSORBED, "a backoff before each retry"
            throttler.disarm()
            for later in rotations.STEPS[index + 1 :]:
                invoke(case, clock, token, later)
            assert_rotated(case, before)


@pytest.mark.slow
def test_throttling_beyond_the_time_budget_fails_the_step_cleanly_and_the_retry_converges(
    case: RotationCase,
) -> None:
    counts = calls_per_step(case)
    for index, step in enumerate(rotations.STEPS):
        for n in range(1, counts[step] + 1):
            case = RotationCase(case.target, case.sm, case.strategy)
            before = case.current()
            throttler, clock = instrumented(case)
            token = rotations.start_rotation(case.sm, case.arn)
            for earlier in rotations.STEPS[:index]:
                invoke(case, clock, token, earlier)
            throttler.arm(first=n, times=None)
            started = clock.monotonic()
            with pytest.raises(UnreachableError, match=r"Secrets Manager throttled \w+ \d+ times in a row"):
                invoke(case, clock, token, step)
            throttler.disarm()
            assert throttler.answered > 2, "retried before giving up"
            spent = clock.monotonic() - started
            assert spent <= 30.0 - CLEAN_FAILURE_SECONDS - AFTER_THROTTLE_SECONDS, "within the step's budget"
            # At every moment some stored version logs in.
            pending = pending_doc(case, token)
            assert case.works(case.current()) or (pending is not None and case.works(pending)), (
                f"lockout after throttling in {step} at call {n}"
            )
            # Secrets Manager retries the whole rotation with the same token.
            for again in rotations.STEPS:
                invoke(case, clock, token, again)
            assert_rotated(case, before)


def test_a_short_invocation_gives_up_sooner(case: RotationCase) -> None:
    """The budget is the Lambda context's remaining time: with 12 s left, the step stops
    retrying after fewer attempts than with 30 s, and still within those 12 s."""
    attempts = {}
    for seconds in (30.0, 12.0):
        case = RotationCase(case.target, case.sm, case.strategy)
        throttler, clock = instrumented(case)
        token = rotations.start_rotation(case.sm, case.arn)
        throttler.arm(first=1, times=None)
        started = clock.monotonic()
        with pytest.raises(UnreachableError, match="throttled"):
            invoke(case, clock, token, "createSecret", seconds)
        assert clock.monotonic() - started <= seconds - CLEAN_FAILURE_SECONDS - AFTER_THROTTLE_SECONDS
        attempts[seconds] = throttler.answered
        assert rotations.stuck_pending(case.sm, case.arn) == [token]
        assert case.works(case.current())
    assert attempts[12.0] < attempts[30.0]
