"""Remote mode: ask Secrets Manager to rotate, then follow the rotation to its end.

RotateSecret starts the rotation and returns at once; the service then invokes the
deployed function for each step. Nothing in the API says "step X failed", so this module
watches two things until the rotation ends or a time limit passes:

- the version stages (DescribeSecret): the rotation succeeded when AWSCURRENT is on the
  token's version;
- the function's log events (CloudWatch Logs filter_log_events on /aws/lambda/<name>,
  filtered on the token, which this project's functions log as correlation id and which
  AWS's own functions print in their messages), when the caller may read them: each step's
  progress, and for a failure the step and the reason.

The service retries a failed rotation several times; after --max-failures failed steps in
the logs the follower stops waiting and reports the last one.

An emulator may hold the function without being able to run it: moto invokes a Lambda
function only through Docker, and without it logs "error running docker" in the function's
log group and leaves the new version empty. Against an emulator the follower stops at once
when that line is there and no step has started, and after EMULATOR_GRACE seconds without
any sign of a step otherwise, instead of polling until the timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rotation_cli.aws import Aws, error_code, error_message, function_name
from rotation_cli.driver import (
    CURRENT,
    PENDING,
    Check,
    DriverError,
    Verdict,
    function_output,
    lift_pending_from_current,
    new_token,
    probe_version,
    stages,
)
from rotation_core.protocol import Rotation

DEFAULT_TIMEOUT = 300.0
DEFAULT_POLL = 2.0
DEFAULT_MAX_FAILURES = 3
EMULATOR_GRACE = 5.0  # seconds an emulator gets to show that something runs the steps
_NO_DOCKER = "error running docker"  # what moto logs for an invocation it cannot run

Listener = Callable[[str, dict[str, Any]], None]


def _quiet(_kind: str, _data: dict[str, Any]) -> None:
    return None


@dataclass
class LogLine:
    seconds: float  # since the rotation was started
    level: str
    step: str | None
    message: str
    error: str | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.level in ("ERROR", "CRITICAL")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "level": self.level,
            "step": self.step,
            "message": self.message,
            "error": self.error,
            "reason": self.reason,
        }


@dataclass
class RemoteOutcome:
    secret_arn: str
    function_arn: str
    token: str = ""
    started: str = ""  # what happened at the start
    finished: bool = False
    timed_out: bool = False
    gave_up: bool = False
    stopped: str | None = None  # why following stopped early
    not_run: str | None = None  # the emulator does not run the function: why we think so
    seconds: float = 0.0
    logs: list[LogLine] = field(default_factory=list)
    logs_readable: bool | None = None
    log_note: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[LogLine]:
        return [line for line in self.logs if line.failed]

    @property
    def ok(self) -> bool:
        return self.finished and all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        last = self.failures[-1] if self.failures else None
        return {
            "secret": self.secret_arn,
            "function": self.function_arn,
            "token": self.token,
            "started": self.started,
            "finished": self.finished,
            "timed_out": self.timed_out,
            "gave_up": self.gave_up,
            "stopped": self.stopped,
            "emulator_cannot_run": self.not_run,
            "seconds": round(self.seconds, 3),
            "logs_readable": self.logs_readable,
            "log_note": self.log_note,
            "logs": [line.as_dict() for line in self.logs],
            "failed_step": last.step if last else None,
            "failure": (last.reason or last.error or last.message) if last else None,
            "checks": [check.as_dict() for check in self.checks],
            "ok": self.ok,
        }


def parse_log_message(message: str, seconds: float) -> LogLine:
    text = message.strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        step = doc.get("step")
        return LogLine(
            seconds,
            str(doc.get("level", "INFO")).upper(),
            step if isinstance(step, str) and step != "unknown" else None,
            str(doc.get("message", "")),
            str(doc["error"]) if doc.get("error") else None,
            str(doc["reason"]) if doc.get("reason") else None,
        )
    level = "INFO"
    for candidate in ("ERROR", "CRITICAL", "WARNING", "INFO", "DEBUG"):
        if text.startswith(f"[{candidate}]"):
            level = candidate
            break
    step = next((s for s in ("createSecret", "setSecret", "testSecret", "finishSecret") if s in text), None)
    return LogLine(seconds, level, step, text[:300])


class _LogReader:
    def __init__(self, aws: Aws, function_arn: str, token: str, since_ms: int) -> None:
        self.client = aws.logs
        self.group = f"/aws/lambda/{function_name(function_arn)}"
        self.token = token
        self.since_ms = since_ms
        self.seen: set[str] = set()
        self.readable: bool | None = None
        self.note: str | None = None

    def read(self, started: float) -> list[LogLine]:
        if self.readable is False:
            return []
        lines: list[LogLine] = []
        kwargs: dict[str, Any] = {
            "logGroupName": self.group,
            "startTime": self.since_ms,
            "filterPattern": f'"{self.token}"',
        }
        try:
            while True:
                page = self.client.filter_log_events(**kwargs)
                for item in page.get("events", []):
                    key = str(item.get("eventId") or (item.get("timestamp"), item.get("message")))
                    if key in self.seen or self.token not in str(item.get("message", "")):
                        continue
                    self.seen.add(key)
                    seconds = float(item.get("timestamp", 0)) / 1000 - started
                    lines.append(parse_log_message(str(item.get("message", "")), seconds))
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                self.note = f"no log group {self.group} yet"
                return lines
            self.readable = False
            self.note = f"cannot read the function's logs ({error_message(exc)}): following the version stages only"
            return lines
        self.readable = True
        self.note = None
        return lines


def _emulator_error(aws: Aws, function_arn: str, since_ms: int) -> str | None:
    """moto's own log line for an invocation it could not run (no Docker), if there is one."""
    try:
        page = aws.logs.filter_log_events(
            logGroupName=f"/aws/lambda/{function_name(function_arn)}",
            startTime=since_ms,
            filterPattern=f'"{_NO_DOCKER}"',
        )
    except Exception:  # noqa: BLE001 - no log group, or no logs at all: no evidence either way
        return None
    for item in page.get("events", []):
        message = str(item.get("message", ""))
        if _NO_DOCKER in message:
            return message.splitlines()[0][:200] if message else message
    return None


def _step_started(client: Any, arn: str, token: str, outcome: RemoteOutcome) -> bool:
    """Any sign that something runs the steps: a log line for the token, or a value in its version."""
    if outcome.logs:
        return True
    try:
        client.get_secret_value(SecretId=arn, VersionId=token)
    except Exception:  # noqa: BLE001 - no value yet (moto: ResourceNotFoundException)
        return False
    return True


def start(aws: Aws, secret_id: str, listen: Listener = _quiet) -> RemoteOutcome:
    """RotateSecret for a secret whose rotation function is configured."""
    client = aws.secretsmanager
    described = client.describe_secret(SecretId=secret_id)
    arn = str(described["ARN"])
    function_arn = described.get("RotationLambdaARN")
    if not function_arn:
        raise DriverError(
            "no rotation function is configured on this secret: attach one first "
            "(`attach SECRET --function ARN --schedule EXPR`)"
        )
    outcome = RemoteOutcome(arn, str(function_arn))
    versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    if stuck:
        # The service refuses RotateSecret now ("A previous rotation isn't complete. That
        # rotation will be reattempted."), and moto would wrongly accept it: follow that one.
        outcome.token = stuck[0]
        outcome.started = (
            f"a previous rotation is unfinished (AWSPENDING on version {stuck[0]}): Secrets Manager refuses a new "
            "one and reattempts that rotation; following it (`recover` clears it instead)"
        )
        listen("started", {"token": outcome.token, "text": outcome.started})
        return outcome
    token = new_token()
    kwargs: dict[str, Any] = {"SecretId": arn, "ClientRequestToken": token}
    if aws.emulator:
        lift_pending_from_current(client, arn, versions)
        kwargs["RotationLambdaARN"] = function_arn  # without it, moto moves AWSCURRENT to the empty version
    try:
        client.rotate_secret(**kwargs)
    except client.exceptions.ResourceNotFoundException:
        # The secret exists (described above): what is missing is its rotation function. An
        # emulator may have staged the new version AWSPENDING before looking for the function:
        # take that label off again, so that nothing is left changed.
        if PENDING in stages(client, arn).get(token, []):
            client.update_secret_version_stage(SecretId=arn, VersionStage=PENDING, RemoveFromVersionId=token)
        raise DriverError(
            f"the secret's rotation function {function_arn} does not exist: attach a deployed one "
            "(`attach SECRET --function ARN --schedule EXPR`); nothing was changed"
        ) from None
    outcome.token = token
    outcome.started = f"RotateSecret accepted: Secrets Manager invokes {function_arn} for version {token}"
    listen("started", {"token": token, "text": outcome.started})
    return outcome


def follow(
    aws: Aws,
    outcome: RemoteOutcome,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL,
    max_failures: int = DEFAULT_MAX_FAILURES,
    rotation: Rotation | None = None,
    listen: Listener = _quiet,
    function_log: TextIO | None = None,
) -> RemoteOutcome:
    """Wait for the rotation of outcome.token to end; then check the final state."""
    client = aws.secretsmanager
    started = time.time()
    began = time.monotonic()
    reader = _LogReader(aws, outcome.function_arn, outcome.token, int((started - 60) * 1000))

    def drain() -> None:
        for line in reader.read(started):
            outcome.logs.append(line)
            listen("log", line.as_dict())

    watch_emulator = aws.emulator
    while True:
        # One clock reading per round for both the emulator's grace and the timeout, so a
        # slow round cannot pass the timeout between the two checks.
        waited = time.monotonic() - began
        versions = stages(client, outcome.secret_arn)
        drain()
        labels = versions.get(outcome.token)
        if labels is not None and CURRENT in labels:
            outcome.finished = True
            break
        if labels is None or PENDING not in labels:
            outcome.stopped = f"version {outcome.token} is no longer AWSPENDING and did not become AWSCURRENT"
            break
        if watch_emulator:
            if _step_started(client, outcome.secret_arn, outcome.token, outcome):
                watch_emulator = False  # something runs the steps: follow them as usual
            else:
                error = _emulator_error(aws, outcome.function_arn, reader.since_ms)
                if error is not None or waited >= min(timeout, EMULATOR_GRACE):
                    outcome.not_run = (
                        f"the emulator cannot invoke the function (moto needs Docker for that; its log: {error})"
                        if error is not None
                        else f"the emulator has not run the function: no step started in {waited:.1f} s "
                        "(moto invokes a Lambda function only through Docker)"
                    )
                    outcome.stopped = outcome.not_run
                    break
        if max_failures and len(outcome.failures) >= max_failures:
            outcome.gave_up = True
            break
        if waited > timeout:
            outcome.timed_out = True
            break
        time.sleep(poll)
    drain()
    outcome.logs_readable = reader.readable
    outcome.log_note = reader.note
    outcome.seconds = time.monotonic() - began
    if outcome.finished:
        versions = stages(client, outcome.secret_arn)
        stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
        checks = [
            Check("AWSCURRENT is on the token's version", True, f"version {outcome.token}"),
            Check(
                "no AWSPENDING left on a version that is not AWSCURRENT",
                not stuck,
                f"AWSPENDING on {', '.join(stuck)}" if stuck else "",
            ),
        ]
        if rotation is not None:
            with function_output(function_log):
                probe = probe_version(rotation, client, outcome.secret_arn, outcome.token)
            checks.append(
                Check(
                    "the new credential works (local testSecret logic)",
                    probe.verdict is Verdict.WORKS,
                    probe.detail,
                )
            )
        for check in checks:
            outcome.checks.append(check)
            listen("check", check.as_dict())
    return outcome
