"""`recover SECRET [--apply]`: the plan that clears an unfinished rotation without losing the only
working credential (rotation_cli/recover.py decides), printed, and carried out with --apply."""

from __future__ import annotations

import argparse
import sys

from rotation_cli.common import (
    FAILED,
    OK,
    Output,
    aws_target,
    command,
    guess_engine,
    load_handler,
)
from rotation_cli.driver import (
    bind,
)


def run(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import recover

    aws = aws_target(args)
    client = aws.secretsmanager
    arn = str(client.describe_secret(SecretId=args.secret)["ARN"])
    engine = args.engine or guess_engine(client, arn)
    handler = load_handler(engine) if engine else None
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
