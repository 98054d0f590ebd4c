"""The command line: `python -m rotation_cli <command> ...` (or bin/rotate).

Commands: rotate, status, recover, attach, events. Each prints what it does, step by
step, with durations and results; --json prints one JSON document instead. Exit codes:
0 success (or a healthy secret), 1 the rotation failed / problems were found / the
command refused to act, 2 bad arguments or an error reaching AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from rotation_cli import paths
from rotation_cli.aws import Aws, error_message
from rotation_cli.driver import (
    DEFAULT_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    STEPS,
    DriverError,
    LocalRotation,
    RotationOutcome,
    bind,
    describe_error,
)
from rotation_cli.schedule import ScheduleError

OK, FAILED, USAGE = 0, 1, 2


class Output:
    """Human lines as they happen, or one JSON document at the end (--json)."""

    def __init__(self, stream: TextIO, json_mode: bool) -> None:
        self.stream = stream
        self.json_mode = json_mode
        self.headers: set[str] = set()

    def header(self, text: str) -> None:
        """A section title, printed once."""
        if text not in self.headers:
            self.headers.add(text)
            self.line(text)

    def line(self, text: str = "") -> None:
        if not self.json_mode:
            self.stream.write(text + "\n")
            self.stream.flush()

    def document(self, doc: dict[str, Any]) -> None:
        if self.json_mode:
            self.stream.write(json.dumps(doc, indent=2, default=str) + "\n")
            self.stream.flush()


def _short(version: str | None) -> str:
    return version or "-"


@contextlib.contextmanager
def _environment(pairs: Sequence[str]) -> Iterator[None]:
    """--env KEY=VALUE: the function's environment variables (as Lambda would set them)."""
    saved: dict[str, str | None] = {}
    try:
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise DriverError(f"--env takes KEY=VALUE, not '{pair}'")
            saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _aws(args: argparse.Namespace) -> Aws:
    return Aws.from_options(args.endpoint_url, args.region, args.profile, args.emulator)


def _handler(engine: str) -> Any:
    module = paths.load_function(engine)
    return module.lambda_handler


def _guess_engine(client: Any, arn: str) -> str | None:
    """The function whose engine accepts the secret's "engine" field (postgres, mysql, ...)."""
    try:
        doc = json.loads(client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
    except Exception:  # noqa: BLE001 - no guess then
        return None
    wanted = doc.get("engine") if isinstance(doc, dict) else None
    if not isinstance(wanted, str):
        return None
    for name in paths.engines():
        try:
            handler = _handler(name)
        except Exception:  # noqa: BLE001, S112 - a function that does not load is not a candidate
            continue
        defaults = getattr(getattr(getattr(handler, "rotation", None), "engine", None), "defaults", None)
        if defaults is not None and wanted in getattr(defaults, "engines", ()):
            return name
    return None


# -- rotate -----------------------------------------------------------------------------------
def _print_rotation_event(out: Output, kind: str, data: dict[str, Any]) -> None:
    if kind == "resumed":
        out.line(f"  version {data['token']}: resuming the unfinished rotation (the service reattempts it too)")
    elif kind == "prepared":
        out.line(f"  version {data['token']}: {data['how']}")
    elif kind == "attempt":
        out.line(f"  attempt {data['attempt']} of {data['of']}")
    elif kind == "step":
        result = "ok" if data["ok"] else "FAILED"
        detail = f"  {data['error']}" if data.get("error") else ""
        out.line(f"    {data['step']:<13} {result:<7}{data['ms']:9.1f} ms{detail}")
    elif kind == "retry":
        out.line(f"  retrying the whole rotation with the same token in {data['delay']:g} s (as the service does)")
    elif kind == "stopped":
        out.line(f"  stopped after {data['step']} as asked (--fail-at): the rotation is left unfinished")
    elif kind == "check":
        out.header("  final state")
        mark = "ok" if data["ok"] else "FAILED"
        detail = f": {data['detail']}" if data.get("detail") else ""
        out.line(f"    {mark:<6} {data['check']}{detail}")


def _rotation_summary(out: Output, outcome: RotationOutcome, name: str) -> int:
    if outcome.stopped_after is not None:
        out.line(
            f"rotation stopped after {outcome.stopped_after}: AWSPENDING stays on version {outcome.token}, "
            f"not AWSCURRENT. `status {name}` shows it; `rotate {name} --local` again resumes it; "
            f"`recover {name}` clears it"
        )
        return FAILED
    if not outcome.completed:
        last = outcome.attempts[-1][-1] if outcome.attempts and outcome.attempts[-1] else None
        where = f"{last.step} failed: {last.error}" if last else "no step ran"
        out.line(
            f"rotation FAILED after {len(outcome.attempts)} attempt(s): {where}. AWSPENDING stays on version "
            f"{outcome.token}; fix the cause and run again to resume, or `recover {name}`"
        )
        return FAILED
    if not outcome.ok:
        out.line("rotation FAILED its final checks (see above)")
        return FAILED
    user = f" (user {outcome.user})" if outcome.user else ""
    out.line(f"rotation succeeded in {outcome.seconds:.2f} s: AWSCURRENT is version {outcome.token}{user}")
    return OK


def cmd_rotate(args: argparse.Namespace, out: Output) -> int:
    aws = _aws(args)
    if args.remote:
        return _rotate_remote(args, aws, out)
    if not args.engine:
        raise DriverError(f"--local needs --engine (one of: {', '.join(paths.engines()) or 'none found'})")
    handler = bind(_handler(args.engine), aws.secretsmanager)
    out.line(f"rotate {args.secret}  (local: function {args.engine}, {aws.describe_target()})")
    rotation = LocalRotation(
        handler,
        aws.secretsmanager,
        emulator=aws.emulator,
        attempts=args.attempts,
        retry_delay=args.retry_delay,
        function_log=sys.stderr if args.verbose else None,
        listen=lambda kind, data: _print_rotation_event(out, kind, data),
    )
    outcome = rotation.run(args.secret, token=args.token, fail_at=args.fail_at)
    code = _rotation_summary(out, outcome, args.secret)
    out.document({"command": "rotate", "mode": "local", "engine": args.engine, **outcome.as_dict()})
    return code


def _rotate_remote(args: argparse.Namespace, aws: Aws, out: Output) -> int:
    from rotation_cli import remote

    if args.fail_at or args.token:
        raise DriverError("--fail-at and --token are for --local: in remote mode the service chooses the token")
    rotation = bind(_handler(args.engine), aws.secretsmanager).rotation if args.engine else None
    out.line(f"rotate {args.secret}  (remote: Secrets Manager invokes the deployed function; {aws.describe_target()})")

    def listen(kind: str, data: dict[str, Any]) -> None:
        if kind == "started":
            out.line(f"  {data['text']}")
            out.line(f"  following version {data['token']} (timeout {args.timeout:g} s)")
        elif kind == "log":
            step = data.get("step") or "-"
            text = data.get("message") or ""
            if data.get("error") or data.get("reason"):
                text = f"{text}: {data.get('error') or ''} {data.get('reason') or ''}".strip()
            at = f"+{data['seconds']:.1f} s"
            out.line(f"    {at:>9}  {step:<13} {data['level']:<7} {text}")
        elif kind == "check":
            mark = "ok" if data["ok"] else "FAILED"
            detail = f": {data['detail']}" if data.get("detail") else ""
            out.line(f"    {mark:<6} {data['check']}{detail}")

    outcome = remote.start(aws, args.secret, listen)
    outcome = remote.follow(
        aws,
        outcome,
        timeout=args.timeout,
        poll=args.poll,
        max_failures=args.max_failures,
        rotation=rotation,
        listen=listen,
    )
    if outcome.log_note:
        out.line(f"  note: {outcome.log_note}")
    code = _remote_summary(out, outcome)
    out.document({"command": "rotate", "mode": "remote", **outcome.as_dict()})
    return code


def _remote_summary(out: Output, outcome: Any) -> int:
    failure = outcome.failures[-1] if outcome.failures else None
    why = ""
    if failure is not None:
        reason = failure.reason or failure.error or failure.message
        why = f": {failure.step or 'a step'} failed: {reason}"
    if outcome.ok:
        out.line(f"rotation succeeded in {outcome.seconds:.1f} s: AWSCURRENT is version {outcome.token}")
        return OK
    if outcome.finished:
        out.line("rotation finished but FAILED its final checks (see above)")
    elif outcome.gave_up:
        out.line(f"rotation FAILED{why} (seen {len(outcome.failures)} times; the service may retry again)")
    elif outcome.timed_out:
        out.line(f"rotation did not finish within the timeout{why or ' (no failure seen in the logs)'}")
    else:
        out.line(f"rotation ended without success: {outcome.stopped}{why}")
    return FAILED


# -- status -------------------------------------------------------------------------------------
def _function_facts(check: Any) -> str:
    facts = []
    if check.exists:
        facts.append("exists")
        if check.runtime:
            facts.append(check.runtime)
    elif check.exists is False:
        facts.append("MISSING")
    if check.invoke_allowed is True:
        facts.append("Secrets Manager may invoke it")
    elif check.invoke_allowed is False:
        facts.append("Secrets Manager may NOT invoke it")
    return f"  ({'; '.join(facts)})" if facts else ""


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import status as inspect

    aws = _aws(args)
    result = inspect.gather(aws, args.secret, engine_hint=args.engine, with_function=not args.no_function_check)
    if result.stuck() and not args.engine:
        guessed = _guess_engine(aws.secretsmanager, result.arn)
        if guessed:
            result.findings.clear()
            described = aws.secretsmanager.describe_secret(SecretId=result.arn)
            inspect.diagnose(result, described, guessed)
    out.line(f"secret     {result.name}")
    out.line(f"arn        {result.arn}")
    rules = result.rules
    days = rules.get("AutomaticallyAfterDays")
    schedule = rules.get("ScheduleExpression") or (
        ("every day" if days == 1 else f"every {days} days") if days else "none"
    )
    window = f", window {rules['Duration']}" if rules.get("Duration") else ""
    out.line(f"rotation   {'enabled' if result.rotation_enabled else 'not enabled'}; schedule {schedule}{window}")
    function = result.function_arn or "none"
    if result.function is not None:
        function += _function_facts(result.function)
    out.line(f"function   {function}")
    out.line(f"last       {result.last_rotated or 'never rotated'}")
    out.line(f"next       {result.next_rotation or '-'}")
    out.line("versions")
    for info in result.versions:
        labels = ",".join(info.stages) or "(no label)"
        value = ""
        if info.has_value is False:
            value = "NO VALUE"
        elif info.user:
            value = f"user {info.user}"
        out.line(f"  {info.version:<38} {labels:<24} created {info.created or '-':<24} {value}".rstrip())
    out.line("diagnosis")
    for finding in result.findings:
        out.line(f"  {finding.level.upper():<8} {finding.text}")
    out.document({"command": "status", **result.as_dict()})
    return OK if result.healthy else FAILED


# -- recover ------------------------------------------------------------------------------------
def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import recover

    aws = _aws(args)
    client = aws.secretsmanager
    arn = str(client.describe_secret(SecretId=args.secret)["ARN"])
    engine = args.engine or _guess_engine(client, arn)
    handler = _handler(engine) if engine else None
    rotation = bind(handler, client).rotation if handler is not None else None
    out.line(f"recover {args.secret}  ({'apply' if args.apply else 'dry run'}; {aws.describe_target()})")
    if engine:
        out.line(f"  credentials are tried with the {engine} function's testSecret logic")
    plan = recover.plan(client, arn, rotation)
    for role, probe in plan.probes.items():
        user = f" (user {probe.username})" if probe.username else ""
        out.line(f"  {role:<9} version {probe.version}{user}: {probe.verdict.value.upper()}  {probe.detail}")
    code = OK
    if plan.pending is None:
        out.line(f"  nothing to recover: {plan.reason}")
    elif plan.refused:
        out.line(f"  REFUSED: {plan.refused}")
        out.line("  nothing was changed")
        code = FAILED
    else:
        out.line(f"  why: {plan.reason}")
        for note in plan.notes:
            out.line(f"  note: {note}")
        if args.apply:
            recover.apply(client, plan, handler)
            for done in plan.done:
                out.line(f"  done: {done}")
        else:
            out.line(f"  plan: {plan.describe_action()}")
            out.line("  dry run: nothing was changed; run again with --apply to do it")
    out.document({"command": "recover", "engine": engine, **plan.as_dict()})
    return code


# -- attach -------------------------------------------------------------------------------------
def cmd_attach(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import remote
    from rotation_cli.attach import attach
    from rotation_cli.schedule import validate

    schedule = validate(args.schedule, args.duration)
    aws = _aws(args)
    out.line(f"attach {args.function} to {args.secret}  ({aws.describe_target()})")
    out.line(f"  schedule ok: {schedule.describe()}")
    outcome = attach(aws, args.secret, args.function, schedule, rotate_now=not args.no_rotate_now)
    check = outcome.function
    if check is not None:
        if check.exists:
            out.line(f"  function exists ({check.runtime or 'runtime unknown'}, handler {check.handler or '?'})")
        if check.invoke_allowed:
            out.line("  Secrets Manager may invoke it (resource policy)")
        for note in check.notes:
            out.line(f"  note: {note}")
        for warning in check.warnings:
            out.line(f"  warning: {warning}")
        for problem in check.problems:
            out.line(f"  PROBLEM: {problem}")
    code = OK
    followed: Any = None
    if not outcome.attached:
        out.line("  not attached: nothing was changed")
        code = FAILED
    else:
        out.line(f"  attached: RotateSecret with RotationRules {json.dumps(schedule.rotation_rules())}")
        for note in outcome.notes:
            out.line(f"  {note}")
        if outcome.rotate_now and outcome.token and not args.no_wait:
            followed = remote.RemoteOutcome(outcome.secret_arn, outcome.function_arn, outcome.token)
            followed.started = "RotateSecret accepted (RotateImmediately)"
            out.line(f"  first rotation started (version {outcome.token}); following it (timeout {args.timeout:g} s)")
            followed = remote.follow(
                aws, followed, timeout=args.timeout, poll=args.poll, max_failures=args.max_failures
            )
            code = _remote_summary(out, followed)
        elif outcome.rotate_now:
            out.line(f"  first rotation started; `status {args.secret}` shows how it went")
        else:
            out.line("  no rotation now (--no-rotate-now): the first one runs in the next rotation window")
    first = followed.as_dict() if followed is not None else None
    out.document({"command": "attach", **outcome.as_dict(), "first_rotation": first, "ok": code == OK})
    return code


# -- events -------------------------------------------------------------------------------------
def cmd_events(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli.events import write_events

    if args.out is None and not args.engine:
        raise DriverError("give --engine (events go to events/<engine>/) or --out DIR")
    out_dir = Path(args.out) if args.out else Path("events") / args.engine
    token, files, notes = write_events(args.secret, args.token, out_dir)
    out.line(f"events for {args.secret}, ClientRequestToken {token}")
    for path in files:
        out.line(f"  wrote {path}")
    for note in notes:
        out.line(f"  note: {note}")
    if args.engine:
        out.line(f"  try one: sam local invoke {_logical_id_hint(args.engine)} -e {files[0]}")
    out.document({"command": "events", "token": token, "files": [str(p) for p in files], "notes": notes})
    return OK


def _logical_id_hint(engine: str) -> str:
    """The function's logical id in template.yaml (the resource whose CodeUri is functions/<engine>/)."""
    template = paths.ROOT / "template.yaml"
    resource = None
    with contextlib.suppress(OSError):
        for line in template.read_text(encoding="utf-8").splitlines():
            top = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
            if top:
                resource = top.group(1)
            code = re.match(r"^\s+CodeUri:\s*['\"]?functions/([^/'\"\s]+)/?", line)
            if code and code.group(1) == engine and resource:
                return resource
    return "".join(part.capitalize() for part in engine.split("_")) + "RotationFunction"


# -- parsing ------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output and AWS")
    group.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    group.add_argument("--region", help="AWS region (default: the profile's or AWS_DEFAULT_REGION)")
    group.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
    group.add_argument(
        "--endpoint-url",
        help="Secrets Manager endpoint, e.g. moto's server http://127.0.0.1:5000 "
        "(default: AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL, SECRETS_MANAGER_ENDPOINT)",
    )
    emulator = group.add_mutually_exclusive_group()
    emulator.add_argument(
        "--emulator",
        dest="emulator",
        action="store_const",
        const=True,
        default=None,
        help="the endpoint is moto's server (default: any endpoint that is not an AWS host)",
    )
    emulator.add_argument(
        "--no-emulator",
        dest="emulator",
        action="store_const",
        const=False,
        help="the endpoint is the real service (an AWS VPC endpoint or proxy, say)",
    )
    group.add_argument("--verbose", "-v", action="store_true", help="show the function's own logs (on stderr)")
    group.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the function, as Lambda would set it (repeatable), e.g. DB_CA_BUNDLE=ca.pem",
    )
    return common


def _follow_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--timeout", type=float, default=300.0, help=f"seconds to wait for {what} (default 300)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the secret (default 2)")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="stop waiting after this many failed steps in the function's logs (default 3; 0: never)",
    )


def build_parser() -> argparse.ArgumentParser:
    engines = ", ".join(paths.engines()) or "none found"
    parser = argparse.ArgumentParser(
        prog="rotate",
        description="Rotate, inspect and repair AWS Secrets Manager rotations (functions: " + engines + ").",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    rotate = commands.add_parser(
        "rotate", parents=[common], help="run a full rotation now", description="Run a full rotation of a secret now."
    )
    rotate.add_argument("secret", help="secret name or ARN")
    mode = rotate.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run the function's code here, as Secrets Manager would")
    mode.add_argument("--remote", action="store_true", help="ask Secrets Manager to rotate, then follow it")
    rotate.add_argument(
        "--engine", help=f"the function to run (local) or to verify the result with (remote): {engines}"
    )
    rotate.add_argument("--token", help="ClientRequestToken of the new version (local; default: a new UUID)")
    rotate.add_argument(
        "--fail-at",
        choices=STEPS[:3],
        help="stop after this step, leaving the rotation unfinished as a failure would (local)",
    )
    rotate.add_argument(
        "--attempts",
        type=int,
        default=DEFAULT_ATTEMPTS,
        help=f"attempts at the whole rotation when a step fails (local; default {DEFAULT_ATTEMPTS})",
    )
    rotate.add_argument(
        "--retry-delay",
        type=float,
        default=DEFAULT_RETRY_DELAY,
        help=f"seconds between attempts (local; default {DEFAULT_RETRY_DELAY:g})",
    )
    _follow_options(rotate, "the rotation (remote)")
    rotate.set_defaults(run=cmd_rotate)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show versions, schedule and function, and diagnose",
        description="Show a secret's versions, stages, rotation schedule and function, and what is wrong.",
    )
    status.add_argument("secret", help="secret name or ARN")
    status.add_argument("--engine", help="the function that rotates it (only used in suggested commands)")
    status.add_argument("--no-function-check", action="store_true", help="do not call Lambda to check the function")
    status.set_defaults(run=cmd_status)

    recover = commands.add_parser(
        "recover",
        parents=[common],
        help="clear a stuck rotation safely (dry run unless --apply)",
        description="Clear an unfinished rotation without losing the only working credential.",
    )
    recover.add_argument("secret", help="secret name or ARN")
    recover.add_argument("--apply", action="store_true", help="carry out the plan (default: print it only)")
    recover.add_argument("--engine", help=f"the function whose testSecret logic tries credentials: {engines}")
    recover.set_defaults(run=cmd_recover)

    attach = commands.add_parser(
        "attach",
        parents=[common],
        help="attach a deployed rotation function to a secret",
        description="Validate the schedule and the function, then enable rotation (RotateSecret).",
    )
    attach.add_argument("secret", help="secret name or ARN")
    attach.add_argument("--function", required=True, metavar="ARN", help="the rotation function's ARN")
    attach.add_argument("--schedule", required=True, metavar="EXPR", help="rate(N days|hours) or cron(0 H D M W *)")
    attach.add_argument("--duration", help="rotation window in hours, e.g. 2h")
    attach.add_argument(
        "--no-rotate-now", action="store_true", help="wait for the first window (RotateImmediately=false)"
    )
    attach.add_argument("--no-wait", action="store_true", help="do not follow the first rotation")
    _follow_options(attach, "the first rotation")
    attach.set_defaults(run=cmd_attach)

    events = commands.add_parser(
        "events",
        parents=[common],
        help="write the four step events for `sam local invoke -e`",
        description="Write createSecret.json ... finishSecret.json for a secret and token.",
    )
    events.add_argument("secret", metavar="SECRET_ARN", help="the secret's ARN (what the service sends)")
    events.add_argument("--token", help="ClientRequestToken: the AWSPENDING version's id (default: a new UUID)")
    events.add_argument("--engine", help="the function (the default folder is events/<engine>/)")
    events.add_argument("--out", help="folder to write to (default events/<engine>/)")
    events.set_defaults(run=cmd_events)
    return parser


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(stream if stream is not None else sys.stdout, args.json)
    try:
        with _environment(args.env):
            return int(args.run(args, out))
    except ScheduleError as exc:
        return _fail(out, f"invalid schedule: {exc}", USAGE)
    except (DriverError, paths.FunctionNotFoundError) as exc:
        return _fail(out, str(exc), FAILED if isinstance(exc, DriverError) else USAGE)
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            return _fail(out, error_message(exc), USAGE)
        if isinstance(exc, BotoCoreError):
            return _fail(out, f"{type(exc).__name__}: {exc}", USAGE)
        from rotation_core import RotationError

        if isinstance(exc, RotationError):
            return _fail(out, describe_error(exc), FAILED)
        raise


def _fail(out: Output, message: str, code: int) -> int:
    if out.json_mode:
        out.document({"ok": False, "error": message})
    else:
        sys.stderr.write(f"error: {message}\n")
    return code
