"""The four step events Secrets Manager sends, as files for `sam local invoke -e` (or
`rotate invoke -e`).

Each file is exactly what the service invokes the function with for one step:
{"Step": ..., "SecretId": ..., "ClientRequestToken": ...}. The function refuses a token
that is not a version of the secret staged AWSPENDING, so prepare that version first
(`rotate SECRET --local --engine E --fail-at createSecret` leaves one, or RotateSecret).

The files go to a folder of their own (by default .aws-sam/events/<engine>/ under the
current directory), never silently over existing files: the repository's events/ are
committed examples. Every file is checked before the first is written, so a refusal
leaves everything as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rotation_cli.aws import error_code, parse_arn
from rotation_cli.driver import CURRENT, PENDING, STEPS, DriverError, event, new_token
from rotation_cli.errors import UsageError

DEFAULT_DIR = Path(".aws-sam") / "events"


@dataclass
class Written:
    token: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: str | None = None  # what DescribeSecret confirmed, when --check asked for it


def default_dir(engine: str | None) -> Path:
    """Where the events go without --out: .aws-sam/events/<engine>/ under the current directory."""
    return DEFAULT_DIR / engine if engine else DEFAULT_DIR


def check_token(client: Any, secret_id: str, token: str) -> str:
    """DescribeSecret: the secret exists, rotation is enabled, and the token's version is
    staged AWSPENDING (not AWSCURRENT), as the function will check. Returns what was seen."""
    try:
        described = client.describe_secret(SecretId=secret_id)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise UsageError(f"--check: secret '{secret_id}' not found") from None
        raise
    arn = str(described["ARN"])
    if not described.get("RotationEnabled"):
        raise DriverError(
            "--check: rotation is not enabled on the secret: the function refuses every step "
            "(attach a rotation function first, or `rotate SECRET --local` against an emulator)"
        )
    stages = described.get("VersionIdsToStages", {})
    labels = list(stages.get(token, []))
    if PENDING not in labels:
        where = f"staged {','.join(labels)}" if labels else "not a version of the secret"
        raise DriverError(
            f"--check: the token {token} is {where}, not AWSPENDING: the function refuses it "
            "(leave a pending version with `rotate SECRET --local --engine E --fail-at createSecret`)"
        )
    if CURRENT in labels:
        raise DriverError(f"--check: the token {token} is already AWSCURRENT: every step would do nothing")
    return f"DescribeSecret: version {token} of {arn} is staged AWSPENDING and rotation is enabled"


def write_events(
    secret_id: str, token: str | None, out_dir: Path, *, force: bool = False, client: Any = None
) -> Written:
    """Write <out_dir>/<Step>.json for the four steps. Refuses (before writing any) when one
    exists, unless force; with a client, checks the token with DescribeSecret first."""
    notes = []
    if not secret_id.strip():
        raise UsageError("the secret id must not be empty")
    if parse_arn(secret_id).get("service") != "secretsmanager":
        notes.append("the SecretId is not a Secrets Manager ARN: the service always sends the secret's full ARN")
    if token is None:
        if client is not None:
            raise UsageError("--check needs --token (the AWSPENDING version's id): a new token is never staged")
        token = new_token()
        notes.append(
            f"generated the token {token}: the function accepts it only once a version with this id is staged "
            "AWSPENDING (RotateSecret --client-request-token, or pass --token with the pending version's id)"
        )
    if not 32 <= len(token) <= 64:
        raise UsageError("--token must be 32 to 64 characters long (a ClientRequestToken)")
    targets = [out_dir / f"{step}.json" for step in STEPS]
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out: {out_dir} exists and is not a folder")
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise DriverError(
            f"{existing[0]} exists{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}: "
            "nothing was written; choose another --out, or pass --force to overwrite"
        )
    written = Written(token, notes=notes)
    if client is not None:
        written.checked = check_token(client, secret_id, token)
    out_dir.mkdir(parents=True, exist_ok=True)
    for step, path in zip(STEPS, targets, strict=True):
        path.write_text(json.dumps(event(secret_id, token, step), indent=2) + "\n", encoding="utf-8")
        written.files.append(path)
    return written
