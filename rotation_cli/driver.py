"""Drive a rotation the way Secrets Manager does, through a function's own code.

What the service does, and what this module does in its place:

1. RotateSecret labels a new version (VersionId = the ClientRequestToken) AWSPENDING,
   with no value yet, then invokes the function for createSecret, setSecret, testSecret
   and finishSecret, each with that token.
2. When a step fails, the service retries the whole rotation with the same token; every
   step must converge. This driver retries a bounded number of times (DEFAULT_ATTEMPTS).
3. A later RotateSecret is refused while AWSPENDING sits on a version that is not
   AWSCURRENT ("A previous rotation isn't complete"): that unfinished rotation is
   reattempted instead, with its own token. The driver resumes it the same way.

Preparing the AWSPENDING version (step 1) depends on where the secret lives:

- moto's server (an emulator): RotateSecret prepares the version as the service does,
  then cannot invoke the function without Docker: it raises ResourceNotFoundException for
  a function it does not know, or logs a Docker error for one it does; either way the
  version is there and the driver invokes the steps itself. moto also leaves rotation
  disabled until RotateSecret is called, refuses RotateSecret while AWSPENDING sits on
  the AWSCURRENT version (the end state of a successful rotation, which the service
  accepts), and returns the old value to a get without VersionStage: the driver lifts
  that label first and always reads by explicit stage or version id.
- a real account: RotateSecret would make the service invoke the deployed function, and
  no other API creates a version without a value. So the driver asks the function's own
  createSecret logic (Rotation.create) for the next credential and stores it with
  PutSecretValue(ClientRequestToken=token, VersionStages=[AWSPENDING]) -- the write the
  createSecret step itself makes -- then invokes all four steps; createSecret finds the
  value and keeps it. Rotation must already be enabled on the secret (the function, like
  AWS's, refuses every step otherwise): attach a function first (`attach`).

Only errors a retry can cure are retried (UnreachableError, throttling, broken
connections); a bad secret, bad configuration, a refused credential or a bug stops the
rotation at once, with the step and the cause.

Nothing here prints or logs a secret value. Errors are described by type and message
for the function's own errors (built to carry no value) and AWS errors; any other
exception's message is shown only when it holds no value of the secret's versions (a
long value is masked; a message holding a short one is withheld whole: masking a short
value would garble the message, and leave the value guessable).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TextIO

from rotation_cli.aws import error_code, is_loopback
from rotation_cli.errors import UsageError
from rotation_core import AuthenticationError, RotationError, RotationFunction, UnreachableError
from rotation_core.protocol import (
    CURRENT,
    PENDING,
    PREVIOUS,
    STEPS,
    Rotation,
    RotationEvent,
    SecretMetadata,
    SecretsStore,
    StepContext,
)

__all__ = [
    "CURRENT",
    "DEFAULT_ATTEMPTS",
    "FAKE_FUNCTION_ARN",
    "PENDING",
    "PREVIOUS",
    "STEPS",
    "DriverError",
    "LocalRotation",
    "Probe",
    "RotationOutcome",
    "Verdict",
    "bind",
    "event",
    "is_transient",
    "new_token",
    "probe_version",
    "rotate",
    "run_steps",
    "stages",
    "start_rotation",
    "stuck_pending",
    "value",
]

#: Attempts at the whole rotation, the first included. The service retries a failed
#: rotation "multiple times" without documenting a number. Three is enough for what a
#: retry can cure (a throttled call, a dropped connection, a Lambda timeout) now that
#: every step converges when run again, and few enough that a permanent failure (a
#: refused password) is reported in seconds and does not hammer the target with logins
#: that would trip an account-lockout policy. --attempts changes it.
DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_DELAY = 1.0  # seconds between attempts (the service also waits before retrying)

#: The function ARN given to an emulator's RotateSecret when the secret has none of its own.
FAKE_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotation-under-test"

Handler = Callable[[dict[str, Any], Any], None]

#: Fields of a secret JSON that are not secret (shown, or at least not masked).
_PLAIN_FIELDS = frozenset({"engine", "host", "port", "username", "dbname", "masterarn", "ssl", "mode", "key_id"})
#: Shorter values are never masked by replacement (that would garble the message and leave
#: the value guessable from the gaps): a message holding one is withheld whole.
MIN_MASKED_LENGTH = 8
WITHHELD = "(message withheld: it may contain a secret value)"
#: AWS error codes a retry can cure (the SDK's own retries have already been spent).
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "InternalFailure",
        "InternalServiceError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
#: What the drivers say when the server offers no TLS at all (libpq; PyMySQL).
_NO_TLS = ("does not support SSL", "SSL is required but the server doesn't support it")
#: ... and when its certificate is not trusted (OpenSSL, through libpq, PyMySQL, ssl).
_UNTRUSTED = ("certificate verify failed", "not signed by a trusted authority")


RESUMED = "the unfinished rotation's AWSPENDING version, resumed with its own token"


class DriverError(RuntimeError):
    """The rotation cannot be driven (the secret is not in a state that allows it)."""


_AWS_CLIENT_FACTORY = "aws_client_factory"  # RotationFunction's factory of rds/redshift clients


# -- the low-level verbs (also tests/support/rotations.py's API) -----------------------------
def new_token() -> str:
    return str(uuid.uuid4())


def event(secret_id: str, token: str, step: str, rotation_token: str | None = None) -> dict[str, Any]:
    doc = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
    if rotation_token is not None:
        doc["RotationToken"] = rotation_token
    return doc


def stages(client: Any, secret_id: str) -> dict[str, list[str]]:
    return {v: list(s) for v, s in client.describe_secret(SecretId=secret_id)["VersionIdsToStages"].items()}


def value(client: Any, secret_id: str, stage: str = CURRENT, version: str | None = None) -> str:
    kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
    if version:
        kwargs["VersionId"] = version
    return str(client.get_secret_value(**kwargs)["SecretString"])


def stuck_pending(client: Any, secret_id: str) -> list[str]:
    """Versions labelled AWSPENDING that are not AWSCURRENT (a rotation left unfinished)."""
    return [v for v, s in stages(client, secret_id).items() if PENDING in s and CURRENT not in s]


def lift_pending_from_current(client: Any, secret_id: str, versions: Mapping[str, list[str]]) -> None:
    """moto refuses RotateSecret while AWSPENDING sits on the AWSCURRENT version (the end
    state of a successful rotation, which the service accepts): remove that label first."""
    for version, labels in versions.items():
        if PENDING in labels and CURRENT in labels:
            client.update_secret_version_stage(SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=version)


def start_rotation(client: Any, secret_id: str, token: str | None = None) -> str:
    """Prepare the AWSPENDING version on an emulator (moto) with RotateSecret, as the service
    prepares it, and return its token; the steps are then the caller's to invoke."""
    token = token or new_token()
    described = client.describe_secret(SecretId=secret_id)
    versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    lift_pending_from_current(client, secret_id, versions)
    kwargs: dict[str, Any] = {
        "SecretId": secret_id,
        "ClientRequestToken": token,
        # Without a function ARN moto would move AWSCURRENT to the empty new version.
        "RotationLambdaARN": described.get("RotationLambdaARN") or FAKE_FUNCTION_ARN,
    }
    if not described.get("RotationEnabled"):
        kwargs["RotationRules"] = {"AutomaticallyAfterDays": 30}  # moto enables rotation for days only
    with contextlib.suppress(client.exceptions.ResourceNotFoundException):
        # moto cannot invoke the function; the AWSPENDING version is prepared all the same
        client.rotate_secret(**kwargs)
    if PENDING not in stages(client, secret_id).get(token, []):
        raise DriverError("RotateSecret did not prepare an AWSPENDING version for the token")
    return token


def run_steps(handler: Handler, secret_id: str, token: str, steps: Iterable[str] = STEPS) -> None:
    for step in steps:
        handler(event(secret_id, token, step), None)


def rotate(handler: Handler, client: Any, secret_id: str) -> str:
    token = start_rotation(client, secret_id)
    run_steps(handler, secret_id, token)
    return token


# -- the function, bound to the command's client ------------------------------------------
def bind(handler: object, client: Any, aws_client: Callable[[str], Any] | None = None) -> RotationFunction:
    """The function's handler, using this client (endpoint, credentials, region) instead of
    one built from the environment: the same rotation, wired as `rotation_handler` wires it.

    aws_client(service) builds the clients of other services the function looks databases
    up with (rds, redshift, redshift-serverless) from the command's own session: same
    region and profile, and against an emulator the emulator's endpoint. A layer without
    that hook (RotationFunction.aws_client_factory) is bound all the same."""
    if not isinstance(handler, RotationFunction):
        raise DriverError("the function's lambda_handler is not a rotation_core RotationFunction")
    bound = RotationFunction(handler.rotation, client_factory=lambda _endpoint: client)
    if aws_client is not None and hasattr(bound, _AWS_CLIENT_FACTORY):
        setattr(bound, _AWS_CLIENT_FACTORY, aws_client)
    return bound


@contextlib.contextmanager
def function_output(sink: TextIO | None) -> Iterator[None]:
    """Send what the function prints (Powertools JSON logs, EMF metrics) to sink, or
    nowhere when sink is None, so it never mixes with the command's own output. (In a
    thread other than the main one, nothing is redirected.)"""
    from rotation_core.observability import logger

    if threading.current_thread() is not threading.main_thread():
        # sys.stdout and the log handlers are process-wide: only the main thread swaps them.
        yield
        return
    target: TextIO = sink if sink is not None else io.StringIO()
    streams = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    saved = [h.stream for h in streams]
    for handler in streams:
        handler.stream = target
    try:
        with contextlib.redirect_stdout(target):
            yield
    finally:
        for handler, stream in zip(streams, saved, strict=True):
            handler.stream = stream


# -- describing errors without values -------------------------------------------------------
class Redactor:
    """Keeps the values of a secret's versions out of text that did not come from our own
    code: a value of MIN_MASKED_LENGTH characters or more is masked; text holding a shorter
    one is withheld whole (replacing a one-letter password would mask every such letter)."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add_secret_text(self, text: str | None) -> None:
        if not text:
            return
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for key, item in doc.items():
                if key not in _PLAIN_FIELDS and isinstance(item, str) and item:
                    self._values.add(item)
        else:
            self._values.add(text)

    def load(self, client: Any, secret_id: str, versions: Iterable[str]) -> None:
        for version in versions:
            with contextlib.suppress(Exception):
                self.add_secret_text(client.get_secret_value(SecretId=secret_id, VersionId=version).get("SecretString"))

    def __call__(self, text: str) -> str:
        for secret in sorted(self._values, key=len, reverse=True):
            if secret not in text:
                continue
            if len(secret) < MIN_MASKED_LENGTH:
                return WITHHELD
            text = text.replace(secret, "********")
        return text


def _printable(text: str, limit: int = 300) -> str:
    """Control characters (terminal escapes, fake lines) become spaces; long text is cut."""
    cleaned = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "..."


def describe_error(exc: BaseException, redact: Callable[[str], str] | None = None) -> str:
    """Type and message of an error, safe to print."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(exc, RotationError | ClientError | BotoCoreError | DriverError) and not isinstance(
        exc,
        ParamValidationError,  # quotes the parameters' values
    ):
        text = str(exc)
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
        if text:
            text = redact(text) if redact is not None else "(message withheld)"
    text = _printable(text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the rotation can cure this failure: an unreachable target, a
    throttled or failing AWS call, a broken connection. A bad secret or configuration
    (ConfigurationError), a bad event or version state (EventError), a refused credential
    (retrying would only add failed logins towards a lockout) and bugs are not retried."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as AwsConnectionError

    if isinstance(exc, UnreachableError):
        return tls_hint(str(exc), None) is None  # TLS set up wrong stays wrong
    if isinstance(exc, RotationError):
        return False
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_code(exc) in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return isinstance(exc, HTTPClientError | AwsConnectionError | ConnectionError | TimeoutError)


def tls_hint(message: str, host: str | None) -> str | None:
    """What to do when TLS cannot be set up (the server offers none, or its certificate is
    not trusted), or None if that is not the failure."""
    if any(marker in message for marker in _UNTRUSTED):
        return (
            "the server's certificate is not trusted: give the CA that signed it with --env DB_CA_BUNDLE=ca.pem "
            "(Redshift: --env SSL_CERT_FILE=ca.pem), as the deployed function's configuration does"
        )
    if not any(marker in message for marker in _NO_TLS):
        return None
    if host is not None and is_loopback(host):
        return (
            'the server offers no TLS: for a plain local test server, set "ssl": false in the secret '
            "(TLS stays required everywhere else)"
        )
    return 'the server offers no TLS: turn TLS on at the server ("ssl": false only for a local test server)'


# -- trying a credential with the function's own testSecret logic -------------------------------
class Verdict(Enum):
    WORKS = "works"
    REFUSED = "refused"
    NO_VALUE = "no value"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Probe:
    version: str
    verdict: Verdict
    detail: str = ""
    username: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "verdict": self.verdict.value, "detail": self.detail, "user": self.username}


class _VersionContext(StepContext):
    """A testSecret context whose 'pending' credential is one chosen version's value."""

    def __init__(self, store: SecretsStore, ev: RotationEvent, meta: SecretMetadata, text: str) -> None:
        super().__init__(store, ev, meta, os.environ)
        self._text = text

    def pending(self) -> str:
        return self._text

    def pending_if_any(self) -> str | None:
        return self._text


def username_of(text: str | None) -> str | None:
    try:
        doc = json.loads(text or "")
    except ValueError:
        return None
    user = doc.get("username") if isinstance(doc, dict) else None
    return user if isinstance(user, str) else None


def probe_version(rotation: Rotation, client: Any, secret_id: str, version: str) -> Probe:
    """Whether the credential in one version works, by the function's own testSecret logic
    (Rotation.test: for a database, log in with it and run a harmless query)."""
    from botocore.exceptions import BotoCoreError, ClientError

    store = SecretsStore(client)
    try:
        meta = store.describe(secret_id)
        text = store.get(meta.arn, None, version)
    except (ClientError, BotoCoreError, RotationError) as exc:
        return Probe(version, Verdict.UNKNOWN, f"cannot read the version: {describe_error(exc)}")
    if text is None:
        return Probe(version, Verdict.NO_VALUE, "the version has no value")
    user = username_of(text)
    try:
        ctx = _VersionContext(store, RotationEvent("testSecret", meta.arn, version), meta, text)
        rotation.test(ctx)
    except AuthenticationError:
        return Probe(version, Verdict.REFUSED, "the target refuses this credential", user)
    except Exception as exc:  # noqa: BLE001 - any other failure means "cannot tell"
        redactor = Redactor()
        redactor.add_secret_text(text)
        return Probe(version, Verdict.UNKNOWN, describe_error(exc, redactor), user)
    return Probe(version, Verdict.WORKS, "logs in", user)


# -- a whole rotation, as the service runs it -----------------------------------------------------
@dataclass
class StepRun:
    step: str
    ok: bool
    ms: float
    error: str | None = None
    retryable: bool = True
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "ok": self.ok,
            "ms": round(self.ms, 1),
            "error": self.error,
            "retryable": self.retryable,
            "hint": self.hint,
        }


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class RotationOutcome:
    secret_arn: str
    token: str
    prepared: str = ""  # how the AWSPENDING version came to be
    resumed: bool = False
    attempts: list[list[StepRun]] = field(default_factory=list)
    stopped_after: str | None = None  # --fail-at
    not_retried: bool = False  # the last failure was one a retry cannot cure
    checks: list[Check] = field(default_factory=list)
    user: str | None = None
    seconds: float = 0.0

    @property
    def completed(self) -> bool:
        return bool(self.attempts) and all(run.ok for run in self.attempts[-1]) and len(self.attempts[-1]) == len(STEPS)

    @property
    def ok(self) -> bool:
        return self.completed and self.stopped_after is None and all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "secret": self.secret_arn,
            "token": self.token,
            "prepared": self.prepared,
            "resumed": self.resumed,
            "attempts": [[run.as_dict() for run in attempt] for attempt in self.attempts],
            "stopped_after": self.stopped_after,
            "not_retried": self.not_retried,
            "checks": [check.as_dict() for check in self.checks],
            "user": self.user,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


Listener = Callable[[str, dict[str, Any]], None]


def _quiet(_kind: str, _data: dict[str, Any]) -> None:
    return None


class LocalRotation:
    """Runs one rotation of a secret through a function's code in this process.

    Events reported to `listen(kind, data)` as they happen: "prepared", "resumed",
    "attempt", "step", "retry", "no-retry", "stopped", "check". `where` says, at any
    moment (after Ctrl-C, say), how far the rotation got.
    """

    def __init__(
        self,
        handler: RotationFunction,
        client: Any,
        *,
        emulator: bool,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        function_log: TextIO | None = None,
        listen: Listener = _quiet,
        retryable: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        """retryable(error): whether a failed step is worth another attempt (the command
        retries only what a retry can cure; a stand-in for the service retries everything)."""
        self.handler = handler
        self.client = client
        self.emulator = emulator
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.function_log = function_log
        self.listen = listen
        self.retryable = retryable
        #: how far the rotation got: (phase, step or None); phases: "not started",
        #: "preparing", "step", "waiting to retry", "final checks", "done"
        self.phase: tuple[str, str | None] = ("not started", None)
        self.token: str | None = None

    def where(self) -> str:
        """Where the rotation is (or stopped), for a person."""
        phase, step = self.phase
        version = f"version {self.token}" if self.token else "the new version"
        if phase == "not started":
            return "before anything was changed"
        if phase == "preparing":
            return f"while preparing {version} as AWSPENDING"
        if phase == "step":
            return f"during {step}: {version} is AWSPENDING, not AWSCURRENT"
        if phase == "waiting to retry":
            return f"while waiting to retry after {step} failed: {version} is AWSPENDING, not AWSCURRENT"
        if phase == "final checks":
            return f"during the final checks, after the rotation finished: AWSCURRENT is on {version}"
        return "after the rotation ended"

    @property
    def finished(self) -> bool:
        """AWSCURRENT has moved (interrupting now leaves nothing to resume)."""
        return self.phase[0] in ("final checks", "done")

    # -- preparing the AWSPENDING version --
    def prepare(self, secret_id: str, token: str | None) -> tuple[str, str, str]:
        """(secret ARN, token, how). Resumes an unfinished rotation as the service does."""
        described = self.client.describe_secret(SecretId=secret_id)
        arn = str(described["ARN"])
        versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
        stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
        if stuck:
            if token is not None and token != stuck[0]:
                raise UsageError(
                    f"a previous rotation is unfinished (AWSPENDING is on version {stuck[0]}); the service "
                    "would reattempt that one: run without --token to resume it, or `recover` to clear it"
                )
            self.token = stuck[0]
            self.listen("resumed", {"token": stuck[0]})
            return arn, stuck[0], RESUMED
        token = token or new_token()
        if not 32 <= len(token) <= 64:
            raise UsageError("--token must be 32 to 64 characters long (a ClientRequestToken)")
        if token in versions:
            raise UsageError(f"version {token} already exists and is not AWSPENDING: choose another --token")
        self.token = token
        self.phase = ("preparing", None)
        if self.emulator:
            start_rotation(self.client, arn, token)
            how = (
                "AWSPENDING prepared by RotateSecret, without a value, as the service prepares it "
                "(the emulator cannot invoke the function: the steps run here)"
            )
        else:
            self._prepare_on_service(arn, token, described)
            how = (
                "AWSPENDING stored by PutSecretValue with the function's own createSecret result "
                "(RotateSecret would make the service invoke the deployed function)"
            )
        self.listen("prepared", {"token": token, "how": how})
        return arn, token, how

    def _prepare_on_service(self, arn: str, token: str, described: Mapping[str, Any]) -> None:
        if not described.get("RotationEnabled"):
            raise DriverError(
                "rotation is not enabled on this secret, and the function refuses every step then (as AWS's "
                "functions do). Attach a rotation function first (`attach SECRET --function ARN --schedule EXPR "
                "--no-rotate-now`), then rotate locally"
            )
        store = SecretsStore(self.client)
        meta = store.describe(arn)
        ctx = StepContext(store, RotationEvent("createSecret", arn, token), meta, os.environ)
        with function_output(self.function_log):
            text = self.handler.rotation.create(ctx)
        store.put_pending(arn, token, text, None)

    # -- running it --
    def run(self, secret_id: str, *, token: str | None = None, fail_at: str | None = None) -> RotationOutcome:
        started = time.perf_counter()
        arn, token, how = self.prepare(secret_id, token)
        outcome = RotationOutcome(arn, token, prepared=how, resumed=how == RESUMED)
        for attempt in range(1, self.attempts + 1):
            self.listen("attempt", {"attempt": attempt, "of": self.attempts})
            runs = self._attempt(arn, token, fail_at, outcome)
            outcome.attempts.append(runs)
            if outcome.stopped_after is not None or all(run.ok for run in runs):
                break
            failed = runs[-1]
            if not failed.retryable:
                outcome.not_retried = True
                self.listen("no-retry", {"step": failed.step})
                break
            if attempt < self.attempts:
                self.phase = ("waiting to retry", failed.step)
                self.listen("retry", {"attempt": attempt + 1, "delay": self.retry_delay})
                time.sleep(self.retry_delay)
        if outcome.completed and outcome.stopped_after is None:
            self.phase = ("final checks", None)
            for check in final_checks(self.handler.rotation, self.client, arn, token, self.function_log):
                outcome.checks.append(check)
                self.listen("check", check.as_dict())
            outcome.user = username_of(_safe_value(self.client, arn, token))
        self.phase = ("done", None)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _attempt(self, arn: str, token: str, fail_at: str | None, outcome: RotationOutcome) -> list[StepRun]:
        runs: list[StepRun] = []
        for step in STEPS:
            begun = time.perf_counter()
            self.phase = ("step", step)
            try:
                with function_output(self.function_log):
                    self.handler(event(arn, token, step), None)
            except Exception as exc:  # noqa: BLE001 - reported, then retried if a retry can cure it
                redactor = Redactor()
                if not isinstance(exc, RotationError):
                    redactor.load(self.client, arn, [*_labelled_versions(self.client, arn), token])
                hint = None
                if isinstance(exc, UnreachableError):
                    hint = tls_hint(str(exc), _host_of(_safe_value(self.client, arn, None)))
                run = StepRun(
                    step,
                    False,
                    (time.perf_counter() - begun) * 1000,
                    describe_error(exc, redactor),
                    retryable=self.retryable(exc),
                    hint=hint,
                )
                runs.append(run)
                self.listen("step", run.as_dict())
                return runs
            run = StepRun(step, True, (time.perf_counter() - begun) * 1000)
            runs.append(run)
            self.listen("step", run.as_dict())
            if step == fail_at:
                outcome.stopped_after = step
                self.listen("stopped", {"step": step, "token": token})
                return runs
        return runs


def _labelled_versions(client: Any, arn: str) -> list[str]:
    with contextlib.suppress(Exception):
        return [v for v, s in stages(client, arn).items() if s]
    return []


def _safe_value(client: Any, arn: str, version: str | None) -> str | None:
    """A version's value (AWSCURRENT's when version is None), or None."""
    kwargs = {"VersionId": version} if version else {"VersionStage": CURRENT}
    with contextlib.suppress(Exception):
        return str(client.get_secret_value(SecretId=arn, **kwargs).get("SecretString"))
    return None


def _host_of(text: str | None) -> str | None:
    try:
        doc = json.loads(text or "")
    except ValueError:
        return None
    host = doc.get("host") if isinstance(doc, dict) else None
    return host if isinstance(host, str) else None


def final_checks(rotation: Rotation, client: Any, arn: str, token: str, function_log: TextIO | None) -> list[Check]:
    """What a finished rotation must have left: AWSCURRENT on the token's version, no
    AWSPENDING on another version, and a new credential that works (testSecret's logic)."""
    versions = stages(client, arn)
    checks = [
        Check(
            "AWSCURRENT is on the token's version",
            CURRENT in versions.get(token, []),
            f"version {token}",
        )
    ]
    stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    checks.append(
        Check(
            "no AWSPENDING left on a version that is not AWSCURRENT",
            not stuck,
            f"AWSPENDING on {', '.join(stuck)}" if stuck else "",
        )
    )
    with function_output(function_log):
        probe = probe_version(rotation, client, arn, token)
    checks.append(
        Check(
            "the new credential works (the function's testSecret logic)", probe.verdict is Verdict.WORKS, probe.detail
        )
    )
    return checks
