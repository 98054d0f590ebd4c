"""Secrets Manager's four-step rotation protocol, written once for every engine.

This is the only module that talks to Secrets Manager. It validates the event, then checks
the secret's state before the step acts, reading and writing versions by explicit stage and
version id only. Every step can run again, or after a failure of any earlier step, and
converges. What each step reads (single user: 9 calls per rotation; docs/performance.md):

- createSecret (writes AWSPENDING): DescribeSecret, so that it runs only when rotation is
  enabled and the token is this secret's AWSPENDING version (already AWSCURRENT: nothing
  to do); then the rotation builds the next credential from AWSCURRENT and PutSecretValue
  stores it with the token, before the target ever learns it. The pending value is not
  read first: PutSecretValue with a ClientRequestToken is idempotent for the same value and
  refuses a different one (ResourceExistsException) when the version already has a value,
  so a second createSecret keeps the first one's value, as reading it first would
  (PutSecretValue, ClientRequestToken, in the Secrets Manager API reference). A rotation
  whose create() acts outside the function (issuing an API key) reads the pending value
  itself first (ctx.pending_if_any) and returns it: nothing is stored again.
- setSecret / testSecret (delegated to the rotation: strategy + engine): setSecret changes
  the target, so it runs only after DescribeSecret's checks (rotation enabled, the token this
  secret's AWSPENDING version), like the steps that write to Secrets Manager: a rotation
  turned off halfway must not leave the target on a password AWSCURRENT does not hold.
  testSecret only logs in, and describes nothing. Both read the pending value with one
  GetSecretValue of the token's version by VersionId and VersionStage AWSPENDING (the
  service answers only when both name the same version of this secret: a token of another
  secret, or a version no longer AWSPENDING, is refused), which also returns the version's
  stages (already AWSCURRENT: nothing to do). When that read fails, one DescribeSecret
  tells why, with the same checks as createSecret.
- finishSecret (moves AWSCURRENT): DescribeSecret, the same checks, then AWSCURRENT moves
  to the token's version from the version that holds it, then the rotation's work after the
  move (finished). Invoked again once the token is AWSCURRENT (a retry after that work
  failed), it runs only already_finished, so that work after the move (revoking an old API
  key) is retried too.

Throttling: a Secrets Manager call answered ThrottlingException (or another throttling
code, or a transient failure: 5xx, a broken connection) is retried with backoff while the
step's time budget allows (rotation_core.budget: the Lambda context's remaining time), then
the step fails with UnreachableError, having written nothing more, and Secrets Manager
retries the rotation. Quotas: docs/performance.md.
"""

from __future__ import annotations

import abc
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.data_classes import SecretsManagerEvent

from rotation_core import settings as config
from rotation_core.budget import Budget, Clock
from rotation_core.errors import ConfigurationError, EventError, RotationError, UnreachableError, aws_error_code
from rotation_core.memo import Memo
from rotation_core.observability import logger, record_step, traced

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
#: answers that mean "too many requests" (botocore's list, less the quota errors that no
#: wait cures, such as LimitExceededException: too many versions)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
#: transient failures, retried as botocore's standard mode retries them
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RotationEvent:
    step: str
    secret_id: str
    token: str
    rotation_token: str | None = field(default=None, repr=False)


def parse_event(raw: object) -> RotationEvent:
    if not isinstance(raw, Mapping):
        raise EventError("the event must be a JSON object with Step, SecretId and ClientRequestToken")
    event = SecretsManagerEvent(dict(raw))
    for name in ("Step", "SecretId", "ClientRequestToken"):
        value = event.get(name)
        if value is None:
            raise EventError(f"the event is missing the field '{name}'")
        if not isinstance(value, str) or not value.strip():
            raise EventError(f"field '{name}' of the event must be a non-empty string")
    if event.step not in STEPS:
        raise EventError(f"field 'Step' of the event must be one of: {', '.join(STEPS)}")
    if not 32 <= len(event.client_request_token) <= 64:
        raise EventError("field 'ClientRequestToken' of the event must be 32 to 64 characters long")
    rotation_token = event.get("RotationToken")
    if rotation_token is not None and not isinstance(rotation_token, str):
        raise EventError("field 'RotationToken' of the event must be a string")
    return RotationEvent(event.step, event.secret_id, event.client_request_token, rotation_token or None)


@dataclass(frozen=True)
class SecretMetadata:
    arn: str
    rotation_enabled: bool
    versions: Mapping[str, tuple[str, ...]]
    tags: Mapping[str, str] = field(default_factory=dict)

    def holding(self, stage: str) -> str | None:
        return next((v for v, stages in self.versions.items() if stage in stages), None)


@dataclass(frozen=True)
class Version:
    """One version as GetSecretValue returns it."""

    arn: str
    version_id: str
    stages: tuple[str, ...]
    text: str = field(repr=False)


error_code = aws_error_code


def _retry_kind(exc: BaseException) -> str | None:
    """'throttled', 'transient' or None (not worth a retry)."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as AwsConnectionError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in THROTTLING_CODES:
            return "throttled"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
            return "transient"
        return None
    if isinstance(exc, HTTPClientError | AwsConnectionError):
        return "transient"
    return None


class SecretsStore:
    """The Secrets Manager calls a rotation makes, and nothing else. Each call is retried
    when throttled (or after a transient failure) while the step's budget allows."""

    def __init__(self, client: SecretsManagerClient, budget: Budget | None = None) -> None:
        self._client = client
        self.budget = budget or Budget.for_invocation(Clock())

    def _call(self, operation: str, **kwargs: Any) -> Any:
        method = getattr(self._client, operation)
        attempt = 0
        while True:
            try:
                return method(**kwargs)
            except Exception as exc:
                kind = _retry_kind(exc)
                if kind is None:
                    raise
                attempt += 1
                wait = self.budget.backoff(attempt)
                mapping = getattr(getattr(self._client, "meta", None), "method_to_api_mapping", {})
                name = str(mapping.get(operation, operation))
                if not self.budget.allows(wait):
                    if kind == "throttled":
                        raise UnreachableError(
                            f"Secrets Manager throttled {name} {attempt} times in a row ({error_code(exc)}): the step "
                            "stops within its time budget, having changed nothing more, and Secrets Manager retries "
                            "the rotation (quotas: docs/performance.md)"
                        ) from None
                    raise
                if kind == "throttled":
                    self.budget.throttled.append(name)
                logger.warning(
                    "Secrets Manager call retried",
                    extra={"operation": name, "reason": kind, "attempt": attempt, "wait_ms": round(wait * 1000)},
                )
                self.budget.clock.sleep(wait)

    def describe(self, secret_id: str) -> SecretMetadata:
        meta = self._call("describe_secret", SecretId=secret_id)
        versions = {v: tuple(stages) for v, stages in meta.get("VersionIdsToStages", {}).items()}
        tags = {t["Key"]: t.get("Value", "") for t in meta.get("Tags", []) if "Key" in t}
        return SecretMetadata(meta["ARN"], bool(meta.get("RotationEnabled", False)), versions, tags)

    def read(self, secret_id: str, stage: str | None, version_id: str | None = None) -> Version | None:
        """That version (by stage, id, or both: then the service checks that they agree), or
        None when it has no value or does not exist."""
        kwargs: dict[str, Any] = {"SecretId": secret_id}
        if stage is not None:
            kwargs["VersionStage"] = stage
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            value = self._call("get_secret_value", **kwargs)
        except self._client.exceptions.ResourceNotFoundException:
            return None
        text = value.get("SecretString")
        if text is None:
            raise ConfigurationError(f"the secret's {stage} version is binary; only SecretString secrets are supported")
        return Version(value["ARN"], value["VersionId"], tuple(value.get("VersionStages", ())), text)

    def get(self, secret_id: str, stage: str | None, version_id: str | None = None) -> str | None:
        """The SecretString at that stage (and version), or None when that version has no value."""
        version = self.read(secret_id, stage, version_id)
        return None if version is None else version.text

    def unlabelled_versions(self, secret_id: str, limit: int) -> list[str]:
        """Ids of the newest versions that carry no staging label (an abandoned rotation's
        AWSPENDING, once the label moved on), newest first."""
        listed = self._call("list_secret_version_ids", SecretId=secret_id, IncludeDeprecated=True, MaxResults=20)
        orphans = [v for v in listed.get("Versions", []) if not v.get("VersionStages")]
        orphans.sort(key=lambda v: v.get("CreatedDate") or 0, reverse=True)
        return [v["VersionId"] for v in orphans[:limit]]

    def put_pending(self, secret_id: str, token: str, text: str, rotation_token: str | None) -> bool:
        """Store text as the token's AWSPENDING version. False when that version already
        holds another value (kept: a version is never modified; ResourceExistsException)."""
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "ClientRequestToken": token,
            "SecretString": text,
            "VersionStages": [PENDING],
        }
        if rotation_token:
            kwargs["RotationToken"] = rotation_token
        try:
            self._call("put_secret_value", **kwargs)
        except self._client.exceptions.ResourceExistsException:
            return False
        return True

    def move_current(self, secret_id: str, to_version: str, from_version: str | None) -> None:
        kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": CURRENT, "MoveToVersionId": to_version}
        if from_version is not None:
            kwargs["RemoveFromVersionId"] = from_version
        self._call("update_secret_version_stage", **kwargs)


class StepContext:
    """What a rotation may read during a step: the secret's versions, fetched on demand
    (each at most once), other secrets by ARN (the master secret), and the configuration.

    `meta` (DescribeSecret) is known in createSecret and finishSecret only; `arn` always."""

    def __init__(
        self,
        store: SecretsStore,
        event: RotationEvent,
        meta: SecretMetadata | None,
        env: Mapping[str, str],
        aws_client: Callable[[str], Any] | None = None,
        *,
        arn: str | None = None,
        memo: Memo | None = None,
    ) -> None:
        self.step = event.step
        self.token = event.token
        self.arn = meta.arn if meta is not None else (arn or event.secret_id)
        self._meta = meta
        self.env = env
        self._store = store
        self._aws_client = aws_client or _aws_client
        self._memo = memo or Memo()
        self._cache: dict[tuple[str, str | None, str | None], str | None] = {}

    @property
    def meta(self) -> SecretMetadata:
        if self._meta is None:
            raise EventError(f"{self.step}: the secret's stages are only described in createSecret and finishSecret")
        return self._meta

    @functools.cached_property
    def settings(self) -> config.Settings:
        """Parsed on first use, so a step that needs no configuration never fails on it."""
        return config.load(self.env)

    def seconds_left(self) -> float:
        """What remains of the step's time budget (HTTP providers bound their calls by it)."""
        return self._store.budget.remaining()

    def know(self, version: Version, stage: str | None) -> None:
        """A version the protocol has read already (setSecret, testSecret: the pending one)."""
        self._cache[(self.arn, stage, version.version_id)] = version.text
        self._memo.keep_version(version.arn, version.version_id, version.text)

    def _get(self, secret_id: str, stage: str | None, version: str | None) -> str | None:
        key = (secret_id, stage, version)
        if key in self._cache:
            return self._cache[key]
        if stage is None and version is not None and secret_id == self.arn:
            kept = self._memo.version(secret_id, version)
            if kept is not None:
                self._cache[key] = kept
                return kept
        found = self._store.read(secret_id, stage, version)
        if found is not None and secret_id == self.arn:
            self._memo.keep_version(found.arn, found.version_id, found.text)
        self._cache[key] = None if found is None else found.text
        return self._cache[key]

    def current(self) -> str:
        text = self._get(self.arn, CURRENT, None)
        if text is None:
            raise EventError(f"{self.step}: the secret has no AWSCURRENT value")
        return text

    def pending(self) -> str:
        text = self._get(self.arn, PENDING, self.token)
        if text is None:
            raise EventError(f"{self.step}: the token's AWSPENDING version has no value yet (createSecret has not run)")
        return text

    def pending_if_any(self) -> str | None:
        return self._get(self.arn, PENDING, self.token)

    def pending_read(self) -> str | None:
        """The pending value if this step has read it already (no call), else None."""
        return self._cache.get((self.arn, PENDING, self.token))

    def previous(self) -> str | None:
        return self._get(self.arn, PREVIOUS, None)

    def version(self, version_id: str) -> str | None:
        """The value of one version of this secret, by id (None if it has none)."""
        return self._get(self.arn, None, version_id)

    def abandoned(self, limit: int = 3) -> list[str]:
        """Values of the newest versions without any staging label: where the password of an
        abandoned rotation is, after its AWSPENDING label was moved or removed. Only read on
        the failure path (ListSecretVersionIds plus one GetSecretValue each)."""
        from botocore.exceptions import ClientError

        try:
            ids = self._store.unlabelled_versions(self.arn, limit)
        except ClientError as exc:  # e.g. a role without secretsmanager:ListSecretVersionIds
            logger.warning("cannot list earlier versions", extra={"error": exc.response["Error"].get("Code")})
            return []
        values = (self.version(v) for v in ids)
        return [value for value in values if value is not None]

    def other_secret(self, secret_id: str, role: str, *, across_steps: bool = False) -> str:
        """Another secret the rotated secret names (master, admin, verify): refused unless it
        is one of TRUSTED_SECRET_ARNS, when the function's configuration sets them.

        across_steps: the rotation reads it in several steps (an API provider's admin
        secret); the value read first is kept for this rotation's later steps in the same
        execution environment (rotation_core.memo), and read again after any failure."""
        trusted = self.settings.trusted_secret_arns
        if trusted is not None and not config.is_trusted(secret_id, trusted):
            raise ConfigurationError(
                f"{self.step}: the {role} secret the rotated secret names is not one of the function's "
                f"{config.TRUSTED_SECRET_ARNS}"
            )
        if config.is_trusted(secret_id, frozenset({self.arn})):
            raise ConfigurationError(f"{self.step}: the {role} secret cannot be the rotated secret itself")
        now = time.monotonic()
        text = self._memo.other(self.token, secret_id, now) if across_steps else None
        if text is None:
            text = self._get(secret_id, CURRENT, None)
            if text is None:
                raise ConfigurationError(f"{self.step}: the {role} secret has no AWSCURRENT value")
            if across_steps:
                self._memo.keep_other(self.token, secret_id, text, now)
        return text

    def other_secret_tags(self, secret_id: str) -> Mapping[str, str]:
        """The tags of another secret (DescribeSecret): where the system tags of the secrets
        RDS and Redshift manage say which database they belong to."""
        return self._store.describe(secret_id).tags

    def aws_client(self, service: str) -> Any:
        """A client of another AWS service (read-only look-ups: RDS, Redshift)."""
        return self._aws_client(service)


class Rotation(abc.ABC):
    """What the protocol drives. Database engines get theirs from the strategies
    (DatabaseRotation); other credentials (API keys) subclass this directly."""

    name: str

    @abc.abstractmethod
    def create(self, ctx: StepContext) -> str:
        """Return the JSON of the next credential, built from ctx.current()."""

    @abc.abstractmethod
    def set(self, ctx: StepContext) -> None:
        """Make the pending credential valid in the target (it may already be)."""

    @abc.abstractmethod
    def test(self, ctx: StepContext) -> None:
        """Prove the pending credential works."""

    def finished(self, ctx: StepContext, previous_version: str | None) -> None:  # noqa: B027 - optional hook
        """After AWSCURRENT moved to the token's version, from previous_version (which is now
        AWSPREVIOUS). ctx.meta still shows the stages as they were before the move."""

    def already_finished(self, ctx: StepContext) -> None:  # noqa: B027 - optional hook
        """finishSecret for a token that is already AWSCURRENT: Secrets Manager retrying a
        rotation whose finished() failed after the move, or a duplicate invocation. Redo,
        idempotently, what finished() must not leave undone. ctx.meta shows the stages as
        they are now (the token's version AWSCURRENT)."""


def _client_factory(endpoint: str | None) -> SecretsManagerClient:
    import boto3  # deferred: the runtime ships it; tests and tools may inject a client
    from botocore.config import Config

    # One attempt per call: SecretsStore retries throttled and transient failures itself,
    # within the step's time budget, which botocore's own retries know nothing of.
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=15),
    )


def _aws_client(service: str) -> Any:
    import boto3  # deferred: only the steps that look a database up need it
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=10)
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def check_state(event: RotationEvent, meta: SecretMetadata) -> bool:
    """DescribeSecret's verdict on the event: True when the token's version is AWSCURRENT
    already (nothing to do); raises unless rotation is enabled and the token is this
    secret's AWSPENDING version."""
    if not meta.rotation_enabled:
        raise EventError(f"{event.step}: rotation is not enabled for this secret (DescribeSecret RotationEnabled)")
    stages = meta.versions.get(event.token)
    if stages is None:
        raise EventError(f"{event.step}: the ClientRequestToken is not a version of this secret")
    if CURRENT in stages:
        return True
    if PENDING not in stages:
        raise EventError(f"{event.step}: the token's version is not staged AWSPENDING")
    return False


class RotationFunction:
    """The Lambda handler: `lambda_handler = rotation_handler(PostgresEngine())`.

    One Secrets Manager client per execution environment, created on first use and reused
    by every later invocation, and one Memo (rotation_core.memo).
    """

    def __init__(self, rotation: Rotation, client_factory: Callable[[str | None], Any] = _client_factory) -> None:
        self.rotation = rotation
        self._client_factory = client_factory
        self._client: Any = None
        #: clients of other services (rds, redshift, redshift-serverless), by name;
        #: tools and tests may replace the factory (the command line gives its own session)
        self.aws_client_factory: Callable[[str], Any] = _aws_client
        self._aws_clients: dict[str, Any] = {}
        #: the steps' time (tests give a clock whose sleep() only moves it on)
        self.clock = Clock()
        self.memo = Memo()

    @property
    def client(self) -> SecretsManagerClient:
        if self._client is None:
            self._client = self._client_factory(config.secrets_manager_endpoint(os.environ))
        return self._client  # type: ignore[no-any-return]

    def reset_client(self) -> None:
        """Forget the cached clients (tests and tools that switch endpoints)."""
        self._client = None
        self._aws_clients.clear()

    def aws_client(self, service: str) -> Any:
        if service not in self._aws_clients:
            self._aws_clients[service] = self.aws_client_factory(service)
        return self._aws_clients[service]

    def __call__(self, event: object, context: object = None) -> None:
        started = time.perf_counter()
        step = event.get("Step") if isinstance(event, Mapping) else None
        step_name = step if isinstance(step, str) and step in STEPS else "unknown"
        logger.set_correlation_id(None)  # not the previous invocation's token
        logger.append_keys(step=step_name, engine=self.rotation.name)
        request_id = getattr(context, "aws_request_id", None)
        if request_id:
            logger.append_keys(function_request_id=request_id)
        budget = Budget.for_invocation(self.clock, context)
        ok = False
        try:
            with traced(step_name, self.rotation.name):
                self._run(event, budget)
            ok = True
        except RotationError as exc:
            logger.error("step failed", extra={"error": type(exc).__name__, "reason": str(exc)})
            raise
        except Exception as exc:
            logger.exception("step failed", extra={"error": type(exc).__name__})
            raise
        finally:
            token = event.get("ClientRequestToken") if isinstance(event, Mapping) else None
            if isinstance(token, str) and (not ok or step_name == "finishSecret"):
                self.memo.forget_rotation(token)  # a retry reads everything again
            throttled = len(budget.throttled)
            record_step(self.rotation.name, step_name, ok, (time.perf_counter() - started) * 1000, throttled)
            logger.remove_keys(["strategy", "secret_arn", "version", "function_request_id"])

    def _run(self, raw_event: object, budget: Budget) -> None:
        event = parse_event(raw_event)
        logger.set_correlation_id(event.token)
        logger.append_keys(version=event.token)
        store = SecretsStore(self.client, budget)
        if event.step in ("setSecret", "testSecret"):
            ctx = self._pending_context(store, event)
            if ctx is None:
                return
            if event.step == "setSecret":
                self.rotation.set(ctx)
                logger.info("pending credential is set in the target")
            else:
                self.rotation.test(ctx)
                logger.info("pending credential works")
            return
        meta = store.describe(event.secret_id)
        logger.append_keys(secret_arn=meta.arn)
        ctx = StepContext(store, event, meta, os.environ, self.aws_client, memo=self.memo)
        if check_state(event, meta):
            if event.step != "finishSecret":
                logger.info("version is already AWSCURRENT: nothing to do")
                return
            logger.info("version is already AWSCURRENT: retrying the rotation's work after the move")
            self.rotation.already_finished(ctx)
            return
        if event.step == "createSecret":
            self._create(store, event, meta, ctx)
        else:
            previous = meta.holding(CURRENT)
            store.move_current(meta.arn, event.token, previous)
            logger.info("AWSCURRENT moved to the token's version", extra={"from_version": previous})
            self.rotation.finished(ctx, previous)

    def _pending_context(self, store: SecretsStore, event: RotationEvent) -> StepContext | None:
        """setSecret and testSecret: the token's AWSPENDING version, read by VersionId and
        VersionStage together (one call, instead of DescribeSecret and then the read). None
        when there is nothing to do (the version is AWSCURRENT already).

        setSecret changes the target, so it first runs DescribeSecret's checks too, as the steps
        that write to Secrets Manager do: a rotation turned off halfway (finishSecret would then
        refuse to move AWSCURRENT) must not leave the target on a password AWSCURRENT does not
        hold. testSecret only logs in, and reads the version alone."""
        meta: SecretMetadata | None = None
        if event.step == "setSecret":
            meta = store.describe(event.secret_id)
            logger.append_keys(secret_arn=meta.arn)
            if check_state(event, meta):
                logger.info("version is already AWSCURRENT: nothing to do")
                return None
        try:
            pending = store.read(event.secret_id, PENDING, event.token)
        except Exception as exc:
            # The service refuses a VersionId and a VersionStage that name different versions
            # (moto: InvalidRequestException); DescribeSecret below says what is wrong.
            if error_code(exc) not in ("InvalidRequestException", "InvalidParameterException"):
                raise
            pending = None
        if pending is None:
            meta = store.describe(event.secret_id)
            logger.append_keys(secret_arn=meta.arn)
            if check_state(event, meta):
                logger.info("version is already AWSCURRENT: nothing to do")
                return None
            raise EventError(
                f"{event.step}: the token's AWSPENDING version has no value yet (createSecret has not run)"
            )
        logger.append_keys(secret_arn=pending.arn)
        if CURRENT in pending.stages:
            logger.info("version is already AWSCURRENT: nothing to do")
            return None
        if PENDING not in pending.stages:  # the service answered for another version: refuse
            raise EventError(f"{event.step}: the token's version is not staged AWSPENDING")
        ctx = StepContext(store, event, meta, os.environ, self.aws_client, arn=pending.arn, memo=self.memo)
        ctx.know(pending, PENDING)
        return ctx

    def _create(self, store: SecretsStore, event: RotationEvent, meta: SecretMetadata, ctx: StepContext) -> None:
        ctx.current()
        text = self.rotation.create(ctx)
        if ctx.pending_read() == text:
            logger.info("the token's AWSPENDING version already has a value: reusing it")
            return
        if store.put_pending(meta.arn, event.token, text, event.rotation_token):
            logger.info("stored the next credential as AWSPENDING")
        else:
            logger.info("the token's AWSPENDING version already has a value: keeping it")
