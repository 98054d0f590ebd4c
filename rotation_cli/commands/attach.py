"""`attach SECRET --function ARN --schedule EXPR`: the checks of rotation_cli/attach.py, then
RotateSecret, then the first rotation followed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rotation_cli.commands.rotate import remote_summary
from rotation_cli.common import (
    FAILED,
    OK,
    Output,
    aws_target,
)


def run(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import remote
    from rotation_cli.attach import attach
    from rotation_cli.schedule import validate

    schedule = validate(args.schedule, args.duration)
    aws = aws_target(args)
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
            code = remote_summary(out, followed)
        elif outcome.rotate_now:
            out.line(f"  first rotation started; `status {args.secret}` shows how it went")
        else:
            out.line("  no rotation now (--no-rotate-now): the first one runs in the next rotation window")
    first = followed.as_dict() if followed is not None else None
    out.document({"command": "attach", **outcome.as_dict(), "first_rotation": first, "ok": code == OK})
    return code
