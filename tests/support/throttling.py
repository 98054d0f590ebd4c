"""Secrets Manager's throttling, as the function's client receives it, and a clock to wait on.

ThrottlingException is what the service answers beyond a quota: HTTP 400, the JSON error
shape of the awsJson1_1 protocol (`__type` names the error), which botocore turns into a
ClientError with that code. Throttler answers it to chosen requests of a client, before
they leave (botocore's before-send event: the answer is parsed as a real one). FakeClock
lets the function's backoff run without waiting: its sleep() only moves the clock on, so a
step's time budget (rotation_core.budget) runs out in virtual time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse

from rotation_core.budget import Clock

THROTTLED_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
THROTTLED_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000",
}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def throttled_response(url: str) -> AWSResponse:
    return AWSResponse(url, 400, dict(THROTTLED_HEADERS), _Body(THROTTLED_BODY))


class Throttler:
    """Counts the requests a client sends; while armed, answers ThrottlingException to
    requests number `first` to `first + times - 1` (times=None: every one from `first`).
    The function retries a throttled call at once after its backoff, so `times`
    consecutive requests are one call and its retries."""

    def __init__(self, client: Any) -> None:
        self.requests = 0
        self.first: int | None = None
        self.times: int | None = None
        self.answered = 0
        self.operations: list[str] = []
        client.meta.events.register("before-send.secrets-manager", self._before_send)

    def arm(self, first: int, times: int | None) -> None:
        self.requests, self.first, self.times, self.answered = 0, first, times, 0
        self.operations = []

    def disarm(self) -> None:
        self.first = None

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        self.requests += 1
        target = request.headers.get("X-Amz-Target", b"")
        self.operations.append((target.decode() if isinstance(target, bytes) else str(target)).split(".")[-1])
        if self.first is None or self.requests < self.first:
            return None
        if self.times is not None and self.requests >= self.first + self.times:
            return None
        self.answered += 1
        return throttled_response(request.url)


class FakeClock(Clock):
    """Virtual time: sleep() moves it on; jitter() is 1 (the longest wait backoff allows)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def jitter(self) -> float:
        return 1.0
