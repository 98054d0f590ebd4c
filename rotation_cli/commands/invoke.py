"""`invoke --engine E -e FILE`: one step from an event file through the function's handler, here,
as `sam local invoke -e` would run it, without Docker."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from rotation_cli.aws import Aws
from rotation_cli.common import (
    FAILED,
    OK,
    Output,
    load_handler,
)
from rotation_cli.driver import (
    bind,
    describe_error,
)
from rotation_cli.errors import UsageError


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


def run(args: argparse.Namespace, out: Output) -> int:
    """One step from an event file through the function's handler, here, without Docker."""
    import time

    from rotation_cli.driver import Redactor, function_output, stages
    from rotation_core import RotationError

    doc = _read_event(Path(args.event))
    secret_id = doc.get("SecretId")
    step, token = doc.get("Step"), doc.get("ClientRequestToken")
    function = load_handler(args.engine)
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
