"""Staying within the request quotas, and counting what was asked.

Each operation the scan repeats gets its own rate (a token bucket shared by the threads that
call it), set below the service's quota for the account and Region:

- secretsmanager ListSecrets: 100 per second (What's New, Nov 2022); it is paginated, so
  called one page at a time anyway;
- secretsmanager GetResourcePolicy: 50 per second, combined with Put-, Delete- and
  ValidateResourcePolicy, not adjustable (Secrets Manager User Guide, "Secrets Manager
  quotas"); the audit takes 40, leaving room for deployments writing policies meanwhile;
- secretsmanager DescribeSecret: 10,000 per second combined with GetSecretValue (the same
  page; raised to 40,000 for DescribeSecret alone in March 2025);
- lambda GetFunctionConfiguration: the 15 per second of the control plane, and GetPolicy its
  own 15 (Lambda Developer Guide, "Lambda quotas"); called once per distinct function.

Throttling that still happens (other callers share the quotas) is retried by botocore's
adaptive mode, which also slows the client down (the clients are built with it).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rates:
    """Requests per second by operation (math.inf: no limit, e.g. against an emulator)."""

    list_secrets: float = 50.0
    get_resource_policy: float = 40.0
    describe_secret: float = 1000.0
    lambda_get_function: float = 10.0
    lambda_get_policy: float = 10.0
    workers: int = 16

    @classmethod
    def unlimited(cls, workers: int = 16) -> Rates:
        return cls(math.inf, math.inf, math.inf, math.inf, math.inf, workers)


class RateLimiter:
    """A token bucket: at most `rate` calls per second on average, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 0.0 if math.isinf(rate) else 1.0 / rate
        self.burst = max(1, burst)
        self.clock = clock
        self.sleep = sleep
        self._next = -math.inf  # the theoretical arrival time of the next call (GCRA)
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = self.clock()
            allowance = (self.burst - 1) * self.interval
            start = max(now, self._next - allowance)
            self._next = max(self._next, now) + self.interval
            wait = start - now
            self.waited += wait
        if wait > 0:
            self.sleep(wait)


class CallCounter:
    """API calls by operation ("secretsmanager:ListSecrets"), and HTTP attempts (retries included)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Callable[[], None]:
        """Count the client's calls until the returned function is called."""
        service = client.meta.service_model.service_name
        events = client.meta.events
        key = f"fleet-audit-{id(self)}"

        def before_call(model: Any, **_: Any) -> None:
            with self._lock:
                self.calls[f"{service}:{model.name}"] += 1

        def before_send(event_name: str = "", **_: Any) -> None:
            with self._lock:
                self.attempts[f"{service}:{event_name.rsplit('.', 1)[-1]}"] += 1

        events.register("before-call", before_call, unique_id=f"{key}-call")
        events.register("before-send", before_send, unique_id=f"{key}-send")

        def detach() -> None:
            events.unregister("before-call", unique_id=f"{key}-call")
            events.unregister("before-send", unique_id=f"{key}-send")

        return detach

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def retries(self) -> int:
        return max(0, sum(self.attempts.values()) - self.total)
