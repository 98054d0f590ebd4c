"""The command line: `python -m rotation_cli <command> ...` (or bin/rotate): the parser and main.

Commands (one module each under rotation_cli/commands/): rotate, status, recover, attach,
events, invoke, audit. Each prints what it does, step by step, with durations and results; --json
prints one JSON document instead. Exit codes: 0 success (or a healthy secret), 1 the rotation
failed / problems were found / the command refused to act, 2 bad arguments (options,
endpoints, configuration, missing credentials or region) or an error reaching AWS, 130
interrupted (Ctrl-C). A user mistake is one line on stderr, never a traceback, and is found
before anything changes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from rotation_cli import paths
from rotation_cli.aws import NO_CREDENTIALS, error_message
from rotation_cli.commands import attach, audit, events, invoke, recover, rotate, status
from rotation_cli.common import (
    DEFAULT_MAX_FAILURES,
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    FAILED,
    INTERRUPTED,
    USAGE,
    Output,
)
from rotation_cli.driver import DEFAULT_ATTEMPTS, DEFAULT_RETRY_DELAY, STEPS, DriverError, describe_error
from rotation_cli.errors import UsageError
from rotation_cli.schedule import ScheduleError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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

    rotate_parser = commands.add_parser(
        "rotate",
        parents=[aws_options, function_options],
        help="run a full rotation now",
        description="Run a full rotation of a secret now.",
    )
    rotate_parser.add_argument("secret", help="secret name or ARN")
    mode = rotate_parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run the function's code here, as Secrets Manager would")
    mode.add_argument("--remote", action="store_true", help="ask Secrets Manager to rotate, then follow it")
    rotate_parser.add_argument(
        "--engine",
        help=f"the function to run (local; default: the one the secret's 'engine' field names) or to verify the "
        f"result with (remote): {engines}",
    )
    rotate_parser.add_argument("--token", help="ClientRequestToken of the new version (local; default: a new UUID)")
    rotate_parser.add_argument(
        "--fail-at",
        choices=STEPS[:3],
        help="stop after this step, leaving the rotation unfinished as a failure would (local)",
    )
    rotate_parser.add_argument(
        "--attempts",
        type=_whole(1),
        help=f"attempts at the whole rotation when a step fails in a way a retry can cure (local; default "
        f"{DEFAULT_ATTEMPTS})",
    )
    rotate_parser.add_argument(
        "--retry-delay",
        type=_seconds(zero=True),
        help=f"seconds between attempts (local; default {DEFAULT_RETRY_DELAY:g})",
    )
    _follow_options(rotate_parser, "the rotation (remote)", defaults=False)
    rotate_parser.set_defaults(run=rotate.run)

    status_parser = commands.add_parser(
        "status",
        parents=[aws_options],
        help="show versions, schedule and function, and diagnose",
        description="Show a secret's versions, stages, rotation schedule and function, and what is wrong.",
    )
    status_parser.add_argument("secret", help="secret name or ARN")
    status_parser.add_argument("--engine", help="the function that rotates it (only used in suggested commands)")
    status_parser.add_argument(
        "--no-function-check", action="store_true", help="do not call Lambda to check the function"
    )
    status_parser.set_defaults(run=status.run)

    recover_parser = commands.add_parser(
        "recover",
        parents=[aws_options, function_options],
        help="clear a stuck rotation safely (dry run unless --apply)",
        description="Clear an unfinished rotation without losing the only working credential.",
    )
    recover_parser.add_argument("secret", help="secret name or ARN")
    recover_parser.add_argument("--apply", action="store_true", help="carry out the plan (default: print it only)")
    recover_parser.add_argument("--engine", help=f"the function whose testSecret logic tries credentials: {engines}")
    recover_parser.set_defaults(run=recover.run)

    attach_parser = commands.add_parser(
        "attach",
        parents=[aws_options],
        help="attach a deployed rotation function to a secret",
        description="Validate the schedule and the function, then enable rotation (RotateSecret).",
    )
    attach_parser.add_argument("secret", help="secret name or ARN")
    attach_parser.add_argument("--function", required=True, metavar="ARN", help="the rotation function's ARN")
    attach_parser.add_argument(
        "--schedule", required=True, metavar="EXPR", help="rate(N days|hours) or cron(0 H D M W *)"
    )
    attach_parser.add_argument("--duration", help="rotation window in hours, e.g. 2h")
    attach_parser.add_argument(
        "--no-rotate-now", action="store_true", help="wait for the first window (RotateImmediately=false)"
    )
    attach_parser.add_argument("--no-wait", action="store_true", help="do not follow the first rotation")
    _follow_options(attach_parser, "the first rotation", defaults=True)
    attach_parser.set_defaults(run=attach.run)

    events_parser = commands.add_parser(
        "events",
        parents=[aws_options],
        help="write the four step events for `sam local invoke -e`",
        description="Write createSecret.json ... finishSecret.json for a secret and token (no AWS call unless "
        "--check). Existing files are never overwritten without --force.",
    )
    events_parser.add_argument("secret", metavar="SECRET_ARN", help="the secret's ARN (what the service sends)")
    events_parser.add_argument("--token", help="ClientRequestToken: the AWSPENDING version's id (default: a new UUID)")
    events_parser.add_argument("--engine", help="the function (the default folder is .aws-sam/events/<engine>/)")
    events_parser.add_argument(
        "--out", help="folder to write to (default .aws-sam/events/<engine>/ under the current directory)"
    )
    events_parser.add_argument("--force", action="store_true", help="overwrite event files that already exist there")
    events_parser.add_argument(
        "--check",
        action="store_true",
        help="first check with DescribeSecret that --token is the secret's AWSPENDING version (default: no AWS call)",
    )
    events_parser.set_defaults(run=events.run)

    invoke_parser = commands.add_parser(
        "invoke",
        parents=[aws_options, function_options],
        help="run one step from an event file here, as `sam local invoke -e` would (no Docker)",
        description="Load functions/<engine>/app.py with the layer, as Lambda would, and invoke its handler once "
        "with the event file (e.g. events/postgres/createSecret.json, or one `events` wrote). Exit 0 if the step "
        "succeeded, 1 if the function failed or refused the event.",
    )
    invoke_parser.add_argument("--engine", "--function", dest="engine", required=True, help=f"the function: {engines}")
    invoke_parser.add_argument("-e", "--event", required=True, metavar="FILE", help="the event file (JSON), as for sam")
    invoke_parser.set_defaults(run=invoke.run)

    _add_audit(commands)
    return parser


def _add_audit(commands: Any) -> None:
    audit_parser = commands.add_parser(
        "audit",
        # A parent of its own: "resolve" takes --region from the parent's action, which other
        # commands' parsers share.
        parents=[_aws_options()],
        conflict_handler="resolve",  # --region is repeatable here
        help="audit every secret of Regions and accounts: rotation, access, keys, tags, replicas",
        description="Check every secret against a policy (never reading a value): rotation enabled, working and "
        "on time, its function, unused, key, resource policy, replicas, tags and name. One finding per secret and "
        "check, most severe first. Exit 1 at a finding at or above --fail-on, 2 if a Region or account could not "
        "be audited.",
    )
    audit.add_arguments(audit_parser)
    audit_parser.set_defaults(run=audit.run)


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
