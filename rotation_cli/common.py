"""What every command shares: exit codes, output, the AWS target, the function that rotates a
secret, and the commands to suggest (printed so that they run as printed)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
from pathlib import Path
from typing import Any, TextIO

from rotation_cli import paths
from rotation_cli.aws import Aws
from rotation_cli.driver import CURRENT
from rotation_cli.errors import UsageError

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT, DEFAULT_POLL, DEFAULT_MAX_FAILURES = 300.0, 2.0, 3
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


def aws_target(args: argparse.Namespace) -> Aws:
    return Aws.from_options(
        args.endpoint_url, args.region, args.profile, args.emulator, secret_id=getattr(args, "secret", None)
    )


def load_handler(engine: str) -> Any:
    module = paths.load_function(engine)
    return module.lambda_handler


# -- commands the output suggests: printed so that they run as printed ----------------------------
def program() -> str:
    """bin/rotate, as it can be typed from here."""
    launcher = paths.ROOT / "bin" / "rotate"
    with contextlib.suppress(OSError, ValueError):
        if Path.cwd().resolve() == paths.ROOT:
            return "bin/rotate"
    return str(launcher)


def command(aws: Aws, args: argparse.Namespace, *words: str, with_env: bool = False) -> str:
    """A full command line reaching the same account and endpoint, with the same --env."""
    parts = [program(), *words, *aws.option_args()]
    if with_env:
        for pair in getattr(args, "env", []):
            parts += ["--env", pair]
    return " ".join(shlex.quote(part) for part in parts)


def engine_of(text: str | None, arn: str) -> str | None:
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
            handler = load_handler(name)
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


def guess_engine(client: Any, arn: str) -> str | None:
    try:
        text = client.get_secret_value(SecretId=arn, VersionStage=CURRENT)["SecretString"]
    except Exception:  # noqa: BLE001 - no guess then
        return None
    return engine_of(text, arn)


def no_engine_error() -> UsageError:
    return UsageError(
        "cannot tell which function rotates this secret (its 'engine' field names none): "
        f"pass --engine (one of: {', '.join(paths.engines()) or 'none found'})"
    )
