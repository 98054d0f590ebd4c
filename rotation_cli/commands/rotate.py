"""`rotate SECRET --local|--remote`: a full rotation now, here with the function's code, or by the
service with the deployed function, followed step by step."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rotation_cli.aws import Aws, error_code
from rotation_cli.common import (
    DEFAULT_MAX_FAILURES,
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    FAILED,
    INTERRUPTED,
    OK,
    Output,
    aws_target,
    command,
    engine_of,
    load_handler,
    no_engine_error,
)
from rotation_cli.driver import (
    CURRENT,
    DEFAULT_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    LocalRotation,
    RotationOutcome,
    bind,
)
from rotation_cli.errors import UsageError


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


def rotation_summary(out: Output, outcome: RotationOutcome, hints: dict[str, str]) -> int:
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


def run(args: argparse.Namespace, out: Output) -> int:
    _check_mode_options(args)
    aws = aws_target(args)
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
    engine = args.engine or engine_of(current_text, arn)
    if not engine:
        raise no_engine_error()
    handler = bind(load_handler(engine), client, aws.client)
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
    code = rotation_summary(out, outcome, hints)
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
    rotation = bind(load_handler(args.engine), aws.secretsmanager, aws.client).rotation if args.engine else None
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
    code = remote_summary(out, outcome)
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


def remote_summary(out: Output, outcome: Any) -> int:
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
