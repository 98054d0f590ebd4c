"""The time one step may take, and how it waits before retrying a throttled call.

A step gets the time Lambda gives the invocation (the context's remaining time; without a
context, as from the command line or the tests, the function's own 30 s timeout), less a
moment kept to fail cleanly: log the error and return it to Secrets Manager before Lambda
stops the process. Retries of throttled calls (Secrets Manager's ThrottlingException, an
HTTP provider's 429) wait with exponential backoff and full jitter, and only while the
step keeps enough of its time for what follows the call.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

#: the step's time when no Lambda context says (template.yaml: Timeout 30)
DEFAULT_STEP_SECONDS = 30.0
#: kept at the end of the step to fail cleanly (log, metrics, the error to Secrets Manager)
CLEAN_FAILURE_SECONDS = 2.0
#: a throttled Secrets Manager call is retried only if this much of the step remains after
#: the wait: the call itself and what the step does after it (its database or provider work)
AFTER_THROTTLE_SECONDS = 8.0
#: backoff: a random wait between 0 and min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
#: ("full jitter", as AWS's SDKs do), so that a fleet of throttled functions spreads out
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0


class Clock:
    """Time as a step sees it. Tests give one whose sleep() only moves the clock on."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def jitter(self) -> float:
        return random.random()  # noqa: S311 - spreads retries in time; nothing secret depends on it


@dataclass
class Budget:
    """The end of one step's time, on its clock."""

    clock: Clock
    deadline: float
    #: throttled calls this step retried (Secrets Manager), for the logs and the tests
    throttled: list[str] = field(default_factory=list)

    @classmethod
    def for_invocation(cls, clock: Clock, context: object = None) -> Budget:
        seconds = DEFAULT_STEP_SECONDS
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            try:
                seconds = float(remaining()) / 1000
            except (TypeError, ValueError):
                seconds = DEFAULT_STEP_SECONDS
        return cls(clock, clock.monotonic() + seconds - CLEAN_FAILURE_SECONDS)

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock.monotonic())

    def backoff(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1, 2, ...)."""
        return float(self.clock.jitter() * min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1)))

    def allows(self, wait: float, after: float = AFTER_THROTTLE_SECONDS) -> bool:
        """Whether waiting `wait` seconds still leaves `after` seconds of the step."""
        return wait + after <= self.remaining()
