"""The command line: `python -m rotation_cli <command> ...` (or bin/rotate).

Commands: rotate, status, recover, attach, events, invoke. Each prints what it does, step by
step, with durations and results; --json prints one JSON document instead. Exit codes:
0 success (or a healthy secret), 1 the rotation failed / problems were found / the
command refused to act, 2 bad arguments (options, endpoints, configuration, missing
credentials or region) or an error reaching AWS, 130 interrupted (Ctrl-C). A user
mistake is one line on stderr, never a traceback, and is found before anything changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from rotation_cli import paths
from rotation_cli.aws import NO_CREDENTIALS, Aws, error_code, error_message
from rotation_cli.driver import (
    CURRENT,
    DEFAULT_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    STEPS,
    DriverError,
    LocalRotation,
    RotationOutcome,
    bind,
    describe_error,
)
from rotation_cli.errors import UsageError
from rotation_cli.schedule import ScheduleError

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT, DEFAULT_POLL, DEFAULT_MAX_FAILURES = 300.0, 2.0, 3
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EMULATOR_DATES = (
    "dates and schedules shown here are the emulator's, not the service's (moto stamps its own dates, "
    "computes no rotation window and rotates nothing on schedule)"
)


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


@contextlib.contextmanager
def _environment(pairs: Sequence[str]) -> Iterator[None]:
    """--env KEY=VALUE: the function's environment variables (as Lambda would set them)."""
    saved: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(f"--env takes KEY=VALUE with KEY a variable name, not '{key or pair}'")
    try:
        for pair in pairs:
            key, _, value = pair.partition("=")
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
    return Aws.from_options(
        args.endpoint_url, args.region, args.profile, args.emulator, secret_id=getattr(args, "secret", None)
    )


def _handler(engine: str) -> Any:
    module = paths.load_function(engine)
    return module.lambda_handler


# -- commands the output suggests: printed so that they run as printed ----------------------------
def _program() -> str:
    """bin/rotate, as it can be typed from here."""
    launcher = paths.ROOT / "bin" / "rotate"
    with contextlib.suppress(OSError, ValueError):
        if Path.cwd().resolve() == paths.ROOT:
            return "bin/rotate"
    return str(launcher)


def command(aws: Aws, args: argparse.Namespace, *words: str, with_env: bool = False) -> str:
    """A full command line reaching the same account and endpoint, with the same --env."""
    parts = [_program(), *words, *aws.option_args()]
    if with_env:
        for pair in getattr(args, "env", []):
            parts += ["--env", pair]
    return " ".join(shlex.quote(part) for part in parts)


def _engine_of(text: str | None, arn: str) -> str | None:
    """The function whose own parsing accepts the secret: for a database, the one whose
    engine accepts the secret's "engine" field; else one whose secret parser accepts it."""
    from rotation_cli.preflight import secret_parser

    try:
        doc = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    wanted = doc.get("engine")
    others = []
    for name in paths.engines():
        try:
            handler = _handler(name)
        except Exception:  # noqa: BLE001, S112 - a function that does not load is not a candidate
            continue
        rotation = getattr(handler, "rotation", None)
        defaults = getattr(getattr(rotation, "engine", None), "defaults", None)
        if defaults is not None:
            if isinstance(wanted, str) and wanted in getattr(defaults, "engines", ()):
                return name
        elif rotation is not None:
            others.append((name, rotation))
    if wanted is not None:
        return None
    for name, rotation in others:
        parse = secret_parser(rotation)
        if parse is None:
            continue
        try:
            parse(text or "", "current", arn)
        except Exception:  # noqa: BLE001, S112 - not this function's secret
            continue
        return name
    return None


def _guess_engine(client: Any, arn: str) -> str | None:
    try:
        text = client.get_secret_value(SecretId=arn, VersionStage=CURRENT)["SecretString"]
    except Exception:  # noqa: BLE001 - no guess then
        return None
    return _engine_of(text, arn)


def _no_engine_error() -> UsageError:
    return UsageError(
        "cannot tell which function rotates this secret (its 'engine' field names none): "
        f"pass --engine (one of: {', '.join(paths.engines()) or 'none found'})"
    )


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
        if data.get("hint"):
            out.line(f"      hint: {data['hint']}")
    elif kind == "retry":
        out.line(f"  retrying the whole rotation with the same token in {data['delay']:g} s (as the service does)")
    elif kind == "no-retry":
        out.line(f"  not retried: a retry cannot fix what made {data['step']} fail")
    elif kind == "stopped":
        out.line(f"  stopped after {data['step']} as asked (--fail-at): the rotation is left unfinished")
    elif kind == "check":
        out.header("  final state")
        mark = "ok" if data["ok"] else "FAILED"
        detail = f": {data['detail']}" if data.get("detail") else ""
        out.line(f"    {mark:<6} {data['check']}{detail}")


def _rotation_summary(out: Output, outcome: RotationOutcome, hints: dict[str, str]) -> int:
    if outcome.stopped_after is not None:
        out.line(
            f"rotation stopped after {outcome.stopped_after}: AWSPENDING stays on version {outcome.token}, "
            "not AWSCURRENT."
        )
        out.line(f"  see it:    {hints['status']}")
        out.line(f"  resume it: {hints['resume']}")
        out.line(f"  clear it:  {hints['recover']}")
        return FAILED
    if not outcome.completed:
        last = outcome.attempts[-1][-1] if outcome.attempts and outcome.attempts[-1] else None
        where = f"{last.step} failed: {last.error}" if last else "no step ran"
        retried = " (not retried: a retry cannot fix it)" if outcome.not_retried else ""
        out.line(f"rotation FAILED after {len(outcome.attempts)} attempt(s): {where}{retried}")
        if last is not None and last.hint:
            out.line(f"  hint: {last.hint}")
        out.line(f"  AWSPENDING stays on version {outcome.token}. Fix the cause, then resume it: {hints['resume']}")
        out.line(f"  or clear it: {hints['recover']}")
        return FAILED
    if not outcome.ok:
        out.line("rotation FAILED its final checks (see above)")
        return FAILED
    user = f" (user {outcome.user})" if outcome.user else ""
    out.line(f"rotation succeeded in {outcome.seconds:.2f} s: AWSCURRENT is version {outcome.token}{user}")
    return OK


def _check_mode_options(args: argparse.Namespace) -> None:
    """Options of the other mode do nothing: refuse them rather than ignore them."""
    local_only = {"--token": args.token, "--fail-at": args.fail_at, "--attempts": args.attempts}
    local_only["--retry-delay"] = args.retry_delay
    remote_only = {"--timeout": args.timeout, "--poll": args.poll, "--max-failures": args.max_failures}
    if args.remote:
        given = [name for name, value in local_only.items() if value is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)}: only for --local (in remote mode the service chooses the token and retries)"
            )
    else:
        given = [name for name, value in remote_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --remote (following a rotation the service runs)")


def cmd_rotate(args: argparse.Namespace, out: Output) -> int:
    _check_mode_options(args)
    aws = _aws(args)
    if args.remote:
        return _rotate_remote(args, aws, out)
    from rotation_cli import preflight

    client = aws.secretsmanager
    try:
        described = client.describe_secret(SecretId=args.secret)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise UsageError(f"secret '{args.secret}' not found ({aws.describe_target()})") from None
        raise
    arn = str(described["ARN"])
    current_text = preflight.read_value(client, arn, VersionStage=CURRENT)
    engine = args.engine or _engine_of(current_text, arn)
    if not engine:
        raise _no_engine_error()
    handler = bind(_handler(engine), client, aws.client)
    origin = "" if args.engine else " (from the secret)"
    out.line(f"rotate {args.secret}  (local: function {engine}{origin}, {aws.describe_target()})")
    hints = {
        "resume": command(aws, args, "rotate", args.secret, "--local", "--engine", engine, with_env=True),
        "recover": command(aws, args, "recover", args.secret, "--engine", engine, with_env=True),
        "status": command(aws, args, "status", args.secret, "--engine", engine),
    }
    checked = preflight.check(handler.rotation, client, described, current_text, os.environ)
    if checked.checks:
        out.line(f"  checked before any change: {'; '.join(checked.checks)}")
    rotation = LocalRotation(
        handler,
        client,
        emulator=aws.emulator,
        attempts=args.attempts if args.attempts is not None else DEFAULT_ATTEMPTS,
        retry_delay=args.retry_delay if args.retry_delay is not None else DEFAULT_RETRY_DELAY,
        function_log=sys.stderr if args.verbose else None,
        listen=lambda kind, data: _print_rotation_event(out, kind, data),
    )
    try:
        outcome = rotation.run(arn, token=args.token, fail_at=args.fail_at)
    except KeyboardInterrupt:
        return _interrupted(out, rotation, hints)
    code = _rotation_summary(out, outcome, hints)
    doc: dict[str, Any] = {"command": "rotate", "mode": "local", "engine": engine, **outcome.as_dict()}
    if code != OK and not outcome.completed:
        doc.update(resume_command=hints["resume"], recover_command=hints["recover"])
    out.document(doc)
    return code


def _interrupted(out: Output, rotation: LocalRotation, hints: dict[str, str]) -> int:
    """Ctrl-C: where the rotation stopped, and the commands that resume or clear it."""
    where = rotation.where()
    lines = [f"interrupted {where}"]
    doc: dict[str, Any] = {"command": "rotate", "ok": False, "interrupted": True, "where": where}
    if rotation.phase[0] == "not started":
        lines.append("nothing was changed")
    elif rotation.finished:
        lines.append(f"see it: {hints['status']}")
    else:
        lines += [f"resume it: {hints['resume']}", f"or clear it: {hints['recover']}", f"see it: {hints['status']}"]
        doc.update(token=rotation.token, resume_command=hints["resume"], recover_command=hints["recover"])
    if out.json_mode:
        out.document(doc)
    else:
        for line in lines:
            sys.stderr.write(line + "\n")
    return INTERRUPTED


def _rotate_remote(args: argparse.Namespace, aws: Aws, out: Output) -> int:
    from rotation_cli import remote

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    poll = args.poll if args.poll is not None else DEFAULT_POLL
    max_failures = args.max_failures if args.max_failures is not None else DEFAULT_MAX_FAILURES
    rotation = bind(_handler(args.engine), aws.secretsmanager, aws.client).rotation if args.engine else None
    out.line(f"rotate {args.secret}  (remote: Secrets Manager invokes the deployed function; {aws.describe_target()})")

    def listen(kind: str, data: dict[str, Any]) -> None:
        if kind == "started":
            out.line(f"  {data['text']}")
            out.line(f"  following version {data['token']} (timeout {timeout:g} s)")
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
        timeout=timeout,
        poll=poll,
        max_failures=max_failures,
        rotation=rotation,
        listen=listen,
        function_log=sys.stderr if args.verbose else None,
    )
    if outcome.log_note and not outcome.not_run:
        out.line(f"  note: {outcome.log_note}")
    code = _remote_summary(out, outcome)
    doc: dict[str, Any] = {"command": "rotate", "mode": "remote", **outcome.as_dict()}
    if outcome.not_run:
        engine = ["--engine", args.engine] if args.engine else []
        doc["local_command"] = command(aws, args, "rotate", args.secret, "--local", *engine, with_env=True)
        doc["recover_command"] = command(aws, args, "recover", args.secret, *engine, with_env=True)
        out.line(f"  AWSPENDING stays on version {outcome.token}, with no value: nothing ran a step.")
        out.line(f"  run the rotation here instead (it resumes that version): {doc['local_command']}")
        out.line(f"  or clear it: {doc['recover_command']}")
    out.document(doc)
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
    elif outcome.not_run:
        out.line(f"rotation not followed: {outcome.not_run}")
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
    if result.stuck():
        engine = args.engine or _guess_engine(aws.secretsmanager, result.arn)
        resume = command(aws, args, "rotate", args.secret, "--local", "--engine", engine or "ENGINE")
        recover = command(aws, args, "recover", args.secret, *(["--engine", engine] if engine else []))
        if not engine:
            resume += f" (ENGINE: the function that rotates it, one of {', '.join(paths.engines())})"
        result.findings.clear()
        described = aws.secretsmanager.describe_secret(SecretId=result.arn)
        inspect.diagnose(result, described, engine, commands={"resume": resume, "recover": recover})
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
    if aws.emulator:
        out.line(f"emulator   {EMULATOR_DATES}")
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
    out.document({"command": "status", **result.as_dict(), "emulator_note": EMULATOR_DATES if aws.emulator else None})
    return OK if result.healthy else FAILED


# -- recover ------------------------------------------------------------------------------------
def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import recover

    aws = _aws(args)
    client = aws.secretsmanager
    arn = str(client.describe_secret(SecretId=args.secret)["ARN"])
    engine = args.engine or _guess_engine(client, arn)
    handler = _handler(engine) if engine else None
    rotation = bind(handler, client, aws.client).rotation if handler is not None else None
    function_log = sys.stderr if args.verbose else None
    out.line(f"recover {args.secret}  ({'apply' if args.apply else 'dry run'}; {aws.describe_target()})")
    if engine:
        out.line(f"  credentials are tried with the {engine} function's testSecret logic")
    plan = recover.plan(client, arn, rotation, function_log=function_log)
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
            recover.apply(client, plan, handler, aws.client, function_log=function_log)
            for done in plan.done:
                out.line(f"  done: {done}")
        else:
            out.line(f"  plan: {plan.describe_action()}")
            engine_args = ["--engine", engine] if engine else []
            apply = command(aws, args, "recover", args.secret, "--apply", *engine_args, with_env=True)
            out.line(f"  dry run: nothing was changed; run again with --apply to do it: {apply}")
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
    from rotation_cli.events import default_dir, write_events

    if args.out is None and not args.engine:
        raise UsageError(f"give --engine (events go to {default_dir('ENGINE')}/) or --out DIR")
    aws_given = {"--region": args.region, "--profile": args.profile, "--endpoint-url": args.endpoint_url}
    aws_given["--emulator/--no-emulator"] = args.emulator
    given = [name for name, value in aws_given.items() if value is not None]
    if given and not args.check:
        raise UsageError(f"{', '.join(given)}: only with --check (without it, events makes no AWS call)")
    out_dir = Path(args.out) if args.out else default_dir(args.engine)
    client = _aws(args).secretsmanager if args.check else None
    written = write_events(args.secret, args.token, out_dir, force=args.force, client=client)
    out.line(f"events for {args.secret}, ClientRequestToken {written.token}")
    out.line(f"  into {out_dir.resolve()}/")
    for path in written.files:
        out.line(f"  wrote {path}")
    if written.checked:
        out.line(f"  checked: {written.checked}")
    else:
        out.line(
            "  not checked: no AWS call was made (--check does DescribeSecret): the function accepts these "
            "events only while this version of the secret is staged AWSPENDING"
        )
    for note in written.notes:
        out.line(f"  note: {note}")
    if args.engine:
        out.line(f"  try one: sam local invoke {_logical_id_hint(args.engine)} -e {written.files[0]}")
        out.line(f"  or without Docker: {_program()} invoke --engine {args.engine} -e {written.files[0]}")
    out.document(
        {
            "command": "events",
            "token": written.token,
            "folder": str(out_dir.resolve()),
            "files": [str(p) for p in written.files],
            "checked": written.checked,
            "notes": written.notes,
        }
    )
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


# -- invoke -------------------------------------------------------------------------------------
def _read_event(path: Path) -> dict[str, Any]:
    """The event file, as `sam local invoke -e` reads it: one JSON object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"-e: no event file {path}") from None
    except IsADirectoryError:
        raise UsageError(f"-e: {path} is a folder, not an event file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"-e: cannot read {path}: {type(exc).__name__}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"-e: {path} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise UsageError(
            f"-e: {path} holds a JSON {type(doc).__name__}, not the event object "
            '{"Step": ..., "SecretId": ..., "ClientRequestToken": ...}'
        )
    return doc


def _shown(value: Any) -> str:
    """A field of the event, safe to print (never the RotationToken)."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    return text if len(text) <= 200 else text[:199] + "..."


def cmd_invoke(args: argparse.Namespace, out: Output) -> int:
    """One step from an event file through the function's handler, here, without Docker."""
    import time

    from rotation_cli.driver import Redactor, function_output, stages
    from rotation_core import RotationError

    doc = _read_event(Path(args.event))
    secret_id = doc.get("SecretId")
    step, token = doc.get("Step"), doc.get("ClientRequestToken")
    function = _handler(args.engine)
    aws = Aws.from_options(
        args.endpoint_url,
        args.region,
        args.profile,
        args.emulator,
        secret_id=secret_id if isinstance(secret_id, str) else None,
    )
    client = aws.secretsmanager
    handler = bind(function, client, aws.client)
    out.line(
        f"invoke {args.engine} with {args.event}: {_shown(step)} for {_shown(secret_id)}, "
        f"version {_shown(token)}  ({aws.describe_target()})"
    )
    began = time.perf_counter()
    error: str | None = None
    try:
        with function_output(sys.stderr if args.verbose else None):
            handler(doc, None)
    except Exception as exc:  # noqa: BLE001 - reported as the step's outcome, as Lambda would
        redactor = Redactor()
        if not isinstance(exc, RotationError) and isinstance(secret_id, str):
            with contextlib.suppress(Exception):
                redactor.load(client, secret_id, [*stages(client, secret_id), *([token] if token else [])])
        error = describe_error(exc, redactor)
    ms = (time.perf_counter() - began) * 1000
    labels: list[str] | None = None
    if isinstance(secret_id, str) and isinstance(token, str):
        with contextlib.suppress(Exception):
            labels = stages(client, secret_id).get(token)
    if error is None:
        out.line(f"  {_shown(step):<13} ok     {ms:9.1f} ms")
    else:
        out.line(f"  {_shown(step):<13} FAILED {ms:9.1f} ms  {error}")
    if labels is not None:
        out.line(f"  version {_shown(token)} now: {','.join(labels) or '(no label)'}")
    out.document(
        {
            "command": "invoke",
            "engine": args.engine,
            "event": str(args.event),
            "step": step,
            "secret": secret_id,
            "token": token,
            "ok": error is None,
            "ms": round(ms, 1),
            "error": error,
            "stages": labels,
        }
    )
    return OK if error is None else FAILED


# -- parsing ------------------------------------------------------------------------------------
def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


def _seconds(*, zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'0' if zero else 'more than 0'} seconds or more, not {text}")
        return value

    return parse


def _aws_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output and AWS")
    group.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    group.add_argument(
        "--region", help="AWS region (default: the profile's, AWS_DEFAULT_REGION, AWS_REGION, or the secret ARN's)"
    )
    group.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
    group.add_argument(
        "--endpoint-url",
        help="Secrets Manager endpoint, e.g. moto's server http://127.0.0.1:5000; plain http only to this machine "
        "(default: AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL, SECRETS_MANAGER_ENDPOINT)",
    )
    emulator = group.add_mutually_exclusive_group()
    emulator.add_argument(
        "--emulator",
        dest="emulator",
        action="store_const",
        const=True,
        default=None,
        help="the endpoint is an emulator (moto's server); default: only an endpoint on this machine is one",
    )
    emulator.add_argument(
        "--no-emulator",
        dest="emulator",
        action="store_const",
        const=False,
        help="the endpoint is the real service, even on this machine (a tunnel or proxy to AWS)",
    )
    return common


def _function_options() -> argparse.ArgumentParser:
    """For the commands that run the function's code here."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("the function's code, run here")
    group.add_argument("--verbose", "-v", action="store_true", help="show the function's own logs (on stderr)")
    group.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the function, as Lambda would set it (repeatable), e.g. DB_CA_BUNDLE=ca.pem",
    )
    return common


def _follow_options(parser: argparse.ArgumentParser, what: str, *, defaults: bool) -> None:
    """--timeout, --poll, --max-failures; without defaults (None) where they belong to one mode."""
    parser.add_argument(
        "--timeout",
        type=_seconds(zero=False),
        default=DEFAULT_TIMEOUT if defaults else None,
        help=f"seconds to wait for {what} (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--poll",
        type=_seconds(zero=False),
        default=DEFAULT_POLL if defaults else None,
        help=f"seconds between looks at the secret (default {DEFAULT_POLL:g})",
    )
    parser.add_argument(
        "--max-failures",
        type=_whole(0),
        default=DEFAULT_MAX_FAILURES if defaults else None,
        help=f"stop waiting after this many failed steps in the function's logs (default {DEFAULT_MAX_FAILURES}; "
        "0: never)",
    )


def version() -> str:
    """The project's version (pyproject.toml, the one place it is written)."""
    import tomllib

    try:
        with (paths.ROOT / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    engines = ", ".join(paths.engines()) or "none found"
    parser = argparse.ArgumentParser(
        prog="rotate",
        description="Rotate, inspect and repair AWS Secrets Manager rotations (functions: " + engines + ").",
        epilog="Exit codes: 0 success or healthy; 1 the rotation failed, problems were found or the command "
        "refused to act; 2 bad arguments or an AWS error; 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"rotate {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    aws_options, function_options = _aws_options(), _function_options()

    rotate = commands.add_parser(
        "rotate",
        parents=[aws_options, function_options],
        help="run a full rotation now",
        description="Run a full rotation of a secret now.",
    )
    rotate.add_argument("secret", help="secret name or ARN")
    mode = rotate.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run the function's code here, as Secrets Manager would")
    mode.add_argument("--remote", action="store_true", help="ask Secrets Manager to rotate, then follow it")
    rotate.add_argument(
        "--engine",
        help=f"the function to run (local; default: the one the secret's 'engine' field names) or to verify the "
        f"result with (remote): {engines}",
    )
    rotate.add_argument("--token", help="ClientRequestToken of the new version (local; default: a new UUID)")
    rotate.add_argument(
        "--fail-at",
        choices=STEPS[:3],
        help="stop after this step, leaving the rotation unfinished as a failure would (local)",
    )
    rotate.add_argument(
        "--attempts",
        type=_whole(1),
        help=f"attempts at the whole rotation when a step fails in a way a retry can cure (local; default "
        f"{DEFAULT_ATTEMPTS})",
    )
    rotate.add_argument(
        "--retry-delay",
        type=_seconds(zero=True),
        help=f"seconds between attempts (local; default {DEFAULT_RETRY_DELAY:g})",
    )
    _follow_options(rotate, "the rotation (remote)", defaults=False)
    rotate.set_defaults(run=cmd_rotate)

    status = commands.add_parser(
        "status",
        parents=[aws_options],
        help="show versions, schedule and function, and diagnose",
        description="Show a secret's versions, stages, rotation schedule and function, and what is wrong.",
    )
    status.add_argument("secret", help="secret name or ARN")
    status.add_argument("--engine", help="the function that rotates it (only used in suggested commands)")
    status.add_argument("--no-function-check", action="store_true", help="do not call Lambda to check the function")
    status.set_defaults(run=cmd_status)

    recover = commands.add_parser(
        "recover",
        parents=[aws_options, function_options],
        help="clear a stuck rotation safely (dry run unless --apply)",
        description="Clear an unfinished rotation without losing the only working credential.",
    )
    recover.add_argument("secret", help="secret name or ARN")
    recover.add_argument("--apply", action="store_true", help="carry out the plan (default: print it only)")
    recover.add_argument("--engine", help=f"the function whose testSecret logic tries credentials: {engines}")
    recover.set_defaults(run=cmd_recover)

    attach = commands.add_parser(
        "attach",
        parents=[aws_options],
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
    _follow_options(attach, "the first rotation", defaults=True)
    attach.set_defaults(run=cmd_attach)

    events = commands.add_parser(
        "events",
        parents=[aws_options],
        help="write the four step events for `sam local invoke -e`",
        description="Write createSecret.json ... finishSecret.json for a secret and token (no AWS call unless "
        "--check). Existing files are never overwritten without --force.",
    )
    events.add_argument("secret", metavar="SECRET_ARN", help="the secret's ARN (what the service sends)")
    events.add_argument("--token", help="ClientRequestToken: the AWSPENDING version's id (default: a new UUID)")
    events.add_argument("--engine", help="the function (the default folder is .aws-sam/events/<engine>/)")
    events.add_argument(
        "--out", help="folder to write to (default .aws-sam/events/<engine>/ under the current directory)"
    )
    events.add_argument("--force", action="store_true", help="overwrite event files that already exist there")
    events.add_argument(
        "--check",
        action="store_true",
        help="first check with DescribeSecret that --token is the secret's AWSPENDING version (default: no AWS call)",
    )
    events.set_defaults(run=cmd_events)

    invoke = commands.add_parser(
        "invoke",
        parents=[aws_options, function_options],
        help="run one step from an event file here, as `sam local invoke -e` would (no Docker)",
        description="Load functions/<engine>/app.py with the layer, as Lambda would, and invoke its handler once "
        "with the event file (e.g. events/postgres/createSecret.json, or one `events` wrote). Exit 0 if the step "
        "succeeded, 1 if the function failed or refused the event.",
    )
    invoke.add_argument("--engine", "--function", dest="engine", required=True, help=f"the function: {engines}")
    invoke.add_argument("-e", "--event", required=True, metavar="FILE", help="the event file (JSON), as for sam")
    invoke.set_defaults(run=cmd_invoke)
    return parser


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a bad argument (2, already printed)
        return exc.code if isinstance(exc.code, int) else USAGE
    out = Output(stream if stream is not None else sys.stdout, args.json)
    try:
        with _environment(getattr(args, "env", [])):
            return int(args.run(args, out))
    except KeyboardInterrupt:
        return _fail(out, "interrupted (Ctrl-C)", INTERRUPTED)
    except Exception as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        return _fail(out, *known)


def _known_failure(exc: Exception) -> tuple[str, int] | None:  # noqa: PLR0911 - one return per kind
    """(one line, exit code) for the errors a user can meet; None for a bug (traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    from rotation_core import RotationError

    if isinstance(exc, UsageError | paths.FunctionNotFoundError):
        return str(exc), USAGE
    if isinstance(exc, ScheduleError):
        return f"invalid schedule: {exc}", USAGE
    if isinstance(exc, DriverError):
        return str(exc), FAILED
    if isinstance(exc, ClientError):
        return error_message(exc), USAGE
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS, USAGE
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}: is it running?", USAGE
    if isinstance(exc, BotoCoreError):
        return describe_error(exc), USAGE
    if isinstance(exc, RotationError):
        return describe_error(exc), FAILED
    return None


def _fail(out: Output, message: str, code: int) -> int:
    if out.json_mode:
        out.document({"ok": False, "error": message})
    else:
        sys.stderr.write(f"error: {message}\n")
    return code
