"""moto's Secrets Manager behind the request quotas the service documents (`make bench`'s
fleet benchmark, bench/fleet.py, and the tests of the throttling it causes).

A WSGI layer in front of moto's own application, in moto's process: every request names its
operation (the X-Amz-Target header of the awsJson1_1 protocol); beyond the rate of its quota
the request is answered as the service answers it, HTTP 400 with the JSON error shape
botocore reads (`{"__type": "ThrottlingException", ...}`), and never reaches moto.

The rates, per account and Region (AWS Secrets Manager User Guide, "AWS Secrets Manager
quotas", https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html):

- DescribeSecret and GetSecretValue, combined: 10,000 per second (an announcement of
  March 2025 raised DescribeSecret to 40,000 of its own; the combined figure is the stricter);
- PutSecretValue, UpdateSecret, UpdateSecretVersionStage and the replication operations,
  combined: 50 per second (the quota a rotation meets first: 2 of its calls);
- RotateSecret and CancelRotateSecret, combined: 50 per second;
- BatchGetSecretValue 100 and ListSecrets 100 per second; the resource-policy operations,
  TagResource/UntagResource, RestoreSecret: 50 per second each group.
- Any other operation (ListSecretVersionIds, CreateSecret...): 50 per second, an assumption
  (the page read here names no rate for them).

Each quota is a token bucket holding one second of its rate: a burst of that size passes,
and then the rate. `scale` multiplies every rate (below 1: an account whose other
workloads use part of the quotas).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

WRITES = ("writes", 50.0)
QUOTAS: dict[str, tuple[str, float]] = {
    "GetSecretValue": ("reads", 10_000.0),
    "DescribeSecret": ("reads", 10_000.0),
    "PutSecretValue": WRITES,
    "UpdateSecret": WRITES,
    "UpdateSecretVersionStage": WRITES,
    "RemoveRegionsFromReplication": WRITES,
    "ReplicateSecretToRegion": WRITES,
    "StopReplicationToReplica": WRITES,
    "RotateSecret": ("rotate", 50.0),
    "CancelRotateSecret": ("rotate", 50.0),
    "BatchGetSecretValue": ("batch reads", 100.0),
    "ListSecrets": ("list", 100.0),
    "DeleteResourcePolicy": ("policies", 50.0),
    "GetResourcePolicy": ("policies", 50.0),
    "PutResourcePolicy": ("policies", 50.0),
    "ValidateResourcePolicy": ("policies", 50.0),
    "TagResource": ("tags", 50.0),
    "UntagResource": ("tags", 50.0),
    "RestoreSecret": ("restore", 50.0),
}
OTHER = ("other (assumed)", 50.0)
THROTTLED_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()


@dataclass
class Bucket:
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class GateStats:
    passed: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    #: requests let through per quota group and whole second (the peak rate)
    per_second: Counter[tuple[str, int]] = field(default_factory=Counter)

    def peak(self, group: str) -> int:
        return max((n for (g, _), n in self.per_second.items() if g == group), default=0)


class QuotaGate:
    """The WSGI application: quotas in front of `app` (moto's)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], scale: float = 1.0) -> None:
        self.app = app
        self.scale = scale
        self.stats = GateStats()
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    @staticmethod
    def quota(operation: str) -> tuple[str, float]:
        return QUOTAS.get(operation, OTHER)

    def admit(self, operation: str, now: float | None = None) -> bool:
        group, rate = self.quota(operation)
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(group)
            if bucket is None:
                bucket = self._buckets[group] = Bucket(rate * self.scale, rate * self.scale, now)
            if bucket.take(now):
                self.stats.passed[operation] += 1
                self.stats.per_second[(group, int(now))] += 1
                return True
            self.stats.throttled[operation] += 1
            return False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        operation = target.rsplit(".", 1)[-1] if target.startswith("secretsmanager.") else ""
        if operation and not self.admit(operation):
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Content-Length", str(len(THROTTLED_BODY))),
                    ("x-amzn-RequestId", str(uuid.uuid4())),
                ],
            )
            return [THROTTLED_BODY]
        return self.app(environ, start_response)


class QuotaGateServer:
    """moto's server application behind a QuotaGate, on its own port, in a thread. It
    shares moto's backends with every other moto server of the process (a
    ThreadedMotoServer beside it answers without quotas: setting up, checking)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, scale: float = 1.0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self.gate = QuotaGate(DomainDispatcherApplication(create_backend_app), scale)
        self._server: BaseWSGIServer = make_server(
            host, port, self.gate, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> QuotaGateServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
