"""`events SECRET_ARN`: the four step events for `sam local invoke -e` (rotation_cli/events.py)."""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

from rotation_cli import paths
from rotation_cli.common import (
    OK,
    Output,
    aws_target,
    program,
)
from rotation_cli.errors import UsageError


def run(args: argparse.Namespace, out: Output) -> int:
    from rotation_cli.events import default_dir, write_events

    if args.out is None and not args.engine:
        raise UsageError(f"give --engine (events go to {default_dir('ENGINE')}/) or --out DIR")
    aws_given = {"--region": args.region, "--profile": args.profile, "--endpoint-url": args.endpoint_url}
    aws_given["--emulator/--no-emulator"] = args.emulator
    given = [name for name, value in aws_given.items() if value is not None]
    if given and not args.check:
        raise UsageError(f"{', '.join(given)}: only with --check (without it, events makes no AWS call)")
    out_dir = Path(args.out) if args.out else default_dir(args.engine)
    client = aws_target(args).secretsmanager if args.check else None
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
        out.line(f"  or without Docker: {program()} invoke --engine {args.engine} -e {written.files[0]}")
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
