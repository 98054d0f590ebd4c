"""Secrets Manager's four-step rotation protocol, written once for every engine.

This is the only module that talks to Secrets Manager. It validates the event, calls
DescribeSecret once per invocation, checks that rotation is enabled and that the token is
a version of the secret staged AWSPENDING (already AWSCURRENT: nothing to do), then runs
the step. It reads and writes versions by explicit stage and version id only. Every step
can run again, or after a failure of any earlier step, and converges:

- createSecret: reuse the token's AWSPENDING value when it has one, else build the next
  credential and store it as AWSPENDING (before the target ever learns it);
- setSecret / testSecret: delegated to the rotation (strategy + engine);
- finishSecret: move AWSCURRENT to the token's version, from the version that holds it,
  then run the rotation's work after the move (finished). Invoked again once the token is
  AWSCURRENT (a retry after that work failed), it runs only already_finished, so that work
  after the move (revoking an old API key) is retried too.
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
from rotation_core.errors import ConfigurationError, EventError, RotationError
from rotation_core.observability import logger, record_step, traced

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


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


class SecretsStore:
    """The Secrets Manager calls a rotation makes, and nothing else."""

    def __init__(self, client: SecretsManagerClient) -> None:
        self._client = client

    def describe(self, secret_id: str) -> SecretMetadata:
        meta = self._client.describe_secret(SecretId=secret_id)
        versions = {v: tuple(stages) for v, stages in meta.get("VersionIdsToStages", {}).items()}
        tags = {t["Key"]: t.get("Value", "") for t in meta.get("Tags", []) if "Key" in t}
        return SecretMetadata(meta["ARN"], bool(meta.get("RotationEnabled", False)), versions, tags)

    def get(self, secret_id: str, stage: str | None, version_id: str | None = None) -> str | None:
        """The SecretString at that stage (and version), or None when that version has no value."""
        kwargs: dict[str, Any] = {"SecretId": secret_id}
        if stage is not None:
            kwargs["VersionStage"] = stage
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            value = self._client.get_secret_value(**kwargs)
        except self._client.exceptions.ResourceNotFoundException:
            return None
        text = value.get("SecretString")
        if text is None:
            raise ConfigurationError(f"the secret's {stage} version is binary; only SecretString secrets are supported")
        return text

    def unlabelled_versions(self, secret_id: str, limit: int) -> list[str]:
        """Ids of the newest versions that carry no staging label (an abandoned rotation's
        AWSPENDING, once the label moved on), newest first."""
        listed = self._client.list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True, MaxResults=20)
        orphans = [v for v in listed.get("Versions", []) if not v.get("VersionStages")]
        orphans.sort(key=lambda v: v.get("CreatedDate") or 0, reverse=True)
        return [v["VersionId"] for v in orphans[:limit]]

    def put_pending(self, secret_id: str, token: str, text: str, rotation_token: str | None) -> None:
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "ClientRequestToken": token,
            "SecretString": text,
            "VersionStages": [PENDING],
        }
        if rotation_token:
            kwargs["RotationToken"] = rotation_token
        self._client.put_secret_value(**kwargs)

    def move_current(self, secret_id: str, to_version: str, from_version: str | None) -> None:
        kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": CURRENT, "MoveToVersionId": to_version}
        if from_version is not None:
            kwargs["RemoveFromVersionId"] = from_version
        self._client.update_secret_version_stage(**kwargs)


class StepContext:
    """What a rotation may read during a step: the secret's versions, fetched on demand
    (each at most once), other secrets by ARN (the master secret), and the configuration."""

    def __init__(
        self,
        store: SecretsStore,
        event: RotationEvent,
        meta: SecretMetadata,
        env: Mapping[str, str],
        aws_client: Callable[[str], Any] | None = None,
    ) -> None:
        self.step = event.step
        self.token = event.token
        self.meta = meta
        self.env = env
        self._store = store
        self._aws_client = aws_client or _aws_client
        self._cache: dict[tuple[str, str | None, str | None], str | None] = {}

    @functools.cached_property
    def settings(self) -> config.Settings:
        """Parsed on first use, so a step that needs no configuration never fails on it."""
        return config.load(self.env)

    def _get(self, secret_id: str, stage: str | None, version: str | None) -> str | None:
        key = (secret_id, stage, version)
        if key not in self._cache:
            self._cache[key] = self._store.get(secret_id, stage, version)
        return self._cache[key]

    def current(self) -> str:
        text = self._get(self.meta.arn, CURRENT, None)
        if text is None:
            raise EventError(f"{self.step}: the secret has no AWSCURRENT value")
        return text

    def pending(self) -> str:
        text = self._get(self.meta.arn, PENDING, self.token)
        if text is None:
            raise EventError(f"{self.step}: the token's AWSPENDING version has no value yet (createSecret has not run)")
        return text

    def pending_if_any(self) -> str | None:
        return self._get(self.meta.arn, PENDING, self.token)

    def previous(self) -> str | None:
        return self._get(self.meta.arn, PREVIOUS, None)

    def version(self, version_id: str) -> str | None:
        """The value of one version of this secret, by id (None if it has none)."""
        return self._get(self.meta.arn, None, version_id)

    def abandoned(self, limit: int = 3) -> list[str]:
        """Values of the newest versions without any staging label: where the password of an
        abandoned rotation is, after its AWSPENDING label was moved or removed. Only read on
        the failure path (ListSecretVersionIds plus one GetSecretValue each)."""
        from botocore.exceptions import ClientError

        try:
            ids = self._store.unlabelled_versions(self.meta.arn, limit)
        except ClientError as exc:  # e.g. a role without secretsmanager:ListSecretVersionIds
            logger.warning("cannot list earlier versions", extra={"error": exc.response["Error"].get("Code")})
            return []
        values = (self.version(v) for v in ids)
        return [value for value in values if value is not None]

    def other_secret(self, secret_id: str, role: str) -> str:
        """Another secret the rotated secret names (master, admin, verify): refused unless it
        is one of TRUSTED_SECRET_ARNS, when the function's configuration sets them."""
        trusted = self.settings.trusted_secret_arns
        if trusted is not None and not config.is_trusted(secret_id, trusted):
            raise ConfigurationError(
                f"{self.step}: the {role} secret the rotated secret names is not one of the function's "
                f"{config.TRUSTED_SECRET_ARNS}"
            )
        if config.is_trusted(secret_id, frozenset({self.meta.arn})):
            raise ConfigurationError(f"{self.step}: the {role} secret cannot be the rotated secret itself")
        text = self._get(secret_id, CURRENT, None)
        if text is None:
            raise ConfigurationError(f"{self.step}: the {role} secret has no AWSCURRENT value")
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

    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=15),
    )


def _aws_client(service: str) -> Any:
    import boto3  # deferred: only the steps that look a database up need it
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=10)
    return boto3.client(service, config=config)  # type: ignore[call-overload]


class RotationFunction:
    """The Lambda handler: `lambda_handler = rotation_handler(PostgresEngine())`.

    One Secrets Manager client per execution environment, created on first use and reused
    by every later invocation.
    """

    def __init__(self, rotation: Rotation, client_factory: Callable[[str | None], Any] = _client_factory) -> None:
        self.rotation = rotation
        self._client_factory = client_factory
        self._client: Any = None
        #: clients of other services (rds, redshift, redshift-serverless), by name;
        #: tools and tests may replace the factory (the command line gives its own session)
        self.aws_client_factory: Callable[[str], Any] = _aws_client
        self._aws_clients: dict[str, Any] = {}

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
        ok = False
        try:
            with traced(step_name, self.rotation.name):
                self._run(event)
            ok = True
        except RotationError as exc:
            logger.error("step failed", extra={"error": type(exc).__name__, "reason": str(exc)})
            raise
        except Exception as exc:
            logger.exception("step failed", extra={"error": type(exc).__name__})
            raise
        finally:
            record_step(self.rotation.name, step_name, ok, (time.perf_counter() - started) * 1000)
            logger.remove_keys(["strategy", "secret_arn", "version", "function_request_id"])

    def _run(self, raw_event: object) -> None:
        event = parse_event(raw_event)
        logger.set_correlation_id(event.token)
        logger.append_keys(version=event.token)
        store = SecretsStore(self.client)
        meta = store.describe(event.secret_id)
        logger.append_keys(secret_arn=meta.arn)
        if not meta.rotation_enabled:
            raise EventError(f"{event.step}: rotation is not enabled for this secret (DescribeSecret RotationEnabled)")
        stages = meta.versions.get(event.token)
        if stages is None:
            raise EventError(f"{event.step}: the ClientRequestToken is not a version of this secret")
        if CURRENT in stages:
            if event.step != "finishSecret":
                logger.info("version is already AWSCURRENT: nothing to do")
                return
            logger.info("version is already AWSCURRENT: retrying the rotation's work after the move")
            self.rotation.already_finished(StepContext(store, event, meta, os.environ, self.aws_client))
            return
        if PENDING not in stages:
            raise EventError(f"{event.step}: the token's version is not staged AWSPENDING")
        ctx = StepContext(store, event, meta, os.environ, self.aws_client)
        if event.step == "createSecret":
            self._create(store, event, meta, ctx)
        elif event.step == "setSecret":
            self.rotation.set(ctx)
            logger.info("pending credential is set in the target")
        elif event.step == "testSecret":
            self.rotation.test(ctx)
            logger.info("pending credential works")
        else:
            previous = meta.holding(CURRENT)
            store.move_current(meta.arn, event.token, previous)
            logger.info("AWSCURRENT moved to the token's version", extra={"from_version": previous})
            self.rotation.finished(ctx, previous)

    def _create(self, store: SecretsStore, event: RotationEvent, meta: SecretMetadata, ctx: StepContext) -> None:
        ctx.current()
        if ctx.pending_if_any() is not None:
            logger.info("the token's AWSPENDING version already has a value: reusing it")
            return
        text = self.rotation.create(ctx)
        store.put_pending(meta.arn, event.token, text, event.rotation_token)
        logger.info("stored the next credential as AWSPENDING")
