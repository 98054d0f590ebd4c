"""`status SECRET`: versions, stages, schedule and function of a secret, and what is wrong."""

from __future__ import annotations

import argparse
from typing import Any

from rotation_cli import paths
from rotation_cli.common import (
    EMULATOR_DATES,
    FAILED,
    OK,
    Output,
    aws_target,
    command,
    guess_engine,
)


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


def run(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli import status as inspect

    aws = aws_target(args)
    result = inspect.gather(aws, args.secret, engine_hint=args.engine, with_function=not args.no_function_check)
    if result.stuck():
        engine = args.engine or guess_engine(aws.secretsmanager, result.arn)
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
