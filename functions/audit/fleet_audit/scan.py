"""One pass over a Region's secrets: the calls, paced and concurrent, then the checks.

ListSecrets (100 per page) carries nearly everything: rotation configuration and dates,
versions and their stages, tags, key, owning service, primary Region. Beyond it, and only
where a check that runs needs it:

- GetResourcePolicy, once per secret (public-policy, cross-account-policy): no listing says
  whether a secret has a policy;
- lambda GetFunctionConfiguration and GetPolicy, once per distinct rotation function;
- DescribeSecret, once per primary secret, only when the policy asks for replicas
  (ReplicationStatus is not in ListSecrets).

The extra calls start while the next page is being listed, from a thread pool, each
operation paced by its own RateLimiter (fleet_audit.throttle). Nothing here reads a value.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleet_audit.checks import Fetched, evaluate, function_to_read, is_replica, needs_replication, needs_resource_policy
from fleet_audit.model import Finding
from fleet_audit.policy import Policy
from fleet_audit.rotation_function import FunctionFacts, error_code, error_text, fetch
from fleet_audit.throttle import CallCounter, RateLimiter, Rates

PAGE_SIZE = 100  # ListSecrets' maximum MaxResults


class Progress(Protocol):
    def listed(self, label: str, secrets: int, to_read: int) -> None: ...

    def read(self, label: str) -> None: ...


class _Silent:
    def listed(self, label: str, secrets: int, to_read: int) -> None:
        del label, secrets, to_read

    def read(self, label: str) -> None:
        del label


@dataclass
class Target:
    """One account and Region to audit, with its clients (built by the caller), or a function
    building them when the target's turn comes (assuming a role, for instance)."""

    region: str
    secretsmanager: Any = None
    lambda_: Any = None
    label: str = ""  # how the account is named in messages (the role assumed, or empty)
    connect: Callable[[], tuple[Any, Any]] | None = None  # -> (secretsmanager, lambda)

    def clients(self) -> tuple[Any, Any]:
        if self.connect is not None:
            self.secretsmanager, self.lambda_ = self.connect()
            self.connect = None
        return self.secretsmanager, self.lambda_


@dataclass
class TargetResult:
    region: str
    label: str
    account: str | None = None
    secrets: int = 0
    replicas: int = 0
    managed: int = 0
    deleted: int = 0
    findings: list[Finding] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    error: str | None = None  # the Region could not be listed
    seconds: float = 0.0

    @property
    def where(self) -> str:
        return f"{self.label} {self.region}".strip()


class _Pacer:
    def __init__(self, rates: Rates) -> None:
        self.limiters = {
            "ListSecrets": RateLimiter(rates.list_secrets),
            "GetResourcePolicy": RateLimiter(rates.get_resource_policy),
            "DescribeSecret": RateLimiter(rates.describe_secret),
            "GetFunctionConfiguration": RateLimiter(rates.lambda_get_function),
            "GetPolicy": RateLimiter(rates.lambda_get_policy),
        }

    def __call__(self, operation: str) -> None:
        self.limiters[operation].acquire()


def _read_policy(client: Any, pace: _Pacer, arn: str) -> tuple[dict[str, Any] | None, str | None]:
    pace("GetResourcePolicy")
    try:
        text = client.get_resource_policy(SecretId=arn).get("ResourcePolicy")
    except Exception as exc:  # noqa: BLE001 - reported as not evaluated
        if error_code(exc) == "ResourceNotFoundException":  # deleted meanwhile
            return None, None
        return None, error_text(exc)
    if not text:
        return None, None
    try:
        doc = json.loads(text)
    except ValueError:
        return None, "the resource policy is not JSON"
    return (doc, None) if isinstance(doc, dict) else (None, "the resource policy is not a JSON object")


def _read_replication(client: Any, pace: _Pacer, arn: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    pace("DescribeSecret")
    try:
        described = client.describe_secret(SecretId=arn)
    except Exception as exc:  # noqa: BLE001
        return None, error_text(exc)
    return list(described.get("ReplicationStatus") or []), None


def _read_function(client: Any, pace: _Pacer, arn: str) -> FunctionFacts:
    return fetch(client, arn, pace=pace)


class _Scan:
    """The calls of one target: pages listed in turn, extra reads in the pool as pages arrive."""

    def __init__(self, target: Target, policy: Policy, rates: Rates, progress: Progress) -> None:
        self.sm, self.lambda_client = target.clients()
        self.region = target.region
        self.policy = policy
        self.pace = _Pacer(rates)
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=rates.workers, thread_name_prefix="fleet-audit")
        self.entries: list[dict[str, Any]] = []
        self.policies: dict[int, Future[tuple[dict[str, Any] | None, str | None]]] = {}
        self.replication: dict[int, Future[tuple[list[dict[str, Any]] | None, str | None]]] = {}
        self.functions: dict[str, Future[FunctionFacts]] = {}
        self.label = f"{target.label} {target.region}".strip()

    def _submit(self, future: Future[Any]) -> None:
        future.add_done_callback(lambda _f: self.progress.read(self.label))

    def _queue(self, index: int, entry: dict[str, Any]) -> None:
        arn = str(entry.get("ARN"))
        if needs_resource_policy(entry, self.region, self.policy):
            self.policies[index] = self.pool.submit(_read_policy, self.sm, self.pace, arn)
            self._submit(self.policies[index])
        if needs_replication(entry, self.region, self.policy):
            self.replication[index] = self.pool.submit(_read_replication, self.sm, self.pace, arn)
            self._submit(self.replication[index])
        function = function_to_read(entry, self.region, self.policy)
        if function and function not in self.functions:
            self.functions[function] = self.pool.submit(_read_function, self.lambda_client, self.pace, function)
            self._submit(self.functions[function])

    def list_all(self) -> None:
        token: str | None = None
        while True:
            self.pace("ListSecrets")
            kwargs: dict[str, Any] = {"MaxResults": PAGE_SIZE, "IncludePlannedDeletion": True}
            if token:
                kwargs["NextToken"] = token
            page = self.sm.list_secrets(**kwargs)
            for entry in page.get("SecretList", []):
                self.entries.append(entry)
                self._queue(len(self.entries) - 1, entry)
            to_read = len(self.policies) + len(self.replication) + len(self.functions)
            self.progress.listed(self.label, len(self.entries), to_read)
            token = page.get("NextToken")
            if not token:
                return

    def fetched(self, index: int, entry: dict[str, Any]) -> Fetched:
        fetched = Fetched()
        if index in self.policies:
            fetched.resource_policy, fetched.policy_error = self.policies[index].result()
        if index in self.replication:
            fetched.replication, fetched.replication_error = self.replication[index].result()
        function = function_to_read(entry, self.region, self.policy)
        if function:
            fetched.function = self.functions[function].result()
        return fetched


def audit_target(
    target: Target,
    policy: Policy,
    *,
    now: dt.datetime | None = None,
    rates: Rates | None = None,
    progress: Progress | None = None,
) -> TargetResult:
    """Audit one account and Region. An error listing the secrets (access denied, a Region not
    enabled) is raised: the caller decides whether the whole audit fails."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    scan = _Scan(target, policy, rates or Rates(), progress or _Silent())
    counter = CallCounter()
    detach = [counter.attach(scan.sm), counter.attach(scan.lambda_client)]
    result = TargetResult(target.region, target.label)
    try:
        scan.list_all()
        for index, entry in enumerate(scan.entries):
            fetched = scan.fetched(index, entry)
            result.findings.extend(evaluate(entry, fetched, policy, region=target.region, now=now))
            _tally(result, entry, target.region)
    finally:
        scan.pool.shutdown(wait=True, cancel_futures=True)
        for undo in detach:
            undo()
        result.calls = counter.calls
        result.attempts = counter.attempts
        result.seconds = time.perf_counter() - started
    return result


def _tally(result: TargetResult, entry: dict[str, Any], region: str) -> None:
    result.secrets += 1
    if result.account is None:
        parts = str(entry.get("ARN", "")).split(":")
        result.account = parts[4] if len(parts) > 5 else None
    if entry.get("DeletedDate") is not None:
        result.deleted += 1
    elif is_replica(entry, region):
        result.replicas += 1
    elif entry.get("OwningService"):
        result.managed += 1
